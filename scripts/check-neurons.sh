#!/usr/bin/env bash
# Feed-forward neurons against transformers 4.57 for every family's tiny fixture: runs
# tests/it/neurons.rs keeping each model it prunes by neurons (uneven sizes, uniform sizes, and
# neurons with heads) in OUT_DIR, then scripts/reference/check_neuron_pruned.py loads each one
# with transformers (its own class when every layer kept the same number of neurons, else the
# modelling file bertology saved, with trust_remote_code) and compares its logits with the
# original's under the same masks (within 1e-4).
# Needs scripts/setup.sh and scripts/setup-python-ref.sh. usage: scripts/check-neurons.sh [OUT_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=$root/.venv-ref/bin/python
out=${1:-$(mktemp -d "${TMPDIR:-/tmp}/bertology-neurons.XXXXXX")}
[ -x "$py" ] || { echo "check-neurons.sh: error: run scripts/setup-python-ref.sh first" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out"
(cd "$root" && BERTOLOGY_KEEP_NEURON_MODELS=$out cargo test --release --test it neurons::pruning_neurons)
(cd "$root/scripts/reference" && "$py" check_neuron_pruned.py "$out")
