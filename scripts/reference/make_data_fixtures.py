"""Data fixtures for the readers of GLUE (old TSV layout and the hub's parquet layout) and of
one's own CSV / JSON Lines / parquet files.

    make_data_fixtures.py               regenerate tests/fixtures/data/ (kilobytes, committed)
    make_data_fixtures.py --mrpc-dev TSV --out DIR
                                        convert a real MRPC dev.tsv (GLUE layout) into the hub's
                                        parquet layout, CSV and JSONL under DIR (not committed)

The committed rows are written here by hand in each task's style: the GLUE corpora carry their
own licences (MRPC's is non-commercial), so none of their text goes into the repository. Each
config's parquet file holds the same rows as its TSV file, in the columns, types and ClassLabel
integers of `nyu-mll/glue` on the hub (MNLI's 0 is entailment there; transformers' 0 is
contradiction). Needs pyarrow (scripts/setup-python-ref.sh installs it into .venv-ref).
"""
import argparse
import csv
import json
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "data")

# The hub's ClassLabel names per config (the order of its integer labels).
HUB_NAMES = {
    "cola": ["unacceptable", "acceptable"],
    "sst2": ["negative", "positive"],
    "mrpc": ["not_equivalent", "equivalent"],
    "qqp": ["not_duplicate", "duplicate"],
    "mnli": ["entailment", "neutral", "contradiction"],
    "ax": ["entailment", "neutral", "contradiction"],
    "qnli": ["entailment", "not_entailment"],
    "rte": ["entailment", "not_entailment"],
    "wnli": ["not_entailment", "entailment"],
}

# (config, hub split, old GLUE folder, old file name, text columns, rows); a row is
# (text_a, text_b or None, hub label: ClassLabel int, float for stsb, -1 for none).
TASKS = [
    ("cola", "train", "CoLA", "train.tsv", ("sentence", None), [
        ("The cat sat on the mat.", None, 1),
        ("Mat the on sat cat the.", None, 0),
        ("She gave him a book about \"rivers\".", None, 1),
        ("Him gave she book a.", None, 0),
    ]),
    ("sst2", "validation", "SST-2", "dev.tsv", ("sentence", None), [
        ("a warm , funny and \"genuinely\" moving film . ", None, 1),
        ("tedious and far too long .", None, 0),
        ("the cast is uniformly excellent .", None, 1),
    ]),
    ("mrpc", "validation", "MRPC", "dev.tsv", ("sentence1", "sentence2"), [
        ("The council approved the new budget on Tuesday.", "On Tuesday the council passed the new budget.", 1),
        ("Shares of the company rose 5 percent in early trading.", "The company said it would hire 200 new workers.", 0),
        ("He said the \"plan\" would cut costs by a third.", "The plan would reduce costs by about a third, he said.", 1),
        ("The storm knocked out power to 40,000 homes.", "About 40,000 homes lost power in the storm.", 1),
        ("The museum will open a new wing next spring.", "Visitors complained about the long queues at the museum.", 0),
        ("Police arrested two men after the robbery.", "Two men were arrested by police following the robbery.", 1),
        ("The bill passed the Senate 61 to 39.", "The House is expected to vote on the bill next week.", 0),
        ("Rain is forecast for most of the weekend.", "Forecasters expect rain over much of the weekend.", 1),
    ]),
    ("qqp", "train", "QQP", "train.tsv", ("question1", "question2"), [
        ("How do I learn to cook rice?", "What is the best way to cook rice?", 1),
        ("Why is the sky blue?", "How far away is the moon?", 0),
    ]),
    ("stsb", "validation", "STS-B", "dev.tsv", ("sentence1", "sentence2"), [
        ("A man is playing a guitar.", "A man plays the guitar.", 4.75),
        ("A dog runs in the park.", "A woman is slicing onions.", 0.0),
        ("Two kids are playing soccer.", "Children are playing football outside.", 3.2),
    ]),
    ("mnli", "validation_matched", "MNLI", "dev_matched.tsv", ("premise", "hypothesis"), [
        ("The new rules are strict but fair.", "The rules are fair.", 0),
        ("The new rules are strict but fair.", "Everyone likes the rules.", 1),
        ("The new rules are strict but fair.", "There are no rules.", 2),
    ]),
    ("qnli", "validation", "QNLI", "dev.tsv", ("question", "sentence"), [
        ("When did the bridge open?", "The bridge opened to traffic in 1932.", 0),
        ("Who designed the bridge?", "The bridge is painted grey.", 1),
    ]),
    ("rte", "validation", "RTE", "dev.tsv", ("sentence1", "sentence2"), [
        ("The company was founded in Oslo in 1990.", "The company is from Oslo.", 0),
        ("The mayor visited the school.", "The mayor resigned.", 1),
    ]),
    ("wnli", "train", "WNLI", "train.tsv", ("sentence1", "sentence2"), [
        ("I put the cake on the plate because it was clean.", "The plate was clean.", 1),
        ("I put the cake on the plate because it was clean.", "The cake was clean.", 0),
    ]),
    ("ax", "test", "diagnostic", "diagnostic.tsv", ("premise", "hypothesis"), [
        ("The cat chased the mouse.", "The mouse was chased by the cat.", -1),
        ("Nobody came to the party.", "Somebody came to the party.", -1),
    ]),
    # An unlabelled split: -1 on the hub, no label column in GLUE's test files.
    ("mrpc", "test", "MRPC", "test.tsv", ("sentence1", "sentence2"), [
        ("The river flooded the lower town.", "The lower town was flooded by the river.", -1),
        ("Prices fell for the third month.", "The team won its third game.", -1),
    ]),
]



def tsv_label(config, hub):
    """The label as the old TSV file writes it."""
    if config in ("mnli", "ax"):
        return HUB_NAMES[config][hub]
    if config in ("qnli", "rte"):
        return HUB_NAMES[config][hub]
    if config == "stsb":
        return f"{hub:.3f}"
    return str(hub)


def tsv_lines(config, split, rows):
    """Rows in the old GLUE layout of this task and split (as download_glue_data.py left it)."""
    test = split.startswith("test")
    out = []
    if config == "cola":
        for a, _, y in rows:
            out.append(f"src1\t{y}\t{'' if y else '*'}\t{a}")
    elif config == "sst2":
        out.append("sentence\tlabel")
        out += [f"{a}\t{y}" for a, _, y in rows]
    elif config == "mrpc":
        out.append(("index" if test else "Quality") + "\t#1 ID\t#2 ID\t#1 String\t#2 String")
        for i, (a, b, y) in enumerate(rows):
            out.append(f"{i if test else y}\t{1000 + i}\t{2000 + i}\t{a}\t{b}")
    elif config == "qqp":
        out.append("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate")
        out += [f"{i}\t{2 * i}\t{2 * i + 1}\t{a}\t{b}\t{y}" for i, (a, b, y) in enumerate(rows)]
    elif config == "stsb":
        out.append("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore")
        out += [f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{a}\t{b}\t{tsv_label(config, y)}"
                for i, (a, b, y) in enumerate(rows)]
    elif config == "mnli":
        out.append("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
                   "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label")
        out += [f"{i}\t{i}\t{i}n\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\t{a}\t{b}\t"
                f"{tsv_label(config, y)}\t{tsv_label(config, y)}" for i, (a, b, y) in enumerate(rows)]
    elif config in ("qnli", "rte", "wnli"):
        first, second = {"qnli": ("question", "sentence")}.get(config, ("sentence1", "sentence2"))
        out.append(f"index\t{first}\t{second}\tlabel")
        out += [f"{i}\t{a}\t{b}\t{tsv_label(config, y)}" for i, (a, b, y) in enumerate(rows)]
    elif config == "ax":
        out.append("index\tsentence1\tsentence2")
        out += [f"{i}\t{a}\t{b}" for i, (a, b, _) in enumerate(rows)]
    return "\n".join(out) + "\n"


def hub_table(config, columns, rows, offset=0):
    """A table in the hub's columns and types: strings, int64 ClassLabel (float32 for STS-B),
    int32 idx."""
    a, b = columns
    data = {a: [r[0] for r in rows]}
    fields = [pa.field(a, pa.string())]
    if b:
        data[b] = [r[1] for r in rows]
        fields.append(pa.field(b, pa.string()))
    data["label"] = [r[2] for r in rows]
    fields.append(pa.field("label", pa.float32() if config == "stsb" else pa.int64()))
    data["idx"] = list(range(offset, offset + len(rows)))
    fields.append(pa.field("idx", pa.int32()))
    return pa.Table.from_pydict(data, schema=pa.schema(fields))


def hf_features(config, columns):
    """The `huggingface` schema metadata that `datasets` writes into its parquet files."""
    feats = {c: {"dtype": "string", "_type": "Value"} for c in columns if c}
    if config == "stsb":
        feats["label"] = {"dtype": "float32", "_type": "Value"}
    else:
        feats["label"] = {"names": HUB_NAMES[config], "_type": "ClassLabel"}
    feats["idx"] = {"dtype": "int32", "_type": "Value"}
    return json.dumps({"info": {"features": feats}})


def write_parquet(table, path, compression="snappy", hf=None):
    if hf is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"huggingface": hf.encode()})
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path, compression=compression)


def write_custom(rows, columns, label_of, stem):
    """CSV and JSON Lines versions of pair rows, in the given column names."""
    a, b, y = columns
    with open(stem + ".csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([a, b, y])
        for r in rows:
            w.writerow([r[0], r[1], label_of(r[2])])
    with open(stem + ".jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({a: r[0], b: r[1], y: label_of(r[2])}, ensure_ascii=False) + "\n")


def fixtures():
    for config, split, folder, name, columns, rows in TASKS:
        tsv = os.path.join(OUT, "glue_tsv", folder, name)
        os.makedirs(os.path.dirname(tsv), exist_ok=True)
        with open(tsv, "w", newline="") as f:
            f.write(tsv_lines(config, split, rows))
        parquet_dir = os.path.join(OUT, "glue_parquet", config)
        if (config, split) == ("mrpc", "validation"):
            # Two shards, snappy then zstd; the second carries the `datasets` features.
            half = len(rows) // 2
            write_parquet(hub_table(config, columns, rows[:half]),
                          os.path.join(parquet_dir, f"{split}-00000-of-00002.parquet"), "snappy")
            write_parquet(hub_table(config, columns, rows[half:], half),
                          os.path.join(parquet_dir, f"{split}-00001-of-00002.parquet"), "zstd",
                          hf_features(config, columns))
        else:
            write_parquet(hub_table(config, columns, rows),
                          os.path.join(parquet_dir, f"{split}-00000-of-00001.parquet"), "snappy",
                          hf_features(config, columns))
    # The MRPC rows as one's own files: CSV, JSON Lines and a single parquet file.
    mrpc = next(t for t in TASKS if t[0] == "mrpc" and t[1] == "validation")
    custom = os.path.join(OUT, "custom")
    os.makedirs(custom, exist_ok=True)
    write_custom(mrpc[5], ("sentence1", "sentence2", "label"), int, os.path.join(custom, "mrpc"))
    write_parquet(hub_table("mrpc", mrpc[4], mrpc[5]), os.path.join(custom, "mrpc.parquet"), "zstd")
    # String labels for fine-tuning a new head: three sentiment classes.
    words = {
        "positive": ["great", "lovely", "wonderful", "excellent", "delightful", "superb"],
        "negative": ["awful", "boring", "terrible", "dreadful", "dull", "poor"],
        "neutral": ["average", "ordinary", "standard", "typical", "plain", "usual"],
    }
    things = ["film", "meal", "book", "show", "hotel"]
    with open(os.path.join(custom, "sentiment.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        for i in range(30):
            label = ["positive", "negative", "neutral"][i % 3]
            w.writerow([f"a {words[label][i % 6]} {things[i % 5]}, really {words[label][(i + 1) % 6]}", label])


def convert_mrpc(tsv, out):
    """The real MRPC dev set in the hub layout (two shards: snappy and zstd), CSV and JSONL."""
    rows = []
    with open(tsv, encoding="utf-8-sig") as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    for line in lines[1:]:
        q, _, _, a, b = line.split("\t")
        rows.append((a, b, int(q)))
    cols = ("sentence1", "sentence2")
    half = len(rows) // 2
    d = os.path.join(out, "glue", "mrpc")
    write_parquet(hub_table("mrpc", cols, rows[:half]), os.path.join(d, "validation-00000-of-00002.parquet"))
    write_parquet(hub_table("mrpc", cols, rows[half:], half), os.path.join(d, "validation-00001-of-00002.parquet"),
                  "zstd", hf_features("mrpc", cols))
    write_custom(rows, ("sentence1", "sentence2", "label"), int, os.path.join(out, "mrpc_dev"))
    print(f"wrote {len(rows)} MRPC dev pairs to {out}/glue/mrpc/, {out}/mrpc_dev.csv and .jsonl", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mrpc-dev", help="a GLUE MRPC dev.tsv to convert (with --out)")
    p.add_argument("--out", help="folder for the converted MRPC dev set")
    args = p.parse_args()
    if args.mrpc_dev:
        if not args.out:
            p.error("--mrpc-dev needs --out")
        convert_mrpc(args.mrpc_dev, args.out)
    else:
        fixtures()
        print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
