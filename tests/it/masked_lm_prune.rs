//! `--task mlm` through the binary on the tiny BERT and RoBERTa with MLM heads (issue 14): each
//! reads MRPC text with its own tokenizer, and importance, prune (a saved masked-LM checkpoint
//! that reloads with the pruned score), inspect and report run. The reload in transformers is
//! checked by scripts/check-families.sh (scripts/reference/check_gpt_saved_model.py).
use crate::common::*;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The first `lines` MRPC dev sentences as one text file.
fn mrpc_text(dir: &Path, lines: usize) -> std::path::PathBuf {
    let text: Vec<String> = mrpc_dev(Some(lines))
        .into_iter()
        .map(|e| e.text_a)
        .collect();
    let p = dir.join("mrpc.txt");
    std::fs::write(&p, text.join("\n")).unwrap();
    p
}

#[test]
fn masked_lm_prune_saves_bert_and_roberta_checkpoints_that_reload_with_the_pruned_score() {
    let tmp = tempfile::tempdir().unwrap();
    let text = mrpc_text(tmp.path(), 40);
    for (name, class, mask_token) in [
        ("tiny-bert-mlm", "BertForMaskedLM", "[MASK]"),
        ("tiny-roberta-mlm", "RobertaForMaskedLM", "<mask>"),
    ] {
        let model = fixture(name);
        let work = tmp.path().join(name);
        let lm = [
            "--task",
            "mlm",
            "--device",
            "cpu",
            "--text",
            s(&text),
            "--block-size",
            "16",
            "--seed",
            "7",
            "--json",
        ];
        let run = |cmd: &str, model: &Path, out: &Path, extra: &[&str]| {
            ok(&bertology(
                &[
                    &[cmd, "--model", s(model), "--output-dir", s(out)][..],
                    &lm,
                    extra,
                ]
                .concat(),
            ))
        };
        let base = run("eval", &model, &work.join("eval"), &[]);
        let blocks = base["examples"].as_u64().unwrap();
        assert!(blocks >= 50, "{name}: {base}");
        let masked = base["metrics"]["tokens"].as_f64().unwrap();
        let share = masked / (16.0 * blocks as f64);
        assert!((0.08..0.22).contains(&share), "{name}: {share}");
        let imp = work.join("importance");
        let i = run("importance", &model, &imp, &[]);
        assert_eq!(i["metric"], "inverse_loss", "{name}: {i}");
        let prune = work.join("prune");
        let p = run(
            "prune",
            &model,
            &prune,
            &[
                "--target-heads",
                "0.5",
                "--min-heads-per-layer",
                "1",
                "--timing-runs",
                "1",
            ],
        );
        assert_eq!(p["heads_kept"], 6, "{name}");
        assert_eq!(p["metric"], "inverse_loss", "{name}");
        let d = p["max_abs_logit_diff_pruned_vs_masked"].as_f64().unwrap();
        assert!(d < 1e-4, "{name}: pruned vs masked {d}");
        let unmasked = base["metrics"]["inverse_loss"].as_f64().unwrap();
        assert!(
            (p["original_score"].as_f64().unwrap() - unmasked).abs() < 1e-5,
            "{name}: {p}"
        );
        let pruned = prune.join("pruned_model");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(pruned.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["architectures"][0], class);
        let removed: usize = config["pruned_heads"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_array().unwrap().len())
            .sum();
        assert_eq!(removed, 6, "{name}: {config}");
        // The tokenizer travels with the model, so the pruned one reads text and finds its mask.
        let vocab = ["vocab.txt", "tokenizer.json"]
            .iter()
            .map(|f| pruned.join(f))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{name}: no tokenizer saved"));
        assert!(
            std::fs::read_to_string(vocab).unwrap().contains(mask_token),
            "{name}"
        );
        // Same text, same seed, so the same masked tokens: the reloaded model scores as pruned.
        let e = run("eval", &pruned, &work.join("eval-pruned"), &[]);
        assert_eq!(e["metrics"]["tokens"], base["metrics"]["tokens"], "{name}");
        let (reloaded, pruned_score) = (
            e["metrics"]["inverse_loss"].as_f64().unwrap(),
            p["pruned_score"].as_f64().unwrap(),
        );
        assert!(
            (reloaded - pruned_score).abs() < 1e-5,
            "{name}: {reloaded} vs {pruned_score}"
        );
        let inspect = ok(&bertology(&["inspect", "--json", "--model", s(&pruned)]));
        assert_eq!(inspect["heads_total"], 6, "{name}");
        for dir in [&imp, &prune] {
            let out = bertology(&["report", s(dir)]);
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(dir.join("report.md").is_file(), "{name}");
        }
    }
}
