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
  (cd "$root/scripts/reference" && "$py" train_gpt2.py "$model" --layers 4 --heads 8 --embd 128 --steps 800 \
     --block 32 --batch 16 --ids-out "$out/dev_ids.txt" --ids-block 32 --ids-lines 64 --text-out "$out/dev.txt") \
     | tee "$out/train.log"
fi
now() { date +%s.%N; }
for order in importance reverse random; do
  "$bin" --threads "$threads" prune --model "$model" --task lm --token-ids "$out/dev_ids.txt" --order "$order" \
    --target-heads 0.125 --min-heads-per-layer 1 --batch-size 8 -q --output-dir "$out/$order"
done
"$bin" report -q --compare "$out/importance" "$out/reverse" "$out/random" --output-dir "$out/compare"
# Whole runs, one after the other: bertology with its defaults (the per-example estimator,
# batch 32), bertology reproducing the anchor (its estimator, batch 1), the Python algorithm.
t0=$(now)
"$bin" --threads "$threads" prune --model "$model" --task lm --token-ids "$out/dev_ids.txt" \
  --masking-threshold 0.9 --masking-amount 0.1 -q --output-dir "$out/defaults-rust"
t1=$(now)
"$bin" --threads "$threads" prune --model "$model" --task lm --token-ids "$out/dev_ids.txt" --estimator anchor \
  --batch-size 1 --masking-threshold 0.9 --masking-amount 0.1 -q --output-dir "$out/anchor-rust"
t2=$(now)
(cd "$root/scripts/reference" && "$py" anchor_gpt.py "$model" "$out/dev_ids.txt" "$out/anchor-python.json" \
   --batch-size 1 --threshold 0.9 --amount 0.1 --threads "$threads") >/dev/null
t3=$(now)
"$py" - "$out" "$t0" "$t1" "$t2" "$t3" <<'PY'
import json, math, sys
out, t0, tm, t1, t2 = sys.argv[1], *map(float, sys.argv[2:])
curves = {}
for order in ("importance", "reverse", "random"):
    p = json.load(open(f"{out}/{order}/prune.json"))
    curves[order] = [(s["heads_kept"], math.exp(1 / s["score"])) for s in p["curve"]]
rust = json.load(open(f"{out}/anchor-rust/prune.json"))
py = json.load(open(f"{out}/anchor-python.json"))
same_mask = rust["head_mask"] == py["final_mask"]
defaults = json.load(open(f"{out}/defaults-rust/prune.json"))
summary = {"perplexity_curves": curves, "rust_defaults_seconds": tm - t0, "rust_seconds": t1 - tm,
           "python_seconds": t2 - t1, "speedup_defaults": (t2 - t1) / (tm - t0),
           "speedup": (t2 - t1) / (t1 - tm), "same_final_mask": same_mask,
           "rust_defaults_heads_kept": defaults["heads_kept"],
           "rust_defaults_perplexity": defaults["pruned_metrics"]["perplexity"],
           "rust_heads_kept": rust["heads_kept"], "python_heads_kept": int(sum(map(sum, py["final_mask"])))}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print("heads kept -> perplexity (importance | reverse | random)")
for row in zip(*curves.values()):
    print("  ".join(f"{h:2d}: {p:7.3f}" for h, p in row))
print(f"whole run, Python run_prune_gpt at its defaults (batch 1, threshold 0.9, amount 0.1): {t2 - t1:.1f} s; "
      f"bertology defaults {tm - t0:.1f} s (x{(t2 - t1) / (tm - t0):.1f}, {defaults['heads_kept']} heads kept), "
      f"bertology at the anchor's settings {t1 - tm:.1f} s (x{(t2 - t1) / (t1 - tm):.1f}); same final mask: {same_mask}")
PY
