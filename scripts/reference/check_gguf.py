"""Checks bertology's conversion of a GGUF file against transformers' own GGUF loader.

usage: check_gguf.py MODEL.gguf [--text FILE] [--cache DIR] [--bertology BIN] [--blocks N]
                     [--block-size N] [--fixture OUT.json] [--no-model]

1. Converts MODEL.gguf with bertology (`bertology inspect --model MODEL.gguf`, which converts the
   file into the GGUF cache first; --cache sets $BERTOLOGY_GGUF_CACHE) and finds the converted
   folder by its gguf_source.json.
2. Tokenizer: transformers' AutoTokenizer(gguf_file=MODEL.gguf) against the converted folder's
   tokenizer.json (read with the tokenizers library) on every line of --text (default WikiText-2
   test), without special tokens: lines and tokens that agree. transformers' LlamaTokenizerFast
   always adds a BOS for llama; bertology follows the file's tokenizer.ggml.add_bos_token, so
   ids are compared without special tokens and the BOS behaviour is reported apart.
   --fixture writes the per-line hashes that tests/it/gguf.rs checks.
3. Model (unless --no-model): transformers' AutoModelForCausalLM from the GGUF file against
   AutoModelForCausalLM from the converted folder: every weight, and logits and loss on the
   first --blocks blocks of --block-size tokens of --text. When `bertology eval --task lm`
   runs on the file, its loss is compared with transformers' on the same blocks.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from common import ROOT, check_versions


def fnv1a(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for b in int(i).to_bytes(4, "little"):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def converted_folder(gguf_path, cache, binary):
    env = dict(os.environ, BERTOLOGY_GGUF_CACHE=cache)
    t0 = time.time()
    run = subprocess.run([binary, "inspect", "--model", gguf_path], env=env, capture_output=True, text=True)
    took = time.time() - t0
    real = os.path.realpath(gguf_path)
    st = os.stat(real)
    for name in sorted(os.listdir(cache)) if os.path.isdir(cache) else []:
        src = os.path.join(cache, name, "gguf_source.json")
        if os.path.isfile(src):
            s = json.load(open(src))
            if s["source"] == real and s["size"] == st.st_size and s["mtime_ns"] == str(st.st_mtime_ns):
                return os.path.join(cache, name), run, took
    sys.exit(f"bertology did not convert {gguf_path} into {cache}: {run.stderr.strip()}")


def check_tokenizer(gguf_path, folder, text_path, fixture):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    d, name = os.path.split(os.path.abspath(gguf_path))
    theirs = AutoTokenizer.from_pretrained(d, gguf_file=name)
    ours = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    with open(text_path, encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    agree, tokens, hashes, first_diff = 0, 0, [], None
    for i, line in enumerate(lines):
        a = theirs(line, add_special_tokens=False)["input_ids"]
        b = ours.encode(line, add_special_tokens=False).ids
        tokens += len(a)
        hashes.append(fnv1a(a))
        if a == b:
            agree += 1
        elif first_diff is None:
            first_diff = (i, line[:80], a[:20], b[:20])
    with_special_t = theirs("Hello world")["input_ids"]
    with_special_o = ours.encode("Hello world").ids
    print(f"tokenizer: {agree} of {len(lines)} lines of {text_path} agree; transformers {tokens} tokens")
    print(f"  'Hello world' with special tokens: transformers {with_special_t}, bertology {with_special_o}")
    if first_diff:
        print(f"  first difference: line {first_diff[0]} {first_diff[1]!r}: {first_diff[2]} vs {first_diff[3]}")
    if fixture:
        with open(fixture, "w") as f:
            json.dump({"model": os.path.basename(gguf_path), "text": os.path.basename(text_path),
                       "lines": len(lines), "tokens": tokens, "line_hashes": hashes}, f)
        print(f"  wrote {fixture}")
    return agree == len(lines)


def check_model(gguf_path, folder, text_path, blocks, block_size, binary, cache):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    d, name = os.path.split(os.path.abspath(gguf_path))
    theirs = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    ours = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    worst = 0.0
    for k, v in theirs.state_dict().items():
        o = ours.state_dict()[k]
        worst = max(worst, (v - o).abs().max().item())
    print(f"weights: max |transformers(GGUF) - transformers(bertology folder)| = {worst:.3g}")
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    with open(text_path, encoding="utf-8") as f:
        ids = tok(f.read(), add_special_tokens=False)["input_ids"]
    n = min(blocks, len(ids) // block_size)
    x = torch.tensor(ids[: n * block_size]).reshape(n, block_size)
    with torch.no_grad():
        a = theirs(x, labels=x)
        b = ours(x, labels=x)
    diff = (a.logits - b.logits).abs().max().item()
    print(f"logits on {n} blocks of {block_size}: max |diff| = {diff:.3g}; "
          f"loss transformers(GGUF) {a.loss.item():.6f}, transformers(bertology folder) {b.loss.item():.6f}")
    ok = worst == 0.0 and diff == 0.0
    # bertology itself, when its llama family can run the model.
    run = subprocess.run([binary, "eval", "--task", "lm", "--model", gguf_path, "--text", text_path,
                          "--block-size", str(block_size), "--json", "--quiet", "--device", "cpu"],
                         capture_output=True, text=True, env=dict(os.environ, BERTOLOGY_GGUF_CACHE=cache))
    if run.returncode == 0:
        print(f"bertology eval --task lm: {run.stdout.strip()[:400]}")
    else:
        print(f"bertology eval --task lm did not run: {run.stderr.strip()[:300]}")
    return ok


def main():
    p = argparse.ArgumentParser()
    p.add_argument("gguf")
    p.add_argument("--text", default=os.path.join(ROOT, "data", "wikitext-2", "test.txt"))
    p.add_argument("--cache", default=None)
    p.add_argument("--bertology", default=os.path.join(ROOT, "target", "release", "bertology"))
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--fixture", default=None)
    p.add_argument("--no-model", action="store_true")
    a = p.parse_args()
    check_versions()
    import tempfile
    cache = a.cache or tempfile.mkdtemp(prefix="bertology-gguf-")
    folder, run, took = converted_folder(a.gguf, cache, a.bertology)
    print(f"converted folder: {folder} (bertology inspect took {took:.1f} s; exit {run.returncode})")
    ok = check_tokenizer(a.gguf, folder, a.text, a.fixture)
    if not a.no_model:
        ok = check_model(a.gguf, folder, a.text, a.blocks, a.block_size, a.bertology, cache) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
