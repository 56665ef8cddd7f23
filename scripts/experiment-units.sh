#!/usr/bin/env bash
# Heads, MLP neurons, or both? Accuracy against the pruned model's size on MRPC, by importance
# and in random order (issue 26). On the default MRPC model (fine-tuned MiniLM; built if
# missing) and the MRPC dev set:
#
# 1. curves: for each unit (heads, neurons, both) and order (importance, random), masking
#    --amount of the units per step (importance re-estimated each step) down to --floor kept;
#    every step's accuracy against the parameters its model keeps once pruned
#    (masking_curve.csv's parameters_kept): comparison.csv and accuracy_vs_parameters.png;
# 2. the smallest model within 90 % of the original accuracy, by each unit and order: the
#    threshold rule (`--masking-threshold 0.9`) stops at the last step that keeps 90 %; that
#    model is pruned, checked against the masked one and timed (no gradient, alternating
#    passes): smallest.csv.
#
# usage: scripts/experiment-units.sh [--quick] [--out DIR]
#   --quick  what CI runs: a model fine-tuned for a few steps, 32 dev pairs, 25 % per step
#   --out    output folder (default runs/experiment-units, or runs/experiment-units-quick)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
quick=0
out=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "experiment-units.sh: error: unknown argument $1 (expected --quick or --out DIR)" >&2; exit 2 ;;
  esac
done
bin=$root/target/release/bertology
[ -x "$bin" ] || { echo "experiment-units.sh: error: $bin is missing; run scripts/setup.sh" >&2; exit 1; }
if [ "$quick" = 1 ]; then
  out=${out:-runs/experiment-units-quick}
  subset=(--data-subset 32); amount=0.25; floor=0.25; timing=1
else
  out=${out:-runs/experiment-units}
  subset=(); amount=0.1; floor=0.1; timing=3
fi
mkdir -p "$out"
log() { echo "experiment-units.sh: $*" >&2; }

if [ "$quick" = 1 ]; then
  model=$out/model
  log "fine-tuning a quick model"
  "$bin" finetune --task mrpc --quiet --json --train-subset 128 --eval-subset 32 --epochs 1 \
    --batch-size 16 --output-dir "$model" >"$out/finetune.json"
else
  model=$root/models/all-MiniLM-L6-v2-mrpc
  if [ ! -f "$model/config.json" ]; then
    log "building the default model (bertology finetune --task mrpc)"
    "$bin" finetune --task mrpc --quiet --json --overwrite >"$out/finetune.json"
  fi
fi
base=(--task mrpc --quiet --json --model "$model" "${subset[@]}")

# What each unit's flags are: the budget (curves) and which units are masked.
budget() {
  case $1 in
    heads) echo "--units heads --target-heads $floor" ;;
    neurons) echo "--units neurons --target-neurons $floor" ;;
    both) echo "--units both --target-heads $floor --target-neurons $floor" ;;
  esac
}

curves=()
for units in heads neurons both; do
  for order in importance random; do
    name=curve-$units-$order
    log "$name: masking down to $floor of the $units, $amount per step" # both: of each
    # shellcheck disable=SC2046
    "$bin" prune "${base[@]}" $(budget "$units") --order "$order" --masking-amount "$amount" \
      --timing-runs 1 --output-dir "$out/$name" >"$out/$name.json"
    curves+=("$out/$name")
    name=smallest-$units-$order
    log "$name: the threshold rule at 0.9 of the original accuracy"
    "$bin" prune "${base[@]}" --units "$units" --order "$order" --masking-amount "$amount" \
      --masking-threshold 0.9 --timing-runs "$timing" --output-dir "$out/$name" >"$out/$name.json"
  done
done
log "accuracy against parameters kept (one curve per unit and order)"
"$bin" report --quiet --compare "${curves[@]}" --output-dir "$out/curves"
cp "$out/curves/pruning_curve.png" "$out/accuracy_vs_parameters.png"
cp "$out/curves/pruning_curve.svg" "$out/accuracy_vs_parameters.svg"

# The tables, checked as they are written.
python3 - "$out" <<'PY'
import csv, json, os, sys
out = sys.argv[1]
rows, smallest = [], []
for units in ("heads", "neurons", "both"):
    for order in ("importance", "random"):
        run = os.path.join(out, f"curve-{units}-{order}")
        s = json.load(open(os.path.join(run, "prune.json")))
        assert s["units"] == units, (run, s["units"])
        curve = list(csv.DictReader(open(os.path.join(run, "masking_curve.csv"))))
        sizes = [int(r["parameters_kept"]) for r in curve]
        # Each step's size is what pruning its masks gives: the last step's is the pruned model's.
        assert sizes[0] == s["parameters_before"], (run, sizes[0], s["parameters_before"])
        assert sizes[-1] == s["parameters_after"], (run, sizes[-1], s["parameters_after"])
        assert all(a > b for a, b in zip(sizes, sizes[1:])), (run, sizes)
        for r in curve:
            rows.append({
                "units": units, "order": order, "step": int(r["step"]),
                "heads_kept": int(r["heads_kept"]),
                "neurons_kept": int(r["neurons_kept"] or s["neurons_total"]),
                "parameters_kept": int(r["parameters_kept"]),
                "fraction_of_parameters": int(r["parameters_kept"]) / s["parameters_before"],
                "accuracy": float(r["score"]),
            })
        t = json.load(open(os.path.join(out, f"smallest-{units}-{order}", "prune.json")))
        assert t["max_abs_logit_diff_pruned_vs_masked"] < 1e-4, t["max_abs_logit_diff_pruned_vs_masked"]
        assert t["masked_score"] >= 0.9 * t["original_score"] - 1e-12, t
        timing = t["timing"][0]
        smallest.append({
            "units": units, "order": order, "heads_kept": t["heads_kept"],
            "neurons_kept": t["neurons_kept"], "parameters_before": t["parameters_before"],
            "parameters_after": t["parameters_after"],
            "fraction_of_parameters": t["parameters_after"] / t["parameters_before"],
            "original_accuracy": t["original_score"], "masked_accuracy": t["masked_score"],
            "pruned_accuracy": t["pruned_score"],
            "examples_per_second_before": timing["examples_per_second_before"],
            "examples_per_second_after": timing["examples_per_second_after"],
            "speedup": timing["speedup"], "verdict": timing["verdict"],
        })
for name, table in (("comparison.csv", rows), ("smallest.csv", smallest)):
    with open(os.path.join(out, name + ".tmp"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0].keys()))
        w.writeheader()
        w.writerows(table)
    os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
assert os.path.getsize(os.path.join(out, "accuracy_vs_parameters.png")) > 1000
print("units    order       heads  neurons  parameters        accuracy  speedup")
for r in smallest:
    print(f"{r['units']:<8} {r['order']:<11} {r['heads_kept']:>5}  {r['neurons_kept']:>7}  "
          f"{r['parameters_after']:>10} ({100 * r['fraction_of_parameters']:.1f} %)  "
          f"{r['pruned_accuracy']:.4f}    {r['speedup']:.2f}x")
PY
log "wrote $out/comparison.csv, $out/smallest.csv and $out/accuracy_vs_parameters.png"
