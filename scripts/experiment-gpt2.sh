#!/usr/bin/env bash
# Issue 14, acceptance 4: a small GPT-2 (4 layers x 8 heads) trained from scratch on MRPC train
# sentences (scripts/reference/train_gpt2.py; the weights are built here, never committed), then
# `bertology prune --task lm` on held-out MRPC dev token ids: perplexity against heads kept for the
# importance, reverse and random orders, and one run's wall time against the Python run_prune_gpt
# algorithm (scripts/reference/anchor_gpt.py) on the same model, ids and settings (the anchor's
# defaults: batch size 1, threshold 0.9, amount 0.1, file order). Writes $OUT/summary.json and
# $OUT/compare/ (the curves picture). Needs scripts/setup-python-ref.sh and a release build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PY:-$root/.venv-ref/bin/python}
out=${OUT:-$root/runs/gpt2-exp}
model=$root/models/gpt2-mrpc-4x8
bin=$root/target/release/bertology
threads=${THREADS:-2}
[ -x "$py" ] || { echo "experiment-gpt2.sh: error: $py missing (run scripts/setup-python-ref.sh)" >&2; exit 1; }
[ -x "$bin" ] || { echo "experiment-gpt2.sh: error: build first (cargo build --release)" >&2; exit 1; }
mkdir -p "$out"
if [ ! -f "$model/model.safetensors" ] || [ ! -f "$out/dev_ids.txt" ]; then
  (cd "$root/scripts/reference" && "$py" train_gpt2.py "$model" --layers 4 --heads 8 --embd 64 --steps 300 \
     --block 32 --batch 8 --ids-out "$out/dev_ids.txt" --ids-block 32 --ids-lines 64 --text-out "$out/dev.txt") \
     | tee "$out/train.log"
fi
now() { date +%s.%N; }
for order in importance reverse random; do
  "$bin" --threads "$threads" prune --model "$model" --task lm --token-ids "$out/dev_ids.txt" --order "$order" \
    --target-heads 0.125 --min-heads-per-layer 1 --batch-size 8 -q --output-dir "$out/$order"
done
"$bin" report -q --compare "$out/importance" "$out/reverse" "$out/random" --output-dir "$out/compare"
t0=$(now)
"$bin" --threads "$threads" prune --model "$model" --task lm --token-ids "$out/dev_ids.txt" --estimator anchor \
  --batch-size 1 --masking-threshold 0.9 --masking-amount 0.1 -q --output-dir "$out/anchor-rust"
t1=$(now)
(cd "$root/scripts/reference" && "$py" anchor_gpt.py "$model" "$out/dev_ids.txt" "$out/anchor-python.json" \
   --batch-size 1 --threshold 0.9 --amount 0.1 --threads "$threads") >/dev/null
t2=$(now)
"$py" - "$out" "$t0" "$t1" "$t2" <<'PY'
import json, math, sys
out, t0, t1, t2 = sys.argv[1], *map(float, sys.argv[2:])
curves = {}
for order in ("importance", "reverse", "random"):
    p = json.load(open(f"{out}/{order}/prune.json"))
    curves[order] = [(s["heads_kept"], math.exp(1 / s["score"])) for s in p["curve"]]
rust = json.load(open(f"{out}/anchor-rust/prune.json"))
py = json.load(open(f"{out}/anchor-python.json"))
same_mask = rust["head_mask"] == py["final_mask"]
summary = {"perplexity_curves": curves, "rust_seconds": t1 - t0, "python_seconds": t2 - t1,
           "speedup": (t2 - t1) / (t1 - t0), "same_final_mask": same_mask,
           "rust_heads_kept": rust["heads_kept"], "python_heads_kept": int(sum(map(sum, py["final_mask"])))}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print("heads kept -> perplexity (importance | reverse | random)")
for row in zip(*curves.values()):
    print("  ".join(f"{h:2d}: {p:7.3f}" for h, p in row))
print(f"whole run, anchor defaults (batch 1, threshold 0.9): bertology {t1 - t0:.1f} s, Python run_prune_gpt "
      f"{t2 - t1:.1f} s (x{(t2 - t1) / (t1 - t0):.1f}); same final mask: {same_mask}")
PY
