#!/usr/bin/env bash
# One run, side by side, of bertology against transformers 4.57 (scripts/reference/bench_llm.py:
# sdpa attention, the head mask as o_proj pre-hooks, frozen weights) on SmolLM2-135M-Instruct and
# the same 16 blocks of 128 tokens of WikiText-2 valid, batches of 8, float32, 2 threads: an eval
# pass, an importance pass, and a prune run (5 steps of 10 % of the heads, importance re-estimated
# at each). Ours are whole processes (loading the model from the converted GGUF's cache
# included); the reference's figures are its passes alone, after a warm-up pass (the prune loop
# without). Peak memory is each process's maximum resident set. The two sides alternate, RUNS
# rounds; medians are reported. Then, ours alone, how far a model pruned to half its query
# heads, key/value groups or MLP neurons is faster than the original (prune's timing).
#
# usage: scripts/bench-llm.sh [--runs N] [--out DIR]   (about 15 minutes with 3 runs on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=3
out=$root/runs/bench-llm
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "bench-llm.sh: error: unknown argument $1 (expected --runs N or --out DIR)" >&2; exit 2 ;;
  esac
done
bin=$root/target/release/bertology
py=$root/.venv-ref/bin/python
gguf=$root/models/SmolLM2-135M-Instruct.Q4_1.gguf
for f in "$bin" "$py" "$gguf" "$root/data/wikitext-2/valid.txt"; do
  [ -e "$f" ] || { echo "bench-llm.sh: error: $f is missing; run scripts/setup.sh and scripts/setup-python-ref.sh" >&2; exit 1; }
done
mkdir -p "$out"
res=$out/results.jsonl
: >"$res"
base=(--task lm --model "$gguf" --text data/wikitext-2/valid.txt --block-size 128 --batch-size 8
      --device cpu --quiet --json)
lm=("${base[@]}" --data-subset 16)

# record NAME COMMAND...: the command's JSON stdout with its wall time and peak memory.
record() {
  local name=$1; shift
  echo "bench-llm.sh: $name" >&2
  /usr/bin/time -f '%e %M' -o "$out/time" "$@" >"$out/stdout"
  read -r wall rss <"$out/time"
  python3 - "$name" "$wall" "$rss" "$out/stdout" >>"$res" <<'PY'
import json, sys
name, wall, rss, path = sys.argv[1:]
# bertology prints its summary as pretty JSON; the reference prints one line.
text = open(path).read().strip()
try:
    data = json.loads(text)
except json.JSONDecodeError:
    lines = text.splitlines()
    data = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
print(json.dumps({"name": name, "wall": float(wall), "peak_rss_mb": int(rss) / 1024, "data": data}))
PY
}

# The GGUF is converted once (cached); neither side's figures include that.
"$bin" eval "${base[@]}" --data-subset 1 --output-dir "$out/warm" >/dev/null
for i in $(seq "$runs"); do
  record eval-ours "$bin" eval "${lm[@]}" --output-dir "$out/eval"
  record eval-transformers "$py" scripts/reference/bench_llm.py eval
  record importance-ours "$bin" importance "${lm[@]}" --output-dir "$out/importance"
  record importance-ours-no-entropy "$bin" importance "${lm[@]}" --no-entropy --output-dir "$out/importance"
  record importance-transformers "$py" scripts/reference/bench_llm.py importance
  record prune-ours "$bin" prune "${lm[@]}" --target-heads 0.5 --masking-amount 0.1 --timing-runs 1 \
    --output-dir "$out/prune"
  record prune-transformers "$py" scripts/reference/bench_llm.py prune --steps 5 --amount 0.1
done

# How far a pruned model is faster: prune's own timing of the original and the pruned model
# (no gradient, the same 16 blocks, 5 alternating runs each), half of the query heads, of the
# key/value groups, of the MLP neurons. Ours alone: transformers cannot prune these models.
for unit in head group neurons; do
  case $unit in
    neurons) cut=(--units neurons --target-neurons 0.5) ;;
    *) cut=(--prune-unit "$unit" --target-heads 0.5) ;;
  esac
  record "speed-$unit" "$bin" prune "${lm[@]}" "${cut[@]}" --masking-amount 0.25 --timing-runs 5 \
    --output-dir "$out/speed-$unit"
done

python3 - "$res" "$out/summary.json" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(name, key):
    vals = [r[key] if key != "seconds" else r["data"]["seconds"] for r in rows if r["name"] == name]
    return statistics.median(vals), min(vals), max(vals)
summary = {}
for what in ("eval", "importance", "prune"):
    ours = med(f"{what}-ours", "wall")
    ref = med(f"{what}-transformers", "seconds")
    summary[what] = {
        "ours_process_seconds": ours, "transformers_pass_seconds": ref,
        "speedup": ref[0] / ours[0],
        "ours_peak_rss_mb": med(f"{what}-ours", "peak_rss_mb")[0],
        "transformers_peak_rss_mb": med(f"{what}-transformers", "peak_rss_mb")[0],
    }
    # Our pass alone, as the summary times it (prune: its masking loop), beside the process.
    key = "masking_seconds" if what == "prune" else "seconds"
    passes = [r["data"].get(key) for r in rows if r["name"] == f"{what}-ours"]
    if all(isinstance(p, (int, float)) for p in passes):
        summary[what]["ours_pass_seconds"] = statistics.median(passes)
        summary[what]["pass_speedup"] = ref[0] / statistics.median(passes)
ne = med("importance-ours-no-entropy", "wall")
summary["importance"]["ours_no_entropy_process_seconds"] = ne
summary["importance"]["speedup_no_entropy"] = summary["importance"]["transformers_pass_seconds"][0] / ne[0]
losses = {r["name"]: r["data"].get("loss", r["data"].get("metrics", {}).get("loss")) for r in rows}
summary["losses"] = losses
speed = {}
for r in rows:
    if r["name"].startswith("speed-"):
        d = r["data"]
        t = d["timing"][0]
        speed[r["name"][6:]] = {
            "parameters_before": d["parameters_before"], "parameters_after": d["parameters_after"],
            "heads_kept": d["heads_kept"], "neurons_kept": d.get("neurons_kept"),
            "seconds_before": t["seconds_before"], "seconds_after": t["seconds_after"],
            "speedup": t["speedup"], "verdict": t["verdict"], "runs": t["runs"],
            "score_before": d["original_score"], "score_after": d["pruned_score"],
        }
summary["pruned_speed"] = speed
json.dump(summary, open(sys.argv[2], "w"), indent=1)
print("what        ours (process, s)      transformers (pass, s)   speed-up   peak MB ours / ref")
for what in ("eval", "importance", "prune"):
    s = summary[what]
    o, r = s["ours_process_seconds"], s["transformers_pass_seconds"]
    print(f"{what:<11} {o[0]:6.2f} [{o[1]:.2f}-{o[2]:.2f}]     {r[0]:6.2f} [{r[1]:.2f}-{r[2]:.2f}]       "
          f"{s['speedup']:.2f}x     {s['ours_peak_rss_mb']:.0f} / {s['transformers_peak_rss_mb']:.0f}")
for what in ("eval", "importance", "prune"):
    s = summary[what]
    if "ours_pass_seconds" in s:
        print(f"{what:<11} pass alone: ours {s['ours_pass_seconds']:.2f} s against {s['transformers_pass_seconds'][0]:.2f} s ({s['pass_speedup']:.2f}x)")
print(f"importance without entropy: {ne[0]:.2f} s ({summary['importance']['speedup_no_entropy']:.2f}x)")
for unit, s in speed.items():
    print(f"pruned by {unit:<8} {s['parameters_after'] / 1e6:6.1f} M of {s['parameters_before'] / 1e6:.1f} M parameters: "
          f"{s['seconds_before']:.2f} s -> {s['seconds_after']:.2f} s per pass ({s['speedup']:.2f}x, {s['verdict']}); "
          f"loss {1 / s['score_before']:.3f} -> {1 / s['score_after']:.3f} on the ranking blocks")
PY
