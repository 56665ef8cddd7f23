//! Llama, Mistral and Qwen2 (grouped-query attention) against transformers 4.57 on committed
//! tiny checkpoints (scripts/reference/make_llama_fixtures.py; the head mask is a forward
//! pre-hook on o_proj, scripts/reference/llama_head_mask.py): logits, loss, attentions, hidden
//! states and mask gradients with and without masks; rotary scalings; pruning by query heads
//! and by key/value groups against masking; errors of bad configs.
mod common;
use bertology::model::{ForwardOptions, HeadUnit, Inputs, LoadOptions, Model, Objective};
use bertology::pruning::prune;
use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Causal LMs and the classifier with the full set of cases.
const MODELS: [&str; 4] = ["llama", "mistral", "qwen2", "llama-cls"];

fn dir(name: &str) -> PathBuf {
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

fn parity(name: &str) -> HashMap<String, Tensor> {
    read_tensors(&fixture("families").join(format!("{name}_parity.safetensors")))
}

fn close(a: &Tensor, b: &Tensor, what: &str) {
    let d = max_abs_diff(a, b);
    assert!(d <= 1e-5, "{what}: differs from transformers by {d}");
}

const ALL_OUTPUTS: ForwardOptions = ForwardOptions {
    train: false,
    output_attentions: true,
    output_hidden_states: true,
    detached_attentions: false,
};

fn with_inputs<T>(f: &HashMap<String, Tensor>, run: impl FnOnce(&Inputs) -> T) -> T {
    let types = f["input_ids"].zeros_like();
    run(&Inputs {
        input_ids: &f["input_ids"],
        token_type_ids: &types,
        attention_mask: &f["attention_mask"],
    })
}

#[test]
fn outputs_attentions_hidden_states_and_loss_match_transformers() {
    for name in MODELS {
        let model = load(&dir(name));
        let f = parity(name);
        let want = if name.ends_with("-cls") {
            Objective::Classification
        } else {
            Objective::CausalLm
        };
        assert_eq!(model.net.objective(), want, "{name}");
        assert_eq!((model.net.num_heads(), model.net.num_kv_heads()), (6, 2));
        for (case, mask) in [
            ("none", None),
            ("2d", Some(&f["head_mask_2d"])),
            ("3d", Some(&f["head_mask_3d"])),
        ] {
            let what = format!("{name} {case}");
            let key = |k: &str| format!("{case}.{k}");
            let out = with_inputs(&f, |x| {
                tch::no_grad(|| model.net.forward(x, mask, ALL_OUTPUTS)).unwrap()
            });
            close(&out.logits, &f[&key("logits")], &format!("{what} logits"));
            let attentions = out.attentions.unwrap();
            assert_eq!(attentions.len(), 2, "{what}");
            for (i, a) in attentions.iter().enumerate() {
                close(
                    a,
                    &f[&key(&format!("attentions.{i}"))],
                    &format!("{what} attention {i}"),
                );
            }
            let hidden = out.hidden_states.unwrap();
            assert_eq!(hidden.len(), 3, "{what}");
            for (i, h) in hidden.iter().enumerate() {
                close(
                    h,
                    &f[&key(&format!("hidden_states.{i}"))],
                    &format!("{what} hidden state {i}"),
                );
            }
            // The fused path.
            let fast = with_inputs(&f, |x| {
                tch::no_grad(|| model.net.forward(x, mask, Default::default())).unwrap()
            });
            close(&fast.logits, &f[&key("logits")], &format!("{what} fast"));
            let loss = model.net.loss(&fast.logits, &f["labels"], false);
            close(
                &loss.reshape([1]),
                &f[&key("loss")],
                &format!("{what} loss"),
            );
        }
    }
}

#[test]
fn mask_gradients_match_transformers_on_every_attention_path() {
    let detached = ForwardOptions {
        output_attentions: true,
        detached_attentions: true,
        ..Default::default()
    };
    for name in MODELS {
        let model = load(&dir(name));
        let f = parity(name);
        for (case, sum) in [("2d", false), ("3d", true)] {
            for opts in [ALL_OUTPUTS, ForwardOptions::default(), detached] {
                // A mask of ones, as the fixture's gradients are taken at.
                let xi = f[&format!("head_mask_{case}")]
                    .ones_like()
                    .set_requires_grad(true);
                let out = with_inputs(&f, |x| model.net.forward(x, Some(&xi), opts).unwrap());
                let loss = model.net.loss(&out.logits, &f["labels"], sum);
                let grad = Tensor::run_backward(&[&loss], &[&xi], false, false).remove(0);
                close(
                    &grad,
                    &f[&format!("grad_{case}")],
                    &format!("{name} grad {case} ({opts:?})"),
                );
            }
        }
    }
}

#[test]
fn rotary_scalings_linear_dynamic_and_llama3_match_transformers() {
    // llama (llama3 scaling) is covered above; linear and dynamic have their own models, the
    // dynamic one with an input longer than max_position_embeddings so that its base grows.
    for name in ["llama-linear", "llama-dynamic"] {
        let model = load(&dir(name));
        let f = parity(name);
        let out = with_inputs(&f, |x| {
            tch::no_grad(|| model.net.forward(x, None, ALL_OUTPUTS)).unwrap()
        });
        close(&out.logits, &f["none.logits"], &format!("{name} logits"));
    }
}

/// The fixture's 2-D mask made binary (its 0.5 kept), as pruning needs.
fn binary(mask: &Tensor) -> Tensor {
    mask.ne(0.0).to_kind(Kind::Float)
}

#[test]
fn pruning_query_heads_and_whole_groups_equals_masking_and_reloads() {
    for name in ["llama", "mistral", "qwen2", "llama-cls"] {
        let model = load(&dir(name));
        let f = parity(name);
        // Heads: layer 0 loses heads 1 (group 0 keeps heads 0 and 2), layer 1 loses group 1
        // (heads 3-5) entirely. Groups: layer 0 additionally loses group 2 (heads 4, 5).
        let by_heads = binary(&f["head_mask_2d"]);
        let by_groups = by_heads.copy();
        let _ = by_groups.get(0).narrow(0, 4, 2).fill_(0.0);
        for (unit, mask) in [("heads", by_heads), ("groups", by_groups)] {
            let what = format!("{name} by {unit}");
            let masked = with_inputs(&f, |x| {
                tch::no_grad(|| model.net.forward(x, Some(&mask), Default::default())).unwrap()
            });
            let pruned = prune(&model, &mask).unwrap();
            let kv = pruned.net.kept(HeadUnit::KeyValue);
            assert_eq!(
                kv[1],
                vec![0],
                "{what}: layer 1 keeps only key/value head 0"
            );
            let out = with_inputs(&f, |x| {
                tch::no_grad(|| pruned.net.forward(x, None, ALL_OUTPUTS)).unwrap()
            });
            close(&out.logits, &masked.logits, &format!("{what} logits"));
            assert!(pruned.num_parameters() < model.num_parameters(), "{what}");
            // The pruned model accepts masks over the original heads, too.
            let same = with_inputs(&f, |x| {
                tch::no_grad(|| pruned.net.forward(x, Some(&mask), Default::default())).unwrap()
            });
            close(
                &same.logits,
                &masked.logits,
                &format!("{what} masked again"),
            );
            // Saved in Hugging Face layout with its modelling file; reloads at its shapes and
            // prunes again.
            let tmp = tempfile::tempdir().unwrap();
            pruned.save(tmp.path()).unwrap();
            std::fs::copy(
                dir(name).join("tokenizer.json"),
                tmp.path().join("tokenizer.json"),
            )
            .unwrap();
            assert!(tmp.path().join("modeling_bertology.py").is_file(), "{what}");
            let config: serde_json::Value =
                serde_json::from_slice(&std::fs::read(tmp.path().join("config.json")).unwrap())
                    .unwrap();
            assert!(
                config["auto_map"]["AutoModelForCausalLM"]
                    .as_str()
                    .unwrap()
                    .starts_with("modeling_bertology.Bertology"),
                "{what}: {config}"
            );
            let reloaded = load(tmp.path());
            assert_eq!(reloaded.net.kept_heads(), pruned.net.kept_heads(), "{what}");
            let again = with_inputs(&f, |x| {
                tch::no_grad(|| reloaded.net.forward(x, None, Default::default())).unwrap()
            });
            close(&again.logits, &masked.logits, &format!("{what} reloaded"));
            let more = mask.copy();
            let _ = more.get(0).get(0).fill_(0.0);
            let twice = prune(&reloaded, &more).unwrap();
            let want = with_inputs(&f, |x| {
                tch::no_grad(|| model.net.forward(x, Some(&more), Default::default())).unwrap()
            });
            let got = with_inputs(&f, |x| {
                tch::no_grad(|| twice.net.forward(x, None, Default::default())).unwrap()
            });
            close(&got.logits, &want.logits, &format!("{what} pruned twice"));
        }
    }
}

/// A copy of a fixture folder with config.json edited by `change`.
fn with_config(name: &str, change: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir(name)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
    }
    let path = tmp.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    change(&mut config);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    tmp
}

#[test]
fn bad_configs_and_masks_are_one_line_errors() {
    type Change = Box<dyn FnOnce(&mut serde_json::Value)>;
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "groups",
            Box::new(|c| c["num_key_value_heads"] = 4.into()),
            "num_attention_heads 6 is not a multiple of num_key_value_heads 4",
        ),
        (
            "rope",
            Box::new(|c| {
                c["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0})
            }),
            "rope_scaling type \"yarn\" is not supported",
        ),
        (
            "missing",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("hidden_size");
            }),
            "missing field hidden_size",
        ),
    ];
    for (what, change, expected) in cases {
        let tmp = with_config("llama", change);
        let out = bertology(&["inspect", "--model", tmp.path().to_str().unwrap(), "--json"]);
        let e = one_line_error(&out);
        assert!(e.contains(expected), "{what}: {e}");
        assert!(e.contains("config.json"), "{what}: {e}");
    }
    // A head mask of the wrong shape.
    let model = load(&dir("llama"));
    let f = parity("llama");
    let wrong = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
    let e = with_inputs(&f, |x| {
        model.net.forward(x, Some(&wrong), Default::default())
    })
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("expected [2, 6]"), "{e}");
}
