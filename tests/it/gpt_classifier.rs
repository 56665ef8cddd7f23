//! GPT-2 with a sequence-classification head on GLUE (issue 14): the pooled token is each
//! example's last non-padding token, as transformers reads it; every command runs on a GPT-2
//! classifier for MRPC (two classes) and STS-B (regression); every GLUE task's reader gives the
//! head its shape; a missing or unusable pad_token_id is a one-line error.
//!
//! The base model is tests/fixtures/tiny-gpt2 (a GPT2LMHeadModel with a byte-level BPE tokenizer
//! trained on MRPC) with a pad_token_id set, as one sets it for the real `gpt2`; fine-tuning adds
//! a fresh `score` head.
use crate::common::*;
use bertology::data::glue::{Label, Split, Task};
use bertology::model::{ForwardOptions, Inputs, LoadOptions, Model};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// tiny-gpt2 as a base for classification, padding with `pad` (None: no pad_token_id), with
/// `positions` position embeddings: the fixture's 16 would truncate every MRPC pair to the same
/// length (so no batch would hold padding); rows past them are drawn as the fixture drew its
/// weights (normal, std 0.4), seeded.
fn gpt2_base(into: &Path, name: &str, pad: Option<i64>, positions: i64) -> PathBuf {
    let dir = into.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture("tiny-gpt2")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    edit_json(&dir.join("config.json"), |c| {
        match pad {
            Some(p) => c["pad_token_id"] = p.into(),
            None => {
                c.as_object_mut().unwrap().remove("pad_token_id");
            }
        }
        c["n_positions"] = positions.into();
    });
    edit_weights(&dir, |tensors| {
        let (_, wpe) = tensors
            .iter_mut()
            .find(|(k, _)| k == "transformer.wpe.weight")
            .unwrap();
        let (have, width) = wpe.size2().unwrap();
        tch::manual_seed(1);
        let more = Tensor::randn([positions - have, width], (Kind::Float, Device::Cpu)) * 0.4;
        *wpe = Tensor::cat(&[wpe.shallow_clone(), more], 0);
    });
    dir
}

/// A padding token that is not the tokenizer's id 0 (its end-of-text token): byte 0's token,
/// which no text here contains, as when one adds a dedicated pad token to GPT-2's vocabulary.
fn dedicated_pad_id() -> i64 {
    let vocab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny-gpt2/vocab.json")).unwrap())
            .unwrap();
    let id = vocab["Ā"].as_i64().unwrap();
    assert_ne!(id, 0);
    id
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn logits_column(csv: &Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "logits").unwrap();
    lines
        .map(|l| {
            l.split(',')
                .nth(col)
                .unwrap()
                .split(' ')
                .map(|v| v.parse().unwrap())
                .collect()
        })
        .collect()
}

fn max_row_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(u, v)| (u - v).abs())
        })
        .fold(0.0, f64::max)
}

#[test]
fn gpt2_classifier_pools_the_last_non_padding_token() {
    // tiny-gpt2-cls: GPT2ForSequenceClassification, 3 labels, pad_token_id 0.
    let model = Model::load(
        &fixture("tiny-gpt2-cls"),
        &LoadOptions {
            device: Device::Cpu,
            seed: 0,
            task: None,
        },
    )
    .unwrap();
    // Random ids of mixed lengths (never the pad id 0), right-padded with 0.
    tch::manual_seed(0);
    let lengths = [9i64, 5, 2, 7, 1];
    let width = 9;
    let ids = Tensor::randint_low(
        1,
        64,
        [lengths.len() as i64, width],
        (Kind::Int64, Device::Cpu),
    );
    let attention = Tensor::zeros([lengths.len() as i64, width], (Kind::Int64, Device::Cpu));
    for (i, &n) in lengths.iter().enumerate() {
        let _ = ids.get(i as i64).narrow(0, n, width - n).fill_(0);
        let _ = attention.get(i as i64).narrow(0, 0, n).fill_(1);
    }
    let types = ids.zeros_like();
    let opts = ForwardOptions {
        output_hidden_states: true,
        ..Default::default()
    };
    let batch = tch::no_grad(|| {
        model.net.forward(
            &Inputs {
                input_ids: &ids,
                token_type_ids: &types,
                attention_mask: &attention,
            },
            None,
            opts,
        )
    })
    .unwrap();
    assert_eq!(batch.logits.size(), vec![lengths.len() as i64, 3]);
    let score = model.vs.variables()["score.weight"].shallow_clone();
    let last_hidden = batch.hidden_states.unwrap().pop().unwrap();
    for (i, &n) in lengths.iter().enumerate() {
        let alone_ids = ids.get(i as i64).narrow(0, 0, n).unsqueeze(0);
        let ones = alone_ids.ones_like();
        let alone = tch::no_grad(|| {
            model.net.forward(
                &Inputs {
                    input_ids: &alone_ids,
                    token_type_ids: &alone_ids.zeros_like(),
                    attention_mask: &ones,
                },
                None,
                Default::default(),
            )
        })
        .unwrap()
        .logits;
        let row = batch.logits.get(i as i64).unsqueeze(0);
        let d = max_abs_diff(&row, &alone);
        assert!(d <= 1e-5, "example {i} ({n} tokens): batch vs alone {d}");
        if n < width {
            // Reading the batch's last position (a pad) instead would give other logits: the
            // comparison above can fail.
            let at_end = tch::no_grad(|| {
                last_hidden
                    .get(i as i64)
                    .get(width - 1)
                    .unsqueeze(0)
                    .linear::<Tensor>(&score, None)
            });
            assert!(max_abs_diff(&at_end, &alone) > 1e-3, "example {i}");
        }
    }
}

/// STS-B in GLUE's layout from MRPC pairs: the similarity score is 5 × the Jaccard overlap of
/// the two sentences' lower-cased words (a real, graded target on real sentences).
fn sts_b_from_mrpc(into: &Path, rows: usize) -> PathBuf {
    let dir = into.join("STS-B");
    std::fs::create_dir_all(&dir).unwrap();
    let mrpc = mrpc_dir();
    for (split, file) in [(Split::Train, "train.tsv"), (Split::Dev, "dev.tsv")] {
        let mut out = String::from(
            "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n",
        );
        for (i, e) in Task::Mrpc
            .read(&mrpc, split, Some(rows))
            .unwrap()
            .iter()
            .enumerate()
        {
            let b = e.text_b.as_deref().unwrap();
            let words = |t: &str| -> std::collections::BTreeSet<String> {
                t.split_whitespace().map(str::to_lowercase).collect()
            };
            let (wa, wb) = (words(&e.text_a), words(b));
            let jaccard = wa.intersection(&wb).count() as f64 / wa.union(&wb).count().max(1) as f64;
            out.push_str(&format!(
                "{i}\tmain-news\tMSRpar\t2012train\t{i:04}\tnone\tnone\t{}\t{b}\t{:.3}\n",
                e.text_a,
                5.0 * jaccard
            ));
        }
        std::fs::write(dir.join(file), out).unwrap();
    }
    dir
}

/// finetune → eval (batch of mixed lengths and each example alone) → importance → prune →
/// inspect → report on a GPT-2 base; returns the pruned run's folder.
fn every_command(tmp: &Path, base: &Path, task: Task, data_dir: &Path, outputs: usize) -> PathBuf {
    // The 32 dev pairs have many lengths, so batches hold padding (else pooling is not tested).
    let tok = bertology::model::tokenizer::TextTokenizer::from_dir(base, 256).unwrap();
    let dev = task.read(data_dir, Split::Dev, Some(32)).unwrap();
    let lengths: std::collections::BTreeSet<usize> =
        bertology::data::batch::encode_examples(&tok, &dev)
            .unwrap()
            .iter()
            .map(|e| e.ids.len())
            .collect();
    assert!(lengths.len() >= 16, "{lengths:?}");
    let task = task.name();
    let tuned = tmp.join("tuned");
    let common = [
        "--task",
        task,
        "--data-dir",
        s(data_dir),
        "--device",
        "cpu",
        "--json",
        "--max-seq-length",
        "256",
    ];
    let v = ok(&bertology(
        &[
            &["finetune"][..],
            &common,
            &[
                "--model",
                s(base),
                "--output-dir",
                s(&tuned),
                "--train-subset",
                "32",
                "--eval-subset",
                "32",
                "--batch-size",
                "8",
                "--epochs",
                "2",
                "--learning-rate",
                "1e-3",
            ],
        ]
        .concat(),
    ));
    assert_eq!(v["epochs"].as_array().unwrap().len(), 2, "{task}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tuned.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "GPT2ForSequenceClassification");
    let base_config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["pad_token_id"], base_config["pad_token_id"]);
    assert!(tuned.join("tokenizer.json").is_file());
    let run = |cmd: &str, extra: &[&str]| {
        let mut a = vec![cmd];
        a.extend(common);
        a.extend(["--model", s(&tuned), "--data-subset", "32"]);
        a.extend(extra);
        ok(&bertology(&a))
    };
    // Fine-tuning's dev pass and eval pad alike (with pad_token_id) and pool the same tokens.
    let e = run("eval", &["--output-dir", s(&tmp.join("eval"))]);
    let (ours, tuned_dev) = (
        e["metrics"].as_object().unwrap(),
        v["best"]["metrics"].as_object().unwrap(),
    );
    assert_eq!(ours.len(), tuned_dev.len(), "{task}: {e}");
    for (k, x) in ours {
        let (x, y) = (x.as_f64().unwrap(), tuned_dev[k].as_f64().unwrap());
        assert!(
            (x - y).abs() < 1e-6,
            "{task}: {k}: eval {x} vs finetune {y}"
        );
    }
    let batched = logits_column(&tmp.join("eval/predictions.csv"));
    assert_eq!(batched.len(), 32);
    assert!(batched.iter().all(|r| r.len() == outputs), "{task}");
    run(
        "eval",
        &["--batch-size", "1", "--output-dir", s(&tmp.join("eval1"))],
    );
    let alone = logits_column(&tmp.join("eval1/predictions.csv"));
    let d = max_row_diff(&batched, &alone);
    assert!(
        d <= 1e-5,
        "{task}: padded batches vs each example alone: {d}"
    );
    let imp_dir = tmp.join("importance");
    run("importance", &["--output-dir", s(&imp_dir)]);
    for f in [
        "head_importance.npy",
        "attn_entropy.npy",
        "importance.csv",
        "importance.json",
    ] {
        assert!(imp_dir.join(f).is_file(), "{task}: {f} missing");
    }
    let prune_dir = tmp.join("prune");
    let p = run(
        "prune",
        &[
            "--target-heads",
            "0.5",
            "--min-heads-per-layer",
            "1",
            "--timing-runs",
            "1",
            "--output-dir",
            s(&prune_dir),
        ],
    );
    assert_eq!(p["heads_kept"], 6, "{task}");
    assert!(
        p["max_abs_logit_diff_pruned_vs_masked"].as_f64().unwrap() <= 1e-5,
        "{task}: {p}"
    );
    let pruned = prune_dir.join("pruned_model");
    let inspect = ok(&bertology(&[
        "inspect",
        "--json",
        "--device",
        "cpu",
        "--model",
        s(&pruned),
    ]));
    assert_eq!(
        inspect["heads_per_layer"], p["heads_kept_per_layer"],
        "{task}"
    );
    // The saved pruned model evaluates to the pruned score.
    let again = ok(&bertology(
        &[
            &["eval"][..],
            &common,
            &[
                "--model",
                s(&pruned),
                "--data-subset",
                "32",
                "--output-dir",
                s(&tmp.join("eval-pruned")),
            ],
        ]
        .concat(),
    ));
    let metric = p["metric"].as_str().unwrap();
    let (reloaded, pruned_score) = (
        again["metrics"][metric].as_f64().unwrap(),
        p["pruned_score"].as_f64().unwrap(),
    );
    assert!(
        (reloaded - pruned_score).abs() < 1e-6,
        "{task}: {reloaded} vs {pruned_score}"
    );
    for dir in [&imp_dir, &prune_dir] {
        let out = bertology(&["report", s(dir)]);
        assert!(
            out.status.success(),
            "{task}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(dir.join("report.md").is_file(), "{task}");
    }
    prune_dir
}

#[test]
fn every_command_runs_on_a_gpt2_classifier_for_mrpc() {
    // pad_token_id = eos_token_id, as one sets it for the real gpt2.
    let tmp = tempfile::tempdir().unwrap();
    let base = gpt2_base(tmp.path(), "base", Some(0), 256);
    let prune_dir = every_command(tmp.path(), &base, Task::Mrpc, &mrpc_dir(), 2);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(prune_dir.join("pruned_model/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["id2label"], serde_json::json!({"0": "0", "1": "1"}));
    assert_eq!(config["pad_token_id"], 0);
}

#[test]
fn every_command_runs_on_a_gpt2_regression_head_for_sts_b() {
    // A dedicated pad token (not the tokenizer's 0): fine-tuning, eval and pruning must all pad
    // with pad_token_id for the head to read each example's last real token (fine-tuning's dev
    // Pearson equals eval's only then).
    let tmp = tempfile::tempdir().unwrap();
    let base = gpt2_base(tmp.path(), "base", Some(dedicated_pad_id()), 256);
    let data = sts_b_from_mrpc(tmp.path(), 32);
    let prune_dir = every_command(tmp.path(), &base, Task::Stsb, &data, 1);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(prune_dir.join("pruned_model/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["num_labels"], 1, "{config}");
    assert_eq!(config["problem_type"], "regression", "{config}");
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("eval/eval.json")).unwrap())
            .unwrap();
    for k in ["pearson", "spearmanr"] {
        assert!(eval["metrics"][k].as_f64().unwrap().is_finite(), "{eval}");
    }
    // The targets are graded, not two values.
    let scores: std::collections::BTreeSet<String> = Task::Stsb
        .read(&data, Split::Dev, None)
        .unwrap()
        .iter()
        .map(|e| match e.label {
            Some(Label::Score(v)) => format!("{v:.3}"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(scores.len() > 10, "{scores:?}");
}

#[test]
fn a_gpt2_classifier_takes_the_shape_of_every_glue_task() {
    // Each task's committed rows (tests/fixtures/data/glue_tsv) through a GPT-2 base: a fresh
    // head of the task's width, one row of logits per example, metrics where there are labels.
    let tmp = tempfile::tempdir().unwrap();
    let base = gpt2_base(tmp.path(), "base", Some(0), 16);
    let glue = fixture("data/glue_tsv");
    for (task, folder, split, outputs) in [
        ("cola", "CoLA", "train", 2),
        ("sst-2", "SST-2", "dev", 2),
        ("mrpc", "MRPC", "dev", 2),
        ("sts-b", "STS-B", "dev", 1),
        ("qqp", "QQP", "train", 2),
        ("mnli", "MNLI", "dev", 3),
        ("qnli", "QNLI", "dev", 2),
        ("rte", "RTE", "dev", 2),
        ("wnli", "WNLI", "train", 2),
        ("ax", "diagnostic", "test", 3),
    ] {
        let out = tmp.path().join(task);
        let e = ok(&bertology(&[
            "eval",
            "--model",
            s(&base),
            "--task",
            task,
            "--data-dir",
            s(&glue.join(folder)),
            "--split",
            split,
            "--max-seq-length",
            "16",
            "--device",
            "cpu",
            "--json",
            "--output-dir",
            s(&out),
        ]));
        let rows = logits_column(&out.join("predictions.csv"));
        assert_eq!(rows.len() as u64, e["examples"].as_u64().unwrap(), "{task}");
        assert!(!rows.is_empty(), "{task}");
        assert!(rows.iter().all(|r| r.len() == outputs), "{task}: {rows:?}");
        assert!(rows.iter().flatten().all(|v| v.is_finite()), "{task}");
        let labelled = split != "test";
        assert_eq!(
            e["metrics"].as_object().is_some_and(|m| !m.is_empty()),
            labelled,
            "{task}: {e}"
        );
    }
}

#[test]
fn gpt2_classification_without_a_usable_pad_token_id_is_a_one_line_error_writing_nothing() {
    // (`eval` without pad_token_id: tests/it/gpt_lm.rs.)
    let tmp = tempfile::tempdir().unwrap();
    let none = gpt2_base(tmp.path(), "no-pad", None, 16);
    let outside = gpt2_base(tmp.path(), "pad-outside", Some(50256), 16);
    let negative = gpt2_base(tmp.path(), "pad-negative", Some(-1), 16);
    let mrpc = mrpc_dir();
    let out = tmp.path().join("out");
    let o = s(&out);
    let data = [
        "--task",
        "mrpc",
        "--data-dir",
        s(&mrpc),
        "--max-seq-length",
        "16",
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            [
                &["finetune", "--model", s(&none), "--train-subset", "8"][..],
                &data,
            ]
            .concat(),
            "pad_token_id is not set; GPT2ForSequenceClassification needs it",
        ),
        (
            [&["prune", "--model", s(&none)][..], &data].concat(),
            "pad_token_id is not set",
        ),
        (
            [&["importance", "--model", s(&none)][..], &data].concat(),
            "pad_token_id is not set",
        ),
        (
            [&["eval", "--model", s(&outside)][..], &data].concat(),
            "pad_token_id 50256 is outside the vocabulary 0..300",
        ),
        (
            [&["finetune", "--model", s(&negative)][..], &data].concat(),
            "pad_token_id -1 is outside the vocabulary 0..300",
        ),
    ];
    for (args, want) in cases {
        let run = bertology(&[&args[..], &["--output-dir", o]].concat());
        let err = one_line_error(&run);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(err.contains("config.json"), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} wrote {o}");
    }
    // The language-model head needs no pad token: the same folder reads as a causal LM.
    let text = tmp.path().join("t.txt");
    let dev: Vec<String> = mrpc_dev(Some(8)).into_iter().map(|e| e.text_a).collect();
    std::fs::write(&text, dev.join("\n")).unwrap();
    ok(&bertology(&[
        "eval",
        "--model",
        s(&none),
        "--task",
        "lm",
        "--text",
        s(&text),
        "--block-size",
        "16",
        "--json",
        "--output-dir",
        s(&tmp.path().join("lm")),
    ]));
}
