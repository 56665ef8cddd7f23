"""Shared helpers for the Python references (transformers 4.57.x, the last line with head_mask)."""
import csv
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
MINILM = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")


def glue_dir(task_folder):
    base = os.environ.get("GLUE_DIR") or os.path.join(ROOT, "data", "glue")
    return os.path.join(base, task_folder)


def read_mrpc(split="dev"):
    """(sentence1, sentence2, label) rows of MRPC, quoting disabled as GLUE's files need."""
    path = os.path.join(glue_dir("MRPC"), f"{split}.tsv")
    with open(path, encoding="utf-8-sig") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r[3], r[4], int(r[0])) for r in rows[1:]]


def check_versions():
    import transformers

    if not transformers.__version__.startswith("4.57."):
        sys.exit(f"transformers 4.57.x expected (head_mask), found {transformers.__version__}")
