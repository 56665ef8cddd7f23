#!/usr/bin/env bash
# No-slowdown check of a change: the importance pass and the full prune run of scripts/bench.sh
# (defaults, fine-tuned MiniLM, MRPC dev), timed for two builds in alternation so that both see
# the same machine, next to BENCHMARKS.md's figures. Prints a markdown table.
# usage: scripts/bench-ab.sh OLD_BINARY [--rounds N]   (about 5 minutes per round on 2 cores;
#   build the old binary from an earlier commit in a worktree: cargo build --release)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
old=${1:?usage: scripts/bench-ab.sh OLD_BINARY [--rounds N]}
shift
rounds=1
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    *) echo "bench-ab.sh: error: unknown argument $1 (expected --rounds N)" >&2; exit 2 ;;
  esac
done
new=$root/target/release/bertology
model=$root/models/all-MiniLM-L6-v2-mrpc
for b in "$old" "$new"; do
  [ -x "$b" ] || { echo "bench-ab.sh: error: $b is not an executable" >&2; exit 1; }
done
[ -f "$model/config.json" ] || { echo "bench-ab.sh: error: $model missing (bertology finetune --task mrpc)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
wall() { # wall NAME COMMAND...: appends "NAME seconds" to $out/times
  local name=$1; shift
  /usr/bin/time -f '%e' -o "$out/t" "$@" >/dev/null 2>"$out/err" || { cat "$out/err" >&2; exit 1; }
  echo "$name $(cat "$out/t")" >>"$out/times"
}
for _ in $(seq "$rounds"); do
  for side in old new; do
    bin=$old; [ $side = new ] && bin=$new
    wall "importance-$side" "$bin" importance --task mrpc --model "$model" --quiet --output-dir "$out/i-$side"
  done
  for side in old new; do
    bin=$old; [ $side = new ] && bin=$new
    wall "prune-$side" "$bin" prune --task mrpc --model "$model" --quiet --timing-runs 1 --output-dir "$out/p-$side"
  done
done
python3 - "$out" "$root/BENCHMARKS.md" <<'PY'
import json, re, statistics, sys
out, bench = sys.argv[1:]
times = {}
for line in open(f"{out}/times"):
    name, t = line.split()
    times.setdefault(name, []).append(float(t))
text = open(bench).read()
ref = {"importance": float(re.search(r"\| bertology \| defaults: per-example[^|]*\| ([0-9.]+) \|", text).group(1)),
       "prune": float(re.search(r"\| wall time \(s\) \| ([0-9.]+) \|", text).group(1))}
print("| run | BENCHMARKS.md (s) | previous binary (s) | this build (s) | this build vs BENCHMARKS.md |")
print("| --- | --- | --- | --- | --- |")
for what in ("importance", "prune"):
    o, n = statistics.median(times[f"{what}-old"]), statistics.median(times[f"{what}-new"])
    print(f"| {what} (defaults) | {ref[what]:.1f} | {o:.1f} | {n:.1f} | {100 * (n / ref[what] - 1):+.1f} % |")
for side in ("old", "new"):
    p = json.load(open(f"{out}/p-{side}/prune.json"))
    print(f"{side}: {p['heads_kept']} heads kept, pruned score {p['pruned_score']:.4f}, masking {p.get('masking_seconds', float('nan')):.1f} s")
PY
