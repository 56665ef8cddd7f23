//! `finetune --task lm / mlm` through the binary: retraining the tiny GPT-2 (and a pruned one,
//! and a BERT with an MLM head) on MRPC sentences, checked with `eval` on the same held-out
//! text; head masks kept while training; bad inputs.
use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The binary on one thread: these models are tiny, and threads fighting over a busy machine's
/// cores make each step many times slower.
fn bt(args: &[&str]) -> std::process::Output {
    bertology(&[&["--threads", "1"][..], args].concat())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Both sentences of MRPC rows `rows` of `split` (train or dev), one per line: real English.
fn mrpc_sentences(dir: &Path, split: &str, rows: std::ops::Range<usize>) -> PathBuf {
    let tsv = std::fs::read_to_string(root().join(format!("data/glue/MRPC/{split}.tsv"))).unwrap();
    let mut lines = Vec::new();
    for row in tsv.lines().skip(1 + rows.start).take(rows.len()) {
        let cols: Vec<&str> = row.split('\t').collect();
        lines.push(cols[3]);
        lines.push(cols[4]);
    }
    let p = dir.join(format!("mrpc-{split}-{}-{}.txt", rows.start, rows.end));
    std::fs::write(&p, lines.join("\n")).unwrap();
    p
}

/// `eval --task T` of `model` on `data` (e.g. ["--text", FILE]): eval.json.
fn eval_lm(model: &Path, task: &str, data: &[&str], block: &str, out: &Path) -> Value {
    ok(&bt(&[
        &["eval", "--model", s(model), "--task", task][..],
        data,
        &[
            "--block-size",
            block,
            "--device",
            "cpu",
            "--json",
            "--output-dir",
            s(out),
        ],
    ]
    .concat()))
}

/// `finetune --task T` of `model` with `args` (data and settings), saved to `out`: finetune.json.
fn finetune_lm(model: &Path, task: &str, args: &[&str], out: &Path) -> Value {
    ok(&bt(&[
        &["finetune", "--model", s(model), "--task", task][..],
        args,
        &[
            "--device",
            "cpu",
            "--quiet",
            "--json",
            "--output-dir",
            s(out),
        ],
    ]
    .concat()))
}

fn loss(metrics: &Value) -> f64 {
    metrics["loss"].as_f64().unwrap()
}

fn config(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

/// The saved epoch is the one with the lowest dev loss, and it is the one reported as best.
fn assert_best_is_lowest(ft: &Value) {
    let epochs = ft["epochs"].as_array().unwrap();
    let lowest = epochs
        .iter()
        .min_by(|a, b| loss(&a["metrics"]).total_cmp(&loss(&b["metrics"])))
        .unwrap();
    assert_eq!(ft["best"]["epoch"], lowest["epoch"], "{ft}");
    assert_eq!(ft["metric"], "loss");
}

#[test]
fn finetuning_gpt2_on_mrpc_train_sentences_lowers_the_dev_loss_that_eval_measures() {
    let tmp = tempfile::tempdir().unwrap();
    let train = mrpc_sentences(tmp.path(), "train", 0..300);
    let dev = mrpc_sentences(tmp.path(), "dev", 0..60);
    let gpt2 = fixture("tiny-gpt2");
    let text = ["--text", s(&dev)];
    let before = eval_lm(&gpt2, "lm", &text, "16", &tmp.path().join("e0"));
    let out = tmp.path().join("tuned");
    let ft = finetune_lm(
        &gpt2,
        "lm",
        &[
            "--text",
            s(&train),
            "--dev-text",
            s(&dev),
            "--block-size",
            "16",
            "--batch-size",
            "16",
            "--epochs",
            "2",
            "--learning-rate",
            "3e-3",
        ],
        &out,
    );
    let after = eval_lm(&out, "lm", &text, "16", &tmp.path().join("e1"));
    let (l0, l1) = (loss(&before["metrics"]), loss(&after["metrics"]));
    eprintln!("tiny GPT-2, MRPC dev sentences: loss {l0:.4} before, {l1:.4} after");
    // A random tiny model sits near ln(300) = 5.7 nats; two epochs on 600 sentences learn at
    // least the byte statistics of English.
    assert!(l1 < l0 - 1.0, "dev loss {l0} -> {l1}");
    // finetune.json's best epoch is what eval measures on the saved model.
    let best = loss(&ft["best"]["metrics"]);
    assert!(
        (best - l1).abs() < 1e-5 * l1,
        "finetune.json {best} vs eval {l1}"
    );
    assert_best_is_lowest(&ft);
    let epochs = ft["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2);
    // Every epoch sees every training block: 15 predicted tokens per 16-token block.
    let blocks = ft["train_examples"].as_u64().unwrap();
    assert!(blocks > 500, "{ft}");
    for e in epochs {
        assert_eq!(e["train_tokens"].as_u64().unwrap(), blocks * 15);
        assert_eq!(e["metrics"]["tokens"], after["metrics"]["tokens"]);
        let (l, p) = (
            loss(&e["metrics"]),
            e["metrics"]["perplexity"].as_f64().unwrap(),
        );
        assert!((p - l.exp()).abs() < 1e-9 * p);
        assert!(e["train_loss"].as_f64().unwrap().is_finite());
    }
    assert_eq!(
        ft["dev_tokens"].as_f64(),
        after["metrics"]["tokens"].as_f64()
    );
    assert_eq!(ft["source"]["train"]["kind"], "text");
    assert_eq!(
        ft["settings"]["steps"].as_u64().unwrap(),
        2 * blocks.div_ceil(16)
    );
    // A Hugging Face folder: the LM class, the tokenizer files, the summary.
    assert_eq!(config(&out)["architectures"][0], "GPT2LMHeadModel");
    for f in [
        "tokenizer.json",
        "vocab.json",
        "merges.txt",
        "finetune.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
}

#[test]
fn a_pruned_gpt2_retrains_at_its_pruned_shapes_and_eval_gives_the_best_dev_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let pruned = fixture("tiny-gpt2-pruned");
    let train = mrpc_sentences(tmp.path(), "train", 0..150);
    let dev = mrpc_sentences(tmp.path(), "dev", 0..40);
    let text = ["--text", s(&dev)];
    let before = eval_lm(&pruned, "lm", &text, "16", &tmp.path().join("e0"));
    let out = tmp.path().join("tuned");
    let ft = finetune_lm(
        &pruned,
        "lm",
        &[
            "--text",
            s(&train),
            "--dev-text",
            s(&dev),
            "--block-size",
            "16",
            "--batch-size",
            "16",
            "--epochs",
            "2",
            "--learning-rate",
            "3e-3",
        ],
        &out,
    );
    let original = config(&pruned);
    assert_eq!(config(&out)["pruned_heads"], original["pruned_heads"]);
    assert_eq!(ft["pruned_heads"], original["pruned_heads"]);
    assert_eq!(ft["heads_per_layer"], serde_json::json!([3, 4, 2]));
    let inspect = ok(&bt(&["inspect", "--json", "--model", s(&out)]));
    assert_eq!(inspect["heads_per_layer"], serde_json::json!([3, 4, 2]));
    // Every tensor keeps its pruned shape, and training changed the weights.
    let (a, b) = (
        read_tensors(&pruned.join("model.safetensors")),
        read_tensors(&out.join("model.safetensors")),
    );
    let mut changed = 0;
    for (name, orig) in &a {
        let t = b
            .get(name)
            .unwrap_or_else(|| panic!("{name} was not saved"));
        assert_eq!(t.size(), orig.size(), "{name}");
        changed += (max_abs_diff(t, orig) > 1e-6) as usize;
    }
    assert!(changed > a.len() / 2, "{changed} of {} changed", a.len());
    // eval of the saved model on the dev text gives the best epoch's dev loss, lower than
    // before.
    let after = eval_lm(&out, "lm", &text, "16", &tmp.path().join("e1"));
    let (l0, l1, best) = (
        loss(&before["metrics"]),
        loss(&after["metrics"]),
        loss(&ft["best"]["metrics"]),
    );
    eprintln!("pruned tiny GPT-2, MRPC dev sentences: loss {l0:.4} before, {l1:.4} after");
    assert!(
        (best - l1).abs() < 1e-5 * l1,
        "finetune.json {best} vs eval {l1}"
    );
    assert!(l1 < l0 - 1.0, "dev loss {l0} -> {l1}");
    assert_best_is_lowest(&ft);
}

#[test]
fn dev_fraction_holds_out_the_last_token_id_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = fixture("tiny_token_ids.txt");
    let out = tmp.path().join("tuned");
    let ft = finetune_lm(
        &fixture("tiny-gpt2"),
        "lm",
        &[
            "--token-ids",
            s(&ids),
            "--dev-fraction",
            "0.25",
            "--batch-size",
            "4",
            "--epochs",
            "2",
        ],
        &out,
    );
    // 24 lines of 12 ids: the last 6 are dev, never trained on.
    assert_eq!(
        (ft["train_examples"].as_u64(), ft["dev_examples"].as_u64()),
        (Some(18), Some(6))
    );
    assert_eq!(ft["source"]["dev"]["dev_fraction"], 0.25);
    assert_eq!(ft["source"]["train"]["kind"], "token-ids");
    assert_eq!(ft["epochs"][0]["train_tokens"], 18 * 11);
    let text = std::fs::read_to_string(&ids).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 24);
    let dev = tmp.path().join("dev_ids.txt");
    std::fs::write(&dev, lines[18..].join("\n")).unwrap();
    let e = eval_lm(
        &out,
        "lm",
        &["--token-ids", s(&dev)],
        "16",
        &tmp.path().join("e"),
    );
    assert_eq!(e["metrics"]["tokens"].as_f64(), Some(66.0));
    let (best, evaluated) = (loss(&ft["best"]["metrics"]), loss(&e["metrics"]));
    assert!(
        (best - evaluated).abs() < 1e-5 * evaluated,
        "finetune.json {best} vs eval {evaluated}"
    );
    assert_best_is_lowest(&ft);
}

#[test]
fn masked_heads_stay_untouched_while_the_others_train() {
    let tmp = tempfile::tempdir().unwrap();
    let gpt2 = fixture("tiny-gpt2");
    let train = mrpc_sentences(tmp.path(), "train", 0..40);
    // Mask layer 1's head 2 (heads are 4 wide in a 16-wide model).
    let mask = tch::Tensor::ones([3, 4], (tch::Kind::Float, tch::Device::Cpu));
    let _ = mask.get(1).get(2).fill_(0.0);
    let mask_file = tmp.path().join("mask.npy");
    mask.write_npy(&mask_file).unwrap();
    let out = tmp.path().join("tuned");
    let ft = finetune_lm(
        &gpt2,
        "lm",
        &[
            "--text",
            s(&train),
            "--block-size",
            "16",
            "--batch-size",
            "8",
            "--epochs",
            "1",
            "--learning-rate",
            "1e-2",
            // Without decay, a weight whose gradient is always zero does not move at all.
            "--weight-decay",
            "0",
            "--head-mask",
            s(&mask_file),
        ],
        &out,
    );
    assert_eq!(ft["settings"]["head_mask"], s(&mask_file));
    let (a, b) = (
        read_tensors(&gpt2.join("model.safetensors")),
        read_tensors(&out.join("model.safetensors")),
    );
    // The same weight in either file, whatever prefix each file's names carry.
    let get = |m: &std::collections::HashMap<String, tch::Tensor>, k: &str| {
        m.iter()
            .find(|(n, _)| n.ends_with(k))
            .unwrap_or_else(|| panic!("no {k}"))
            .1
            .shallow_clone()
    };
    for layer in 0..3 {
        // c_attn is [in, q | k | v]; c_proj's rows take the heads' outputs.
        let attn = format!("h.{layer}.attn.c_attn.weight");
        let proj = format!("h.{layer}.attn.c_proj.weight");
        let (attn_a, attn_b) = (get(&a, &attn), get(&b, &attn));
        let (proj_a, proj_b) = (get(&a, &proj), get(&b, &proj));
        for head in 0..4i64 {
            let cols: Vec<i64> = (0..3)
                .flat_map(|block| (0..4).map(move |d| block * 16 + head * 4 + d))
                .collect();
            let cols = tch::Tensor::from_slice(&cols);
            let rows = tch::Tensor::arange_start(
                head * 4,
                head * 4 + 4,
                (tch::Kind::Int64, tch::Device::Cpu),
            );
            let qkv = max_abs_diff(
                &attn_a.index_select(1, &cols),
                &attn_b.index_select(1, &cols),
            );
            let out_rows = max_abs_diff(
                &proj_a.index_select(0, &rows),
                &proj_b.index_select(0, &rows),
            );
            if (layer, head) == (1, 2) {
                assert_eq!((qkv, out_rows), (0.0, 0.0), "masked head moved");
            } else {
                assert!(
                    qkv > 1e-4 && out_rows > 1e-4,
                    "head {layer}.{head} did not train"
                );
            }
        }
    }
}

#[test]
fn a_masked_lm_retrains_with_dev_masks_fixed_by_the_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let bert = fixture("tiny-bert-mlm");
    let train = mrpc_sentences(tmp.path(), "train", 0..100);
    let dev = mrpc_sentences(tmp.path(), "dev", 0..30);
    let text = ["--text", s(&dev), "--seed", "7"];
    let before = eval_lm(&bert, "mlm", &text, "16", &tmp.path().join("e0"));
    let out = tmp.path().join("tuned");
    let ft = finetune_lm(
        &bert,
        "mlm",
        &[
            "--text",
            s(&train),
            "--dev-text",
            s(&dev),
            "--block-size",
            "16",
            "--batch-size",
            "16",
            "--epochs",
            "3",
            "--learning-rate",
            "3e-3",
            "--seed",
            "7",
        ],
        &out,
    );
    assert_eq!(config(&out)["architectures"][0], "BertForMaskedLM");
    let epochs = ft["epochs"].as_array().unwrap();
    // The same dev positions every epoch; new training masks every epoch.
    for e in epochs {
        assert_eq!(e["metrics"]["tokens"], before["metrics"]["tokens"]);
    }
    let train_tokens: Vec<u64> = epochs
        .iter()
        .map(|e| e["train_tokens"].as_u64().unwrap())
        .collect();
    assert!(
        train_tokens.windows(2).any(|w| w[0] != w[1]),
        "{train_tokens:?}"
    );
    // eval with the run's seed masks dev as finetune did.
    let after = eval_lm(&out, "mlm", &text, "16", &tmp.path().join("e1"));
    let (best, l1, l0) = (
        loss(&ft["best"]["metrics"]),
        loss(&after["metrics"]),
        loss(&before["metrics"]),
    );
    eprintln!("tiny BERT MLM, MRPC dev sentences: loss {l0:.4} before, {l1:.4} after");
    assert!(
        (best - l1).abs() < 1e-5 * l1,
        "finetune.json {best} vs eval {l1}"
    );
    assert!(l1 < l0 - 0.5, "dev loss {l0} -> {l1}");
    assert_best_is_lowest(&ft);
}

#[test]
fn bad_language_model_finetuning_inputs_are_one_line_errors_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let text = mrpc_sentences(tmp.path(), "train", 0..20);
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, " \n\n").unwrap();
    let short = tmp.path().join("short.txt");
    std::fs::write(&short, "Hi.").unwrap();
    let big_ids = tmp.path().join("ids.txt");
    std::fs::write(&big_ids, "1 2 3\n4 300 6\n").unwrap();
    let one_block = tmp.path().join("one.txt");
    std::fs::write(&one_block, "Hello there, this is about one or two blocks.").unwrap();
    let out = tmp.path().join("out");
    let (gpt2, bert) = (fixture("tiny-gpt2"), fixture("tiny-bert"));
    let (g, b) = (s(&gpt2), s(&bert));
    let (t, e, sh, ids, one) = (s(&text), s(&empty), s(&short), s(&big_ids), s(&one_block));
    let mrpc = root().join("data/glue/MRPC");
    let (text_empty, dev_empty) = (
        format!("--text {e}: empty file"),
        format!("--dev-text {e}: empty file"),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--model", g, "--task", "lm"], "--task lm needs --text"),
        (
            vec!["--model", g, "--task", "lm", "--dev-text", t],
            "--task lm needs --text",
        ),
        (
            vec![
                "--model",
                g,
                "--task",
                "lm",
                "--text",
                e,
                "--block-size",
                "16",
            ],
            &text_empty,
        ),
        (
            vec![
                "--model",
                g,
                "--task",
                "lm",
                "--text",
                t,
                "--dev-text",
                e,
                "--block-size",
                "16",
            ],
            &dev_empty,
        ),
        (
            vec![
                "--model",
                g,
                "--task",
                "lm",
                "--text",
                sh,
                "--block-size",
                "16",
            ],
            "fewer than one block of --block-size 16",
        ),
        (
            vec!["--model", g, "--task", "lm", "--token-ids", ids],
            "line 2: token id 300 is outside the model's vocabulary 0..300",
        ),
        (
            vec![
                "--model",
                g,
                "--task",
                "lm",
                "--text",
                one,
                "--block-size",
                "16",
            ],
            "too few to hold some out for dev",
        ),
        (
            vec![
                "--model",
                g,
                "--task",
                "lm",
                "--text",
                t,
                "--block-size",
                "64",
            ],
            "--block-size 64 exceeds the 16 tokens",
        ),
        (
            vec!["--model", b, "--task", "lm", "--text", t],
            "has no language-model head",
        ),
        (vec!["--task", "lm", "--text", t], "--task lm needs --model"),
        (
            vec!["--model", g, "--task", "mrpc", "--text", t],
            "for --task lm or mlm",
        ),
        (
            vec!["--model", b, "--task", "mrpc", "--dev-text", t],
            "--dev-text and --dev-token-ids are for --task lm or mlm",
        ),
        (
            vec!["--model", b, "--task", "mrpc", "--dev-fraction", "0.2"],
            "--dev-fraction is for --data-file or --task lm/mlm",
        ),
        (
            vec![
                "--model",
                g,
                "--task",
                "lm",
                "--text",
                t,
                "--data-dir",
                mrpc.to_str().unwrap(),
            ],
            "not --data-dir",
        ),
    ];
    for (args, want) in cases {
        let run = bt(&[
            &["finetune", "--device", "cpu"][..],
            &args,
            &["--output-dir", s(&out)],
        ]
        .concat());
        let err = one_line_error(&run);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
}
