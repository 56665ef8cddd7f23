#!/usr/bin/env bash
# Installs the Python reference (torch 2.13.0, transformers 4.57.x) into the git-ignored
# .venv-ref, used only to regenerate fixtures (pyarrow: the parquet data fixtures), for
# benchmarks against the anchor, and for scripts/reference/check_hub_cache.py (huggingface_hub,
# which transformers also needs; gguf and accelerate: transformers reading GGUF files). Idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.venv-ref
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import torch, transformers, safetensors, numpy, huggingface_hub, pyarrow, gguf, accelerate, sys; sys.exit(0 if transformers.__version__.startswith('4.57.') and torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
  echo "setup-python-ref.sh: .venv-ref is ready" >&2
  exit 0
fi
python3 -m venv "$venv" || { echo "setup-python-ref.sh: error: cannot create $venv" >&2; exit 1; }
"$venv/bin/pip" install --quiet torch==2.13.0 'transformers==4.57.*' 'huggingface_hub<1.0' safetensors numpy scipy pyarrow 'gguf==0.19.0' accelerate \
  || { echo "setup-python-ref.sh: error: pip install into .venv-ref failed" >&2; exit 1; }
echo "setup-python-ref.sh: .venv-ref is ready" >&2
