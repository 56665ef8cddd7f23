//! RoBERTa, DistilBERT and ELECTRA against transformers 4.57 on committed tiny checkpoints
//! (scripts/reference/make_family_fixtures.py), and every command on each through the binary.
use crate::common::*;
use bertology::data::batch::{encode_examples, make_batches, Padding};
use bertology::model::tokenizer::TextTokenizer;
use bertology::model::{ForwardOptions, Inputs, LoadOptions, Model};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

const FAMILIES: [&str; 3] = ["roberta", "distilbert", "electra"];

fn family_dir(name: &str) -> PathBuf {
    fixture("families").join(name)
}

fn load(dir: &Path) -> Model {
    Model::load(
        dir,
        &LoadOptions {
            device: Device::Cpu,
            seed: 0,
            task: None,
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()))
}

fn parity(family: &str) -> HashMap<String, Tensor> {
    read_tensors(&fixture("families").join(format!("{family}_parity.safetensors")))
}

fn inputs(f: &HashMap<String, Tensor>) -> Inputs<'_> {
    Inputs {
        input_ids: &f["input_ids"],
        token_type_ids: &f["token_type_ids"],
        attention_mask: &f["attention_mask"],
    }
}

const ALL_OUTPUTS: ForwardOptions = ForwardOptions {
    train: false,
    output_attentions: true,
    output_hidden_states: true,
    detached_attentions: false,
};

fn close(a: &Tensor, b: &Tensor, what: &str) {
    let d = max_abs_diff(a, b);
    assert!(d <= 1e-5, "{what}: differs from transformers by {d}");
}

#[test]
fn outputs_attentions_and_hidden_states_match_transformers() {
    for family in FAMILIES {
        let model = load(&family_dir(family));
        let f = parity(family);
        let x = inputs(&f);
        for (case, mask) in [
            ("none", None),
            ("2d", Some(&f["head_mask_2d"])),
            ("3d", Some(&f["head_mask_3d"])),
        ] {
            let out = tch::no_grad(|| model.net.forward(&x, mask, ALL_OUTPUTS)).unwrap();
            let what = format!("{family} {case}");
            close(
                &out.logits,
                &f[&format!("{case}.logits")],
                &format!("{what} logits"),
            );
            let attentions = out.attentions.unwrap();
            assert_eq!(attentions.len(), 3, "{what}");
            for (i, a) in attentions.iter().enumerate() {
                close(
                    a,
                    &f[&format!("{case}.attentions.{i}")],
                    &format!("{what} attention {i}"),
                );
            }
            let hidden = out.hidden_states.unwrap();
            assert_eq!(hidden.len(), 4, "{what}");
            for (i, h) in hidden.iter().enumerate() {
                close(
                    h,
                    &f[&format!("{case}.hidden_states.{i}")],
                    &format!("{what} hidden {i}"),
                );
            }
            // The fast path (fused attention, last layer for the first token only).
            let fast = tch::no_grad(|| model.net.forward(&x, mask, Default::default())).unwrap();
            close(
                &fast.logits,
                &f[&format!("{case}.logits")],
                &format!("{what} fast logits"),
            );
            let loss = model.net.loss(&fast.logits, &f["labels"], false);
            close(
                &loss.reshape([1]),
                &f[&format!("{case}.loss")],
                &format!("{what} loss"),
            );
        }
    }
}

#[test]
fn mask_gradients_match_transformers_on_both_attention_paths() {
    for family in FAMILIES {
        let model = load(&family_dir(family));
        let f = parity(family);
        let x = inputs(&f);
        // Explicit probabilities in the graph, the fused path, and the fused path with the
        // probabilities computed beside it (importance with entropy).
        let detached = ForwardOptions {
            output_attentions: true,
            detached_attentions: true,
            ..Default::default()
        };
        for case in ["2d", "3d"] {
            for opts in [ALL_OUTPUTS, ForwardOptions::default(), detached] {
                let xi = f[&format!("head_mask_{case}")]
                    .copy()
                    .set_requires_grad(true);
                let out = model.net.forward(&x, Some(&xi), opts).unwrap();
                let what = format!("{family} {case} ({opts:?})");
                if let Some(attentions) = &out.attentions {
                    assert_eq!(attentions.len(), 3, "{what}");
                    for (i, a) in attentions.iter().enumerate() {
                        assert_eq!(a.requires_grad(), !opts.detached_attentions, "{what}");
                        close(
                            a,
                            &f[&format!("{case}.attentions.{i}")],
                            &format!("{what} attention {i}"),
                        );
                    }
                }
                let loss = model.net.loss(&out.logits, &f["labels"], false);
                let grad = Tensor::run_backward(&[&loss], &[&xi], false, false).remove(0);
                close(
                    &grad,
                    &f[&format!("{case}.mask_grad")],
                    &format!("{what} mask gradient"),
                );
            }
        }
    }
}

#[test]
fn checkpoints_pruned_by_transformers_load_at_their_shapes_and_match() {
    for family in FAMILIES {
        let model = load(&family_dir(&format!("{family}-pruned")));
        assert_eq!(model.net.heads_per_layer(), vec![3, 2, 4], "{family}");
        let f = parity(family);
        let reference =
            read_tensors(&fixture("families").join(format!("{family}_pruned_logits.safetensors")));
        let out =
            tch::no_grad(|| model.net.forward(&inputs(&f), None, Default::default())).unwrap();
        close(
            &out.logits,
            &reference["logits"],
            &format!("{family} pruned logits"),
        );
    }
}

#[test]
fn pruning_equals_masking_and_reloads_for_every_family() {
    for family in FAMILIES {
        let model = load(&family_dir(family));
        let f = parity(family);
        // A pruned head, two, and a whole layer.
        let mask = Tensor::ones([3, 4], (Kind::Float, Device::Cpu));
        let _ = mask.get(0).get(2).fill_(0.0);
        let _ = mask.get(1).narrow(0, 0, 2).fill_(0.0);
        let _ = mask.get(2).fill_(0.0);
        let pruned = bertology::pruning::prune(&model, &mask).unwrap();
        assert_eq!(pruned.net.heads_per_layer(), vec![3, 2, 0], "{family}");
        let x = inputs(&f);
        let masked = tch::no_grad(|| model.net.forward(&x, Some(&mask), ALL_OUTPUTS)).unwrap();
        let physical = tch::no_grad(|| pruned.net.forward(&x, None, ALL_OUTPUTS)).unwrap();
        close(
            &physical.logits,
            &masked.logits,
            &format!("{family} pruned vs masked"),
        );
        let dir = tempfile::tempdir().unwrap();
        pruned.save(dir.path()).unwrap();
        let again = load(dir.path());
        assert_eq!(again.net.heads_per_layer(), vec![3, 2, 0], "{family}");
        let reloaded = tch::no_grad(|| again.net.forward(&x, None, Default::default())).unwrap();
        close(
            &reloaded.logits,
            &masked.logits,
            &format!("{family} reloaded"),
        );
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["pruned_heads"]["2"], serde_json::json!([0, 1, 2, 3]));
        assert_eq!(config["architectures"][0], again.net.hf_class());
        // Importance still works on a model with an empty layer.
        let mut tuned = again;
        tuned.vs.freeze();
        let examples = mrpc_dev(Some(8));
        let tok = TextTokenizer::from_dir(&family_dir(family), 32).unwrap();
        let encoded = encode_examples(&tok, &examples).unwrap();
        let labels: Vec<_> = examples
            .iter()
            .map(|e| e.label.map(|_| bertology::data::glue::Label::Class(0)))
            .collect();
        let batches = make_batches(
            &encoded,
            &labels,
            4,
            Padding::Longest,
            tok.pad_id(),
            Device::Cpu,
        );
        for estimator in [
            bertology::importance::Estimator::PerExample,
            bertology::importance::Estimator::Anchor,
        ] {
            let stats = bertology::importance::compute(
                tuned.net.as_ref(),
                &batches,
                None,
                bertology::importance::Settings {
                    estimator,
                    layer_norm: true,
                    global_norm: true,
                    entropy: true,
                },
                None,
            )
            .unwrap();
            assert_eq!(stats.importance.size(), vec![3, 4]);
        }
    }
}

/// 64-bit FNV-1a, as the fixture script digests token ids.
fn fnv1a(text: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn digests(tok: &TextTokenizer, with_types: bool) -> Vec<String> {
    let pairs: Vec<(String, Option<String>)> = mrpc_dev(None)
        .into_iter()
        .map(|e| (e.text_a, e.text_b))
        .collect();
    tok.encode_batch(&pairs)
        .unwrap()
        .iter()
        .map(|e| {
            let ids: Vec<String> = e.ids.iter().map(i64::to_string).collect();
            let mut text = ids.join(",");
            if with_types {
                let types: Vec<String> = e.type_ids.iter().map(i64::to_string).collect();
                text = format!("{text}|{}", types.join(","));
            }
            fnv1a(&text)
        })
        .collect()
}

#[test]
fn tokenisation_of_mrpc_dev_equals_transformers_fast_tokenizers() {
    for family in FAMILIES {
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture("families").join(format!("{family}_tokens.json")))
                .unwrap(),
        )
        .unwrap();
        let want: Vec<String> = expected["digests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        assert_eq!(want.len(), 408);
        let with_types = expected["token_type_ids"].as_bool().unwrap();
        let from_json = TextTokenizer::from_dir(&family_dir(family), 128).unwrap();
        let got = digests(&from_json, with_types);
        let first_bad = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(
            first_bad, None,
            "{family}: tokenizer.json differs at pair {first_bad:?}"
        );
        // Without tokenizer.json: the family's vocabulary files.
        let bare = tempfile::tempdir().unwrap();
        for f in [
            "config.json",
            "vocab.txt",
            "vocab.json",
            "merges.txt",
            "tokenizer_config.json",
        ] {
            let src = family_dir(family).join(f);
            if src.is_file() {
                std::fs::copy(&src, bare.path().join(f)).unwrap();
            }
        }
        let from_files = TextTokenizer::from_dir(bare.path(), 128).unwrap();
        let got = digests(&from_files, with_types);
        let first_bad = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(
            first_bad, None,
            "{family}: vocabulary files differ at pair {first_bad:?}"
        );
        assert_eq!(from_files.pad_id(), from_json.pad_id(), "{family}");
    }
}

/// A family's checkpoint without its classifier: a base model to fine-tune for MRPC.
fn base_of(into: &Path, family: &str) -> PathBuf {
    let src = family_dir(family);
    let dir = into.join(format!("{family}-base"));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap() != "model.safetensors" {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let all = Tensor::read_safetensors(src.join("model.safetensors")).unwrap();
    let base: Vec<_> = all
        .into_iter()
        .filter(|(k, _)| !k.starts_with("classifier.") && !k.starts_with("pre_classifier."))
        .collect();
    Tensor::write_safetensors(&base, dir.join("model.safetensors")).unwrap();
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let obj = config.as_object_mut().unwrap();
    obj.remove("id2label");
    obj.remove("label2id");
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    dir
}

#[test]
fn every_command_runs_on_every_family() {
    for family in FAMILIES {
        let tmp = tempfile::tempdir().unwrap();
        let base = base_of(tmp.path(), family);
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let tuned = tmp.path().join("tuned");
        let common = [
            "--task",
            "mrpc",
            "--device",
            "cpu",
            "--json",
            "--max-seq-length",
            "32",
        ];
        let mut args: Vec<String> = ["finetune"]
            .iter()
            .chain(&common)
            .map(|a| a.to_string())
            .collect();
        args.extend(
            [
                "--model",
                &s(&base),
                "--output-dir",
                &s(&tuned),
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
            ]
            .map(String::from),
        );
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let v = ok(&bertology(&argv));
        assert_eq!(v["epochs"].as_array().unwrap().len(), 2, "{family}");
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tuned.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(
            config["id2label"],
            serde_json::json!({"0": "0", "1": "1"}),
            "{family}"
        );
        let run = |cmd: &str, extra: &[&str]| {
            let mut a = vec![cmd];
            a.extend(common);
            a.extend(["--model", tuned.to_str().unwrap(), "--data-subset", "32"]);
            a.extend(extra);
            ok(&bertology(&a))
        };
        let e = run("eval", &["--output-dir", &s(&tmp.path().join("eval"))]);
        assert_eq!(
            e["metrics"], v["best"]["metrics"],
            "{family}: eval vs finetune"
        );
        assert!(tmp.path().join("eval/predictions.csv").is_file());
        let imp_dir = tmp.path().join("importance");
        let i = run("importance", &["--output-dir", &s(&imp_dir)]);
        assert!(i.is_object(), "{family}");
        for f in [
            "head_importance.npy",
            "attn_entropy.npy",
            "importance.csv",
            "importance.json",
        ] {
            assert!(imp_dir.join(f).is_file(), "{family}: {f} missing");
        }
        let prune_dir = tmp.path().join("prune");
        let p = run(
            "prune",
            &[
                "--target-heads",
                "0.5",
                "--min-heads-per-layer",
                "1",
                "--output-dir",
                &s(&prune_dir),
            ],
        );
        assert_eq!(p["heads_kept"], 6, "{family}");
        assert!(
            p["max_abs_logit_diff_pruned_vs_masked"].as_f64().unwrap() <= 1e-5,
            "{family}"
        );
        let inspect = ok(&bertology(&[
            "inspect",
            "--json",
            "--device",
            "cpu",
            "--model",
            prune_dir.join("pruned_model").to_str().unwrap(),
        ]));
        assert_eq!(
            inspect["heads_per_layer"], p["heads_kept_per_layer"],
            "{family}"
        );
        assert_eq!(inspect["model_type"], config["model_type"], "{family}");
        for dir in [&imp_dir, &prune_dir] {
            let out = bertology(&["report", dir.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{family}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(dir.join("report.md").is_file(), "{family}");
        }
    }
}

#[test]
fn unsupported_types_and_foreign_weights_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    // RoBERTa weights under a BERT config.
    let dir = tmp.path().join("mixed");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture("tiny-bert/config.json"), dir.join("config.json")).unwrap();
    std::fs::copy(
        family_dir("roberta").join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let e = one_line_error(&bertology(&["inspect", "--model", dir.to_str().unwrap()]));
    assert!(
        e.contains("roberta.*") && e.contains("model_type \"bert\""),
        "{e}"
    );
    // An unsupported model type lists the supported ones.
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"bert\"", "\"t5\"");
    std::fs::write(&path, text).unwrap();
    let e = one_line_error(&bertology(&["inspect", "--model", dir.to_str().unwrap()]));
    for t in [
        "t5",
        "bert",
        "roberta",
        "xlm-roberta",
        "camembert",
        "distilbert",
        "electra",
    ] {
        assert!(e.contains(t), "{e}");
    }
}

#[test]
fn xlm_roberta_and_camembert_read_as_roberta() {
    let f = parity("roberta");
    for (model_type, class) in [
        ("xlm-roberta", "XLMRobertaForSequenceClassification"),
        ("camembert", "CamembertForSequenceClassification"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(family_dir("roberta")).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
        }
        let path = tmp.path().join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config["model_type"] = model_type.into();
        std::fs::write(&path, config.to_string()).unwrap();
        let model = load(tmp.path());
        assert_eq!(model.net.hf_class(), class);
        let out =
            tch::no_grad(|| model.net.forward(&inputs(&f), None, Default::default())).unwrap();
        close(&out.logits, &f["none.logits"], model_type);
    }
}
