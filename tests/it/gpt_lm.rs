//! `--task lm` through the binary on the tiny GPT-2 fixture: eval, prune and reload, and the
//! bad inputs of the language-model issue (one-line errors, nothing written).
use crate::common::*;

fn tiny_gpt2() -> String {
    fixture("tiny-gpt2").display().to_string()
}

fn token_ids() -> String {
    fixture("tiny_token_ids.txt").display().to_string()
}

/// MRPC dev sentences as one text file (real English for the tiny tokenizer).
fn mrpc_text(dir: &std::path::Path, lines: usize) -> String {
    let tsv = std::fs::read_to_string(root().join("data/glue/MRPC/dev.tsv")).unwrap();
    let text: Vec<&str> = tsv
        .lines()
        .skip(1)
        .take(lines)
        .map(|l| l.split('\t').nth(3).unwrap())
        .collect();
    let p = dir.join("mrpc.txt");
    std::fs::write(&p, text.join("\n")).unwrap();
    p.display().to_string()
}

#[test]
fn eval_on_text_and_token_ids_reports_loss_perplexity_and_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let text = mrpc_text(tmp.path(), 40);
    let out = tmp.path().join("eval");
    let args = [
        "eval",
        "--model",
        &tiny_gpt2(),
        "--task",
        "lm",
        "--text",
        &text,
        "--block-size",
        "16",
        "--batch-size",
        "5",
        "--json",
        "--output-dir",
    ];
    let j = ok(&bertology(&[&args[..], &[out.to_str().unwrap()]].concat()));
    let m = &j["metrics"];
    let blocks = j["examples"].as_u64().unwrap();
    assert!(blocks > 10, "{j}");
    // 15 predicted tokens per 16-token block (the first has no context).
    assert_eq!(m["tokens"].as_f64().unwrap() as u64, blocks * 15);
    let loss = m["loss"].as_f64().unwrap();
    assert!((m["perplexity"].as_f64().unwrap() - loss.exp()).abs() < 1e-9 * loss.exp());
    assert!((m["inverse_loss"].as_f64().unwrap() * loss - 1.0).abs() < 1e-12);
    // The batch size changes nothing: the loss is a mean over tokens, not over batches.
    let out2 = tmp.path().join("eval2");
    let j2 = ok(&bertology(
        &[
            &args[..10],
            &["32", "--json", "--output-dir", out2.to_str().unwrap()],
        ]
        .concat(),
    ));
    assert!((j2["metrics"]["loss"].as_f64().unwrap() - loss).abs() < 1e-6);
    let csv = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    assert_eq!(csv.lines().count() as u64, blocks + 1);
    assert!(csv.starts_with("index,tokens,loss"));
}

#[test]
fn prune_on_token_ids_saves_a_model_that_reloads_with_the_pruned_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("prune");
    let j = ok(&bertology(&[
        "prune",
        "--model",
        &tiny_gpt2(),
        "--task",
        "lm",
        "--token-ids",
        &token_ids(),
        "--batch-size",
        "8",
        "--target-heads",
        "0.5",
        "--min-heads-per-layer",
        "1",
        "--json",
        "--output-dir",
        out.to_str().unwrap(),
    ]));
    assert_eq!(j["heads_kept"], 6);
    assert_eq!(j["metric"], "inverse_loss");
    let pruned_dir = out.join("pruned_model");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pruned_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["architectures"][0], "GPT2LMHeadModel");
    assert!(pruned_dir.join("tokenizer.json").is_file() && pruned_dir.join("merges.txt").is_file());
    // Pruned equals masked, and the saved model evaluates to the pruned score.
    assert!(j["max_abs_logit_diff_pruned_vs_masked"].as_f64().unwrap() < 1e-4);
    let e = ok(&bertology(&[
        "eval",
        "--model",
        pruned_dir.to_str().unwrap(),
        "--task",
        "lm",
        "--token-ids",
        &token_ids(),
        "--json",
        "--output-dir",
        tmp.path().join("e").to_str().unwrap(),
    ]));
    let reloaded = e["metrics"]["inverse_loss"].as_f64().unwrap();
    let pruned = j["pruned_score"].as_f64().unwrap();
    assert!((reloaded - pruned).abs() < 1e-5, "{reloaded} vs {pruned}");
    let i = ok(&bertology(&[
        "inspect",
        "--model",
        pruned_dir.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(i["heads_total"], 6);
}

#[test]
fn bad_language_model_inputs_are_one_line_errors_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "  \n").unwrap();
    let short = tmp.path().join("short.txt");
    std::fs::write(&short, "Hi.").unwrap();
    let big_ids = tmp.path().join("ids.txt");
    std::fs::write(&big_ids, "1 2 3\n4 300 6\n").unwrap();
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    let bert = fixture("tiny-bert").display().to_string();
    let mrpc = root().join("data/glue/MRPC").display().to_string();
    let (e, s, b) = (
        empty.to_str().unwrap(),
        short.to_str().unwrap(),
        big_ids.to_str().unwrap(),
    );
    let gpt2 = tiny_gpt2();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "eval",
                "--model",
                &gpt2,
                "--task",
                "lm",
                "--text",
                e,
                "--block-size",
                "16",
            ],
            "empty file",
        ),
        (
            vec![
                "prune",
                "--model",
                &gpt2,
                "--task",
                "lm",
                "--text",
                s,
                "--block-size",
                "16",
            ],
            "fewer than one block of --block-size 16",
        ),
        (
            vec![
                "importance",
                "--model",
                &gpt2,
                "--task",
                "lm",
                "--token-ids",
                b,
            ],
            "line 2: token id 300 is outside the model's vocabulary 0..300",
        ),
        (
            vec!["eval", "--model", &bert, "--task", "lm", "--token-ids", b],
            "has no language-model head",
        ),
        (
            vec![
                "eval",
                "--model",
                &gpt2,
                "--task",
                "mrpc",
                "--data-dir",
                &mrpc,
            ],
            "pad_token_id is not set",
        ),
        (
            vec!["eval", "--model", &gpt2, "--task", "lm"],
            "needs --text",
        ),
        (
            vec!["eval", "--model", &gpt2, "--task", "mrpc", "--token-ids", b],
            "for --task lm or mlm",
        ),
    ];
    for (args, want) in cases {
        let run = bertology(&[&args[..], &["--output-dir", o]].concat());
        let err = one_line_error(&run);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} wrote {o}");
    }
}

#[test]
fn masked_lm_masks_the_same_tokens_for_a_seed_whatever_the_batching() {
    let tmp = tempfile::tempdir().unwrap();
    let text = mrpc_text(tmp.path(), 40);
    let bert = fixture("tiny-bert-mlm").display().to_string();
    let run = |seed: &str, batch: &str, name: &str| {
        let out = tmp.path().join(name);
        ok(&bertology(&[
            "eval",
            "--model",
            &bert,
            "--task",
            "mlm",
            "--text",
            &text,
            "--block-size",
            "16",
            "--seed",
            seed,
            "--batch-size",
            batch,
            "--json",
            "--output-dir",
            out.to_str().unwrap(),
        ]))
    };
    let a_all = run("1", "4", "a");
    let blocks = a_all["examples"].as_f64().unwrap();
    let a = &a_all["metrics"];
    let b = &run("1", "32", "b")["metrics"];
    let c = &run("2", "4", "c")["metrics"];
    assert_eq!(a["tokens"], b["tokens"]);
    let (la, lb) = (a["loss"].as_f64().unwrap(), b["loss"].as_f64().unwrap());
    assert!((la - lb).abs() < 1e-6, "{la} vs {lb}");
    assert!(
        (la - c["loss"].as_f64().unwrap()).abs() > 1e-4,
        "another seed masks other tokens"
    );
    // About 15 % of the tokens are predicted.
    let share = a["tokens"].as_f64().unwrap() / (16.0 * blocks);
    assert!((0.08..0.22).contains(&share), "{share}");
    let wrong = bertology(&[
        "eval",
        "--model",
        &bert,
        "--task",
        "lm",
        "--text",
        &text,
        "--output-dir",
        tmp.path().join("d").to_str().unwrap(),
    ]);
    assert!(one_line_error(&wrong).contains("use --task mlm"));
}
