"""Helpers of scripts/experiment-llm.sh (standard library only: a fresh machine has no numpy).

  experiment_llm.py masks RUN_DIR OUT_DIR
      Splits a prune run's masking_masks.npy ([steps, layers, heads], float32) into one
      OUT_DIR/step_NNN.npy per row of its masking_curve.csv, and prints "step heads_kept" lines.
  experiment_llm.py curve RUN_DIR EVAL_DIR OUT_DIR
      OUT_DIR/masking_curve.csv and prune.json for `bertology report --compare`: the run's
      steps with the score of each step's mask on the test text (EVAL_DIR/step_NNN.json, the
      output of `bertology eval --head-mask`).
  experiment_llm.py table OUT
      OUT/comparison.csv (unit, order, step, heads kept, fraction, test loss and perplexity,
      the ranking score) and OUT/study.json (the numbers BENCHMARKS.md quotes); checks them.
"""
import ast
import csv
import glob
import json
import math
import os
import struct
import sys


def read_npy(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:6] != b"\x93NUMPY":
        sys.exit(f"{path}: not a .npy file")
    major = data[6]
    if major == 1:
        (hlen,) = struct.unpack("<H", data[8:10])
        start = 10
    else:
        (hlen,) = struct.unpack("<I", data[8:12])
        start = 12
    header = ast.literal_eval(data[start:start + hlen].decode("latin1"))
    assert header["descr"] == "<f4" and not header["fortran_order"], header
    shape = header["shape"]
    n = 1
    for d in shape:
        n *= d
    values = struct.unpack(f"<{n}f", data[start + hlen:start + hlen + 4 * n])
    return shape, list(values)


def write_npy(path, shape, values):
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({', '.join(str(d) for d in shape)},), }}"
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        f.write(struct.pack(f"<{len(values)}f", *values))


def read_curve(run):
    return list(csv.DictReader(open(os.path.join(run, "masking_curve.csv"))))


def masks(run, out):
    shape, values = read_npy(os.path.join(run, "masking_masks.npy"))
    steps, layers, heads = shape
    curve = read_curve(run)
    assert len(curve) == steps, f"{run}: {steps} masks for {len(curve)} curve rows"
    os.makedirs(out, exist_ok=True)
    size = layers * heads
    # A run that masks neurons (alone or with heads) keeps every step's neuron mask too.
    neuron_file = os.path.join(run, "masking_neuron_masks.npy")
    neurons = read_npy(neuron_file) if os.path.isfile(neuron_file) else None
    for s in range(steps):
        m = values[s * size:(s + 1) * size]
        assert int(sum(m)) == int(curve[s]["heads_kept"]), (run, s)
        write_npy(os.path.join(out, f"step_{s:03d}.npy"), (layers, heads), m)
        if neurons is not None:
            (n_steps, n_layers, width), nv = neurons
            assert (n_steps, n_layers) == (steps, layers), (run, neurons[0])
            n = nv[s * n_layers * width:(s + 1) * n_layers * width]
            assert int(sum(n)) == int(curve[s]["neurons_kept"]), (run, s)
            write_npy(os.path.join(out, f"neurons_{s:03d}.npy"), (n_layers, width), n)
        print(s, curve[s]["heads_kept"])


def curve(run, evals, out):
    os.makedirs(out, exist_ok=True)
    rows = []
    for r in read_curve(run):
        e = json.load(open(os.path.join(evals, f"step_{int(r['step']):03d}.json")))
        rows.append({**r, "score": e["metrics"]["inverse_loss"], "accepted": "true"})
    with open(os.path.join(out, "masking_curve.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    summary = json.load(open(os.path.join(run, "prune.json")))
    json.dump(summary, open(os.path.join(out, "prune.json"), "w"))


def table(out):
    rows = []
    for run in sorted(glob.glob(os.path.join(out, "prune-*-*"))):
        name = os.path.basename(run)
        if not os.path.isdir(os.path.join(out, "evals", name)):
            continue
        _, unit, order = name.split("-", 2)
        summary = json.load(open(os.path.join(run, "prune.json")))
        total = summary["heads_total"]
        for r in read_curve(run):
            step = int(r["step"])
            e = json.load(open(os.path.join(out, "evals", name, f"step_{step:03d}.json")))
            loss = e["metrics"]["loss"]
            rows.append({
                "unit": unit, "order": order, "step": step, "heads_kept": int(r["heads_kept"]),
                "fraction_kept": int(r["heads_kept"]) / total,
                "neurons_kept": int(r["neurons_kept"] or summary["neurons_total"]),
                "parameters_kept": int(r["parameters_kept"]), "test_loss": loss,
                "test_perplexity": math.exp(loss), "rank_score": float(r["score"]),
            })
    assert rows, f"{out}: no evaluated prune runs"
    with open(os.path.join(out, "comparison.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    base = json.load(open(os.path.join(out, "eval-base.json")))["metrics"]["perplexity"]
    study = {"perplexity": base, "runs": {}}
    for unit in ("head", "group", "neurons", "both"):
        for order in ("importance", "reverse", "random"):
            pts = [r for r in rows if r["unit"] == unit and r["order"] == order]
            if not pts:
                continue
            # The smallest model whose perplexity stays within +10 % of the unmasked model's.
            ok = [r for r in pts if r["test_perplexity"] <= 1.1 * base]
            study["runs"][f"{unit}/{order}"] = {
                "points": [(r["heads_kept"], r["neurons_kept"], r["parameters_kept"],
                            round(r["test_perplexity"], 3)) for r in pts],
                "fewest_heads_within_10_percent": min(r["heads_kept"] for r in ok) if ok else None,
                "fewest_parameters_within_10_percent":
                    min(r["parameters_kept"] for r in ok) if ok else None,
            }
    ablation = os.path.join(out, "ablation", "ablation.json")
    if os.path.isfile(ablation):
        a = json.load(open(ablation))
        study["single_head_ablation"] = {
            "hurt": a["heads_that_hurt_when_masked"], "helped": a["heads_that_help_when_masked"],
            "heads": a["heads_ablated"], "tolerance": a["tolerance"],
        }
        if any(b is not None for b in a["best_single_head_per_layer"]):
            study["best_single_head_perplexity_per_layer"] = [
                None if b is None else round(math.exp(1 / b["score"]), 3)
                for b in a["best_single_head_per_layer"]]
    for name in sorted(os.listdir(out)):
        p = os.path.join(out, name, "prune.json")
        if name.startswith("prune-") and os.path.isfile(p):
            s = json.load(open(p))
            study.setdefault("pruned_models", {})[name] = {
                "heads_kept": s["heads_kept"], "neurons_kept": s.get("neurons_kept"),
                "parameters_before": s["parameters_before"],
                "parameters_after": s["parameters_after"], "timing": s.get("timing"),
            }
    json.dump(study, open(os.path.join(out, "study.json"), "w"), indent=1)
    print(json.dumps({k: v for k, v in study.items() if k != "pruned_models"}, indent=1))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"masks": masks, "curve": curve, "table": table}[cmd](*args)
