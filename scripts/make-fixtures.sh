#!/usr/bin/env bash
# Regenerates the committed parity fixtures in tests/fixtures/ with transformers 4.57.x.
# Needs scripts/setup-python-ref.sh (a git-ignored .venv-ref) and scripts/setup.sh (the model).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=$root/.venv-ref/bin/python
[ -x "$py" ] || { echo "make-fixtures.sh: error: run scripts/setup-python-ref.sh first" >&2; exit 1; }
cd "$root/scripts/reference"
"$py" make_model_fixtures.py
"$py" make_importance_fixtures.py
"$py" make_masking_fixtures.py
"$py" make_family_fixtures.py
"$py" attention_stats.py
"$py" check_hidden_states.py fixture
