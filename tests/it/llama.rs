//! Llama, Mistral and Qwen2 (grouped-query attention) against transformers 4.57 on committed
//! tiny checkpoints (scripts/reference/make_llama_fixtures.py; the head mask is a forward
//! pre-hook on o_proj, scripts/reference/llama_head_mask.py): logits, loss, attentions, hidden
//! states and mask gradients with and without masks; rotary scalings; pruning by query heads
//! and by key/value groups against masking; errors of bad configs.
use crate::common::*;
use bertology::model::{ForwardOptions, HeadUnit, Inputs, LoadOptions, Model, Objective};
use bertology::pruning::prune;
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

#[test]
fn pruned_to_one_shape_in_every_layer_saves_a_plain_config() {
    // Six query heads over two key/value heads (groups 0-2, 3-5). Each mask leaves every layer
    // the same shape: two groups of two query heads, or one group of three.
    let shapes: [(&[f32], i64, i64); 2] = [
        (&[1., 1., 0., 0., 1., 1.], 4, 2),
        (&[0., 0., 0., 1., 1., 1.], 3, 1),
    ];
    for name in MODELS {
        // In double precision: the pruned model's matmuls of other shapes round differently
        // (up to ~1e-5 in float32), and what is compared here is the shape, not the rounding.
        let mut model = load(&dir(name));
        model.set_kind(Kind::Double);
        let f = parity(name);
        for (row, heads, kv_heads) in shapes {
            let what = format!("{name} keeping {heads} heads over {kv_heads}");
            let mask = Tensor::from_slice(row)
                .view([1, 6])
                .repeat([2, 1])
                .to_kind(Kind::Double);
            let masked = with_inputs(&f, |x| {
                tch::no_grad(|| model.net.forward(x, Some(&mask), Default::default())).unwrap()
            });
            let tmp = tempfile::tempdir().unwrap();
            prune(&model, &mask).unwrap().save(tmp.path()).unwrap();
            // transformers' own class reads this config: no modelling file, no pruned_heads.
            assert!(!tmp.path().join("modeling_bertology.py").exists(), "{what}");
            let config: serde_json::Value =
                serde_json::from_slice(&std::fs::read(tmp.path().join("config.json")).unwrap())
                    .unwrap();
            assert!(config.get("auto_map").is_none(), "{what}: {config}");
            assert!(config.get("pruned_heads").is_none(), "{what}: {config}");
            assert_eq!(config["num_attention_heads"], heads, "{what}");
            assert_eq!(config["num_key_value_heads"], kv_heads, "{what}");
            let field = |k: &str| model.config.get_f64(k).map(|v| v as i64);
            let head_dim = field("head_dim").unwrap_or_else(|| {
                field("hidden_size").unwrap() / field("num_attention_heads").unwrap()
            });
            assert_eq!(config["head_dim"], head_dim, "{what}");
            let mut reloaded = load(tmp.path());
            reloaded.set_kind(Kind::Double);
            assert_eq!(reloaded.net.num_heads(), heads, "{what}");
            let out = with_inputs(&f, |x| {
                tch::no_grad(|| reloaded.net.forward(x, None, Default::default())).unwrap()
            });
            close(&out.logits, &masked.logits, &format!("{what} reloaded"));
        }
        // Layers of different shapes still need the modelling file.
        let uneven =
            Tensor::from_slice(&[1f32, 1., 0., 0., 1., 1., 0., 0., 0., 1., 1., 1.]).view([2, 6]);
        let tmp = tempfile::tempdir().unwrap();
        prune(&model, &uneven).unwrap().save(tmp.path()).unwrap();
        assert!(
            tmp.path().join("modeling_bertology.py").is_file(),
            "{name} uneven"
        );
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

/// A [layers, heads] mask with every third head (from `offset`) masked, as a .npy file.
fn mask_file(dir: &Path, layers: i64, heads: i64, offset: i64) -> (PathBuf, Tensor) {
    let mask = Tensor::ones([layers, heads], (Kind::Float, Device::Cpu));
    for l in 0..layers {
        for h in (0..heads).filter(|h| (h + l + offset) % 3 == 0) {
            let _ = mask.get(l).get(h).fill_(0.0);
        }
    }
    let path = dir.join("mask.npy");
    std::fs::write(&path, bertology::npy::to_bytes(&mask).unwrap()).unwrap();
    (path, mask)
}

/// The rows of predictions.csv after the index column, as numbers.
fn prediction_rows(path: &Path, columns: std::ops::Range<usize>) -> Vec<Vec<f64>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            columns
                .clone()
                .flat_map(|c| {
                    rec[c]
                        .split(' ')
                        .map(|v| v.parse::<f64>().unwrap())
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .collect()
}

/// `eval --head-mask` scores the model with the heads masked, without pruning, for every
/// family: language models on token-id lines (each line's mean token loss), classifiers on a
/// tiny MNLI dev (each pair's logits), against the network's forward with the same mask (which the
/// parity tests hold to transformers' within 1e-5).
#[test]
fn eval_with_a_head_mask_scores_the_masked_model_for_every_family() {
    let tmp = tempfile::tempdir().unwrap();
    let lms = [
        "tiny-gpt2",
        "tiny-gpt",
        "families/llama",
        "families/mistral",
        "families/qwen2",
    ];
    for name in lms {
        let model = load(&fixture(name));
        let (layers, heads) = (model.net.num_layers(), model.net.num_heads());
        let (mask_path, mask) = mask_file(tmp.path(), layers, heads, 0);
        // Lines of different lengths (padding), ids inside every tiny vocabulary.
        let lines: Vec<Vec<i64>> = (0..4)
            .map(|i| {
                (0..(10 - 2 * i))
                    .map(|j| (7 * j + 3 * i + 1) % 60)
                    .collect()
            })
            .collect();
        let ids = tmp.path().join("ids.txt");
        let text: Vec<String> = lines
            .iter()
            .map(|l| l.iter().map(i64::to_string).collect::<Vec<_>>().join(" "))
            .collect();
        std::fs::write(&ids, text.join("\n")).unwrap();
        let out_dir = tmp.path().join(format!("eval-{}", name.replace('/', "-")));
        let path = |p: &Path| p.to_str().unwrap().to_string();
        let (m, i, o, mp) = (
            path(&fixture(name)),
            path(&ids),
            path(&out_dir),
            path(&mask_path),
        );
        let run = ok(&bertology(&[
            "eval",
            "--task",
            "lm",
            "--model",
            &m,
            "--token-ids",
            &i,
            "--head-mask",
            &mp,
            "--output-dir",
            &o,
            "--json",
            "--quiet",
        ]));
        assert_eq!(
            run["heads_kept"],
            (mask.sum(Kind::Float).double_value(&[]) as i64)
        );
        let got = prediction_rows(&out_dir.join("predictions.csv"), 2..3);
        for (row, line) in lines.iter().enumerate() {
            let x = Tensor::from_slice(line).view([1, -1]);
            let types = x.zeros_like();
            let att = x.ones_like();
            let inputs = Inputs {
                input_ids: &x,
                token_type_ids: &types,
                attention_mask: &att,
            };
            let want = tch::no_grad(|| {
                let out = model
                    .net
                    .forward(&inputs, Some(&mask), Default::default())
                    .unwrap();
                model.net.loss(&out.logits, &x, false).double_value(&[])
            });
            let unmasked = tch::no_grad(|| {
                let out = model
                    .net
                    .forward(&inputs, None, Default::default())
                    .unwrap();
                model.net.loss(&out.logits, &x, false).double_value(&[])
            });
            assert!(
                (got[row][0] - want).abs() < 1e-5,
                "{name} line {row}: {} vs {want}",
                got[row][0]
            );
            assert!(
                (want - unmasked).abs() > 1e-4,
                "{name} line {row}: the mask changes nothing"
            );
        }
    }
    let classifiers = [
        "tiny-bert",
        "families/roberta",
        "families/distilbert",
        "families/electra",
        "families/llama-cls",
    ];
    let mnli_dir = fixture("data/glue_tsv/MNLI");
    let mnli = mnli_dir.to_str().unwrap().to_string();
    for name in classifiers {
        let model = load(&fixture(name));
        let (layers, heads) = (model.net.num_layers(), model.net.num_heads());
        let (mask_path, mask) = mask_file(tmp.path(), layers, heads, 1);
        let out_dir = tmp.path().join(format!("eval-{}", name.replace('/', "-")));
        let path = |p: &Path| p.to_str().unwrap().to_string();
        let (m, o, mp) = (path(&fixture(name)), path(&out_dir), path(&mask_path));
        ok(&bertology(&[
            "eval",
            "--task",
            "mnli",
            "--data-dir",
            &mnli,
            "--model",
            &m,
            "--data-subset",
            "16",
            "--head-mask",
            &mp,
            "--max-seq-length",
            "32",
            "--output-dir",
            &o,
            "--json",
            "--quiet",
        ]));
        let got = prediction_rows(&out_dir.join("predictions.csv"), 3..4);
        let tok = bertology::model::tokenizer::TextTokenizer::from_dir(&model.dir, 32).unwrap();
        let data = bertology::data::dataset::Dataset::load(
            bertology::data::glue::Task::Mnli,
            &mnli_dir,
            bertology::data::glue::Split::Dev,
            Some(16),
            &tok,
        )
        .unwrap();
        let batches = data.batches(16, bertology::data::batch::Padding::Longest, Device::Cpu);
        let want =
            bertology::eval::predict(model.net.as_ref(), &batches, Some(&mask), None).unwrap();
        let want: Vec<Vec<f64>> = Vec::try_from(want.to_kind(Kind::Double)).unwrap();
        for (row, w) in want.iter().enumerate() {
            for (a, b) in got[row].iter().zip(w) {
                assert!(
                    (a - b).abs() < 1e-5,
                    "{name} pair {row}: {:?} vs {w:?}",
                    got[row]
                );
            }
        }
    }
}

/// Every command on a grouped-query model through the binary: the causal LM on WikiText-2
/// text (finetune, eval, importance with per-group importance, prune by groups, attention,
/// hidden-states, inspect, report) and the classifier on tiny MNLI (finetune, prune by heads).
#[test]
fn every_command_runs_on_the_llama_family() {
    let tmp = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    // The first 4,000 characters of WikiText-2 valid: a few dozen blocks.
    let valid =
        std::fs::read_to_string(root().join("../shared/data/wikitext-2/valid.txt")).unwrap();
    let text = tmp.path().join("valid-head.txt");
    std::fs::write(&text, &valid[..valid.char_indices().nth(4000).unwrap().0]).unwrap();
    let model = s(&dir("qwen2"));
    let lm = |cmd: &str, model: &str, extra: &[&str]| {
        let mut a = vec![
            cmd.to_string(),
            "--task".into(),
            "lm".into(),
            "--model".into(),
            model.to_string(),
            "--text".into(),
            s(&text),
            "--block-size".into(),
            "24".into(),
            "--json".into(),
            "--quiet".into(),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        let argv: Vec<&str> = a.iter().map(String::as_str).collect();
        ok(&bertology(&argv))
    };
    let imp = tmp.path().join("importance");
    let i = lm(
        "importance",
        &model,
        &["--data-subset", "24", "--output-dir", &s(&imp)],
    );
    assert_eq!(i["kv_heads"], 2);
    let groups = bertology::npy::read(&imp.join("group_importance.npy")).unwrap();
    let heads = bertology::npy::read(&imp.join("head_importance.npy")).unwrap();
    assert_eq!(groups.size(), [2, 2]);
    close(
        &groups,
        &heads
            .view([2, 2, 3])
            .sum_dim_intlist(-1, false, Kind::Float),
        "group importance is the sum over the group's query heads",
    );
    let prune_dir = tmp.path().join("prune");
    let p = lm(
        "prune",
        &model,
        &[
            "--data-subset",
            "24",
            "--prune-unit",
            "group",
            "--target-heads",
            "0.5",
            "--timing-runs",
            "1",
            "--output-dir",
            &s(&prune_dir),
        ],
    );
    assert_eq!(p["heads_kept"], 6);
    assert_eq!(p["settings"]["prune_unit"], "group");
    // Whole groups go: each layer keeps 0, 3 or 6 query heads.
    for k in p["heads_kept_per_layer"].as_array().unwrap() {
        assert!(
            k.as_i64().unwrap() % 3 == 0,
            "{}",
            p["heads_kept_per_layer"]
        );
    }
    assert!(p["max_abs_logit_diff_pruned_vs_masked"].as_f64().unwrap() <= 1e-5);
    let pruned = s(&prune_dir.join("pruned_model"));
    let e = lm(
        "eval",
        &pruned,
        &[
            "--data-subset",
            "24",
            "--output-dir",
            &s(&tmp.path().join("eval")),
        ],
    );
    let (es, ps) = (
        e["score"].as_f64().unwrap(),
        p["pruned_score"].as_f64().unwrap(),
    );
    assert!((es - ps).abs() < 1e-6, "eval {es} vs prune {ps}: {e}");
    let tuned = tmp.path().join("tuned");
    let f = lm(
        "finetune",
        &pruned,
        &[
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--output-dir",
            &s(&tuned),
        ],
    );
    assert_eq!(f["epochs"].as_array().unwrap().len(), 1);
    let inspect = ok(&bertology(&["inspect", "--json", "--model", &s(&tuned)]));
    assert_eq!(inspect["heads_per_layer"], p["heads_kept_per_layer"]);
    for (cmd, out) in [("attention", "attn"), ("hidden-states", "hidden")] {
        let out = s(&tmp.path().join(out));
        ok(&bertology(&[
            cmd,
            "--model",
            &pruned,
            "--text",
            "The cat sat on the mat.",
            "--output-dir",
            &out,
            "--json",
            "--quiet",
        ]));
    }
    for dir in [&imp, &prune_dir] {
        let out = bertology(&["report", dir.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The classifier on MRPC: a base without its score head gets a fresh 2-way one from
    // finetune, then is pruned by query heads.
    let base = with_config("llama-cls", |c| {
        let c = c.as_object_mut().unwrap();
        for k in ["id2label", "label2id", "num_labels", "problem_type"] {
            c.remove(k);
        }
    });
    let weights = base.path().join("model.safetensors");
    let kept: Vec<(String, Tensor)> = Tensor::read_safetensors(&weights)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("score."))
        .collect();
    Tensor::write_safetensors(&kept, &weights).unwrap();
    let cls = |cmd: &str, model: &str, extra: &[&str]| {
        let mut a = vec![
            cmd,
            "--task",
            "mrpc",
            "--model",
            model,
            "--max-seq-length",
            "32",
            "--json",
            "--quiet",
        ];
        a.extend(extra);
        ok(&bertology(&a))
    };
    let cls_tuned = s(&tmp.path().join("cls-tuned"));
    cls(
        "finetune",
        &s(base.path()),
        &[
            "--train-subset",
            "16",
            "--eval-subset",
            "16",
            "--epochs",
            "1",
            "--output-dir",
            &cls_tuned,
        ],
    );
    let cp = cls(
        "prune",
        &cls_tuned,
        &[
            "--data-subset",
            "16",
            "--target-heads",
            "0.5",
            "--timing-runs",
            "1",
            "--output-dir",
            &s(&tmp.path().join("cls-prune")),
        ],
    );
    assert_eq!(cp["heads_kept"], 6);
    assert!(cp["max_abs_logit_diff_pruned_vs_masked"].as_f64().unwrap() <= 1e-5);
}

/// FNV-1a over little-endian u32 ids, as make_smollm2_reference.py hashes them.
fn fnv1a(ids: &[i64]) -> String {
    let mut h: u64 = 0xCBF29CE484222325;
    for &i in ids {
        for b in (i as u32).to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001B3);
        }
    }
    format!("{h:016x}")
}

fn numbers(v: &serde_json::Value) -> Vec<f64> {
    match v {
        serde_json::Value::Array(a) => a.iter().flat_map(numbers).collect(),
        v => vec![v.as_f64().unwrap()],
    }
}

/// The real SmolLM2-135M-Instruct (scripts/setup.sh installs its Q4_1 GGUF) on WikiText-2 valid
/// against transformers reading the same file (scripts/reference/make_smollm2_reference.py):
/// the token ids, logits (1e-5... of their scale), the loss (1e-5 relative), head importance
/// (1e-3) through `importance`, the loss under a head mask through `eval --head-mask`; and
/// `attention` and `hidden-states` run on it.
#[test]
fn smollm2_on_wikitext2_matches_transformers() {
    let gguf = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        gguf.is_file(),
        "{} is missing: run scripts/setup.sh",
        gguf.display()
    );
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("smollm2_wikitext2.json")).unwrap()).unwrap();
    let blocks = reference["blocks"].as_i64().unwrap();
    let text = root().join("data/wikitext-2/valid.txt");
    let tmp = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let folder = bertology::model_source::resolve_model(&s(&gguf), true).unwrap();
    let model = Model::load(
        &folder,
        &LoadOptions {
            device: Device::Cpu,
            seed: 0,
            task: Some(bertology::data::glue::Task::Lm.into()),
        },
    )
    .unwrap();
    assert_eq!(
        (
            model.net.num_layers(),
            model.net.num_heads(),
            model.net.num_kv_heads()
        ),
        (30, 9, 3)
    );
    // The blocks bertology's --text makes: the whole file tokenised, cut into 128s.
    let tok =
        bertology::model::tokenizer::TextTokenizer::from_dir(&folder, usize::MAX / 2).unwrap();
    let all = bertology::data::lm::text_blocks(
        &tok,
        std::slice::from_ref(&text),
        128,
        None,
        49152,
        "--text",
    )
    .unwrap();
    let ids: Vec<i64> = all[..blocks as usize].concat();
    assert_eq!(
        fnv1a(&ids),
        reference["ids_fnv1a"].as_str().unwrap(),
        "token ids differ"
    );
    // Logits of block 0 at a few positions: the first 64 entries, logsumexp and argmax.
    let x = Tensor::from_slice(&all[0]).view([1, 128]);
    let (types, att) = (x.zeros_like(), x.ones_like());
    let inputs = Inputs {
        input_ids: &x,
        token_type_ids: &types,
        attention_mask: &att,
    };
    let logits = tch::no_grad(|| model.net.forward(&inputs, None, Default::default()))
        .unwrap()
        .logits
        .get(0);
    let want = &reference["logits"];
    // The same block in double precision, as transformers computed it: the exact value both
    // float32 implementations round. In float64 the two agree to 1e-9; in float32 bertology
    // may be no further from the exact logits than transformers' own float32 is.
    let mut wide = Model::load(
        &folder,
        &LoadOptions {
            device: Device::Cpu,
            seed: 0,
            task: None,
        },
    )
    .unwrap();
    wide.set_kind(Kind::Double);
    let logits64 = tch::no_grad(|| wide.net.forward(&inputs, None, Default::default()))
        .unwrap()
        .logits
        .get(0);
    drop(wide);
    let their_error = want["float32_error"].as_f64().unwrap();
    for (i, p) in numbers(&want["positions"]).iter().enumerate() {
        let row = logits.get(*p as i64);
        let first = Tensor::from_slice(&numbers(&want["first_64"][i])).to_kind(Kind::Float);
        let d = max_abs_diff(&row.narrow(0, 0, 64), &first);
        let exact = Tensor::from_slice(&numbers(&want["float64_first_64"][i]));
        let d64 = max_abs_diff(&logits64.get(*p as i64).narrow(0, 0, 64), &exact);
        let our_error = max_abs_diff(&row.narrow(0, 0, 64).to_kind(Kind::Double), &exact);
        eprintln!(
            "SmolLM2 logits at position {p}: max |diff| {d:.2e} (float32), {d64:.2e} (float64); \
             float32 error: ours {our_error:.2e}, transformers' {their_error:.2e}"
        );
        assert!(d <= 1e-4, "position {p}: logits differ by {d}");
        assert!(d64 <= 1e-9, "position {p}: float64 logits differ by {d64}");
        assert!(
            our_error <= their_error,
            "position {p}: float32 error {our_error} above transformers' {their_error}"
        );
        let lse = row.logsumexp([0], false).double_value(&[]);
        let want_lse = want["logsumexp"][i].as_f64().unwrap();
        assert!(
            (lse - want_lse).abs() <= 1e-4,
            "position {p}: logsumexp {lse} vs {want_lse}"
        );
        assert_eq!(
            row.argmax(0, false).int64_value(&[]),
            want["argmax"][i].as_i64().unwrap()
        );
    }
    let common = [
        "--task".to_string(),
        "lm".into(),
        "--model".into(),
        s(&gguf),
        "--text".into(),
        s(&text),
        "--block-size".into(),
        "128".into(),
        "--data-subset".into(),
        blocks.to_string(),
        "--batch-size".into(),
        "4".into(),
        "--json".into(),
        "--quiet".into(),
    ];
    let run = |cmd: &str, extra: &[&str]| {
        let mut a: Vec<&str> = vec![cmd];
        a.extend(common.iter().map(String::as_str));
        a.extend(extra);
        ok(&bertology(&a))
    };
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
    let e = run("eval", &["--output-dir", &s(&tmp.path().join("eval"))]);
    let loss = e["metrics"]["loss"].as_f64().unwrap();
    let want_loss = reference["loss"].as_f64().unwrap();
    assert!(
        rel(loss, want_loss) <= 1e-5,
        "loss {loss} vs transformers {want_loss}"
    );
    // The ablation every head study runs: eval with a head mask.
    let (mask_path, _) = {
        let mask = Tensor::ones([30, 9], (Kind::Float, Device::Cpu));
        for l in 0..30 {
            for h in (0..9).filter(|h| (h + l) % 4 == 0) {
                let _ = mask.get(l).get(h).fill_(0.0);
            }
        }
        let p = tmp.path().join("ablation.npy");
        std::fs::write(&p, bertology::npy::to_bytes(&mask).unwrap()).unwrap();
        (p, mask)
    };
    let masked = run(
        "eval",
        &[
            "--head-mask",
            &s(&mask_path),
            "--output-dir",
            &s(&tmp.path().join("masked")),
        ],
    );
    let masked_loss = masked["metrics"]["loss"].as_f64().unwrap();
    let want_masked = reference["ablation_loss"].as_f64().unwrap();
    assert!(
        rel(masked_loss, want_masked) <= 1e-5,
        "masked loss {masked_loss} vs transformers {want_masked}"
    );
    let imp_dir = tmp.path().join("importance");
    run(
        "importance",
        &["--no-entropy", "--output-dir", &s(&imp_dir)],
    );
    let importance = bertology::npy::read(&imp_dir.join("head_importance.npy")).unwrap();
    let want_importance = Tensor::from_slice(&numbers(&reference["importance"]))
        .view([30, 9])
        .to_kind(Kind::Float);
    let d = max_abs_diff(&importance, &want_importance);
    eprintln!(
        "SmolLM2: loss {loss} (transformers {want_loss}), masked {masked_loss} ({want_masked}), importance max |diff| {d:.2e}"
    );
    assert!(d <= 1e-3, "importance differs from transformers' by {d}");
    assert!(imp_dir.join("group_importance.npy").is_file());
    // attention and hidden-states run on it.
    for (cmd, out) in [("attention", "attn"), ("hidden-states", "hidden")] {
        ok(&bertology(&[
            cmd,
            "--model",
            &s(&gguf),
            "--text",
            "The capital of France is Paris.",
            "--output-dir",
            &s(&tmp.path().join(out)),
            "--json",
            "--quiet",
        ]));
    }
}

/// SmolLM2 pruned by query heads, and by whole key/value groups as many in every layer
/// (`--uniform-heads`), in float64: the pruned model equals the masked original beyond float32's
/// rounding (in float32 a 30-layer model's logits differ by ~4e-4 between two matmul shapes of
/// the same sums, in transformers as here). The uniform one is a plain config of 6 heads over 2
/// key/value heads that needs no modelling file.
#[test]
fn smollm2_pruned_equals_masked_in_float64() {
    let gguf = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        gguf.is_file(),
        "{} is missing: run scripts/setup.sh",
        gguf.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let text = s(&root().join("data/wikitext-2/valid.txt"));
    for (unit, uniform) in [("head", false), ("group", true)] {
        let out = tmp.path().join(format!("prune-{unit}"));
        let mut args = vec![
            "prune",
            "--task",
            "lm",
            "--model",
            gguf.to_str().unwrap(),
            "--text",
            &text,
            "--block-size",
            "64",
            "--data-subset",
            "2",
            "--dtype",
            "float64",
            "--prune-unit",
            unit,
            "--target-heads",
            "0.67",
            "--masking-amount",
            "0.34",
            "--timing-runs",
            "1",
            "--json",
            "--quiet",
        ];
        if uniform {
            args.push("--uniform-heads");
        }
        let o = s(&out);
        args.extend(["--output-dir", &o]);
        let p = ok(&bertology(&args));
        let d = p["max_abs_logit_diff_pruned_vs_masked"].as_f64().unwrap();
        eprintln!(
            "SmolLM2 pruned by {unit} (float64): {} heads kept, max |diff| {d:.2e}",
            p["heads_kept"]
        );
        assert!(d <= 1e-9, "{unit}: pruned differs from masked by {d}");
        assert!(p["parameters_after"].as_i64() < p["parameters_before"].as_i64());
        let model = out.join("pruned_model");
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(model.join("config.json")).unwrap()).unwrap();
        // The logits themselves: the pruned model against the original under the run's mask.
        let folder = bertology::model_source::resolve_model(&s(&gguf), true).unwrap();
        let mut original = load(&folder);
        original.set_kind(Kind::Double);
        let mut pruned = load(&out.join("pruned_model"));
        pruned.set_kind(Kind::Double);
        let mask = bertology::npy::read(&out.join("head_mask.npy")).unwrap();
        let x = Tensor::arange_start(1000, 1032, (Kind::Int64, Device::Cpu)).view([1, 32]);
        let (types, att) = (x.zeros_like(), x.ones_like());
        let inputs = Inputs {
            input_ids: &x,
            token_type_ids: &types,
            attention_mask: &att,
        };
        let want = tch::no_grad(|| {
            original
                .net
                .forward(&inputs, Some(&mask), Default::default())
        })
        .unwrap()
        .logits;
        let got = tch::no_grad(|| pruned.net.forward(&inputs, None, Default::default()))
            .unwrap()
            .logits;
        let d = max_abs_diff(&got, &want);
        eprintln!("SmolLM2 pruned by {unit} (float64): logits max |diff| {d:.2e}");
        assert!(d <= 1e-9, "{unit}: pruned logits differ from masked by {d}");
        if uniform {
            assert_eq!(p["heads_kept_per_layer"], serde_json::json!(vec![6; 30]));
            assert!(!model.join("modeling_bertology.py").exists());
            assert_eq!(
                (
                    config["num_attention_heads"].as_i64(),
                    config["num_key_value_heads"].as_i64()
                ),
                (Some(6), Some(2))
            );
            assert_eq!(config["head_dim"], 64);
        } else {
            assert!(model.join("modeling_bertology.py").is_file());
        }
    }
}

/// `--dtype bfloat16` runs every family and stays close to float32: language models' loss
/// within 1 % (on WikiText-2 blocks), classifiers' logits within 0.1 (tiny MNLI), and head
/// importance of a grouped-query model within 0.1 of float32's (normalised to [0, 1]).
#[test]
fn bfloat16_runs_every_family_close_to_float32() {
    let tmp = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let text = s(&root().join("data/wikitext-2/valid.txt"));
    let mnli = s(&fixture("data/glue_tsv/MNLI"));
    let run = |args: &[&str], dtype: &str, out: &str| {
        let out = s(&tmp.path().join(out));
        let mut a = args.to_vec();
        a.extend(["--dtype", dtype, "--output-dir", &out, "--json", "--quiet"]);
        (ok(&bertology(&a)), PathBuf::from(out))
    };
    for name in [
        "tiny-gpt2",
        "tiny-gpt",
        "families/llama",
        "families/mistral",
        "families/qwen2",
    ] {
        let m = s(&fixture(name));
        let args = [
            "eval",
            "--task",
            "lm",
            "--model",
            &m,
            "--text",
            &text,
            "--block-size",
            "12",
            "--data-subset",
            "64",
        ];
        let (full, _) = run(&args, "float32", "f32");
        let (half, _) = run(&args, "bfloat16", "bf16");
        let (a, b) = (
            full["metrics"]["loss"].as_f64().unwrap(),
            half["metrics"]["loss"].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() / a <= 0.01,
            "{name}: loss {a} (float32) vs {b} (bfloat16)"
        );
    }
    for name in [
        "tiny-bert",
        "families/roberta",
        "families/distilbert",
        "families/electra",
        "families/llama-cls",
    ] {
        let m = s(&fixture(name));
        let args = [
            "eval",
            "--task",
            "mnli",
            "--data-dir",
            &mnli,
            "--model",
            &m,
            "--max-seq-length",
            "32",
        ];
        let (_, full) = run(&args, "float32", "f32");
        let (_, half) = run(&args, "bfloat16", "bf16");
        let a = prediction_rows(&full.join("predictions.csv"), 3..4);
        let b = prediction_rows(&half.join("predictions.csv"), 3..4);
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!(
                (x - y).abs() <= 0.1,
                "{name}: logit {x} (float32) vs {y} (bfloat16)"
            );
        }
    }
    let m = s(&dir("qwen2"));
    let args = [
        "importance",
        "--task",
        "lm",
        "--model",
        &m,
        "--text",
        &text,
        "--block-size",
        "12",
        "--data-subset",
        "64",
    ];
    let (_, full) = run(&args, "float32", "imp32");
    let (_, half) = run(&args, "bfloat16", "imp16");
    let read = |d: &Path| bertology::npy::read(&d.join("head_importance.npy")).unwrap();
    let d = max_abs_diff(&read(&full), &read(&half));
    assert!(
        d <= 0.1,
        "importance in bfloat16 differs from float32's by {d}"
    );
}

/// `ablate`: each head masked alone, and each layer reduced to one head, scored on the same
/// data; every entry equals `eval --head-mask` with that mask, the counts add up, and the
/// picture is drawn with the key/value groups.
#[test]
fn ablate_scores_every_single_head_mask_like_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let text = s(&root().join("data/wikitext-2/valid.txt"));
    let m = s(&dir("qwen2"));
    let data = [
        "--task",
        "lm",
        "--model",
        &m,
        "--text",
        &text,
        "--block-size",
        "24",
        "--data-subset",
        "16",
    ];
    let out = tmp.path().join("ablate");
    let mut args = vec!["ablate"];
    args.extend(data);
    args.extend([
        "--single-head",
        "--output-dir",
        out.to_str().unwrap(),
        "--json",
        "--quiet",
    ]);
    let a = ok(&bertology(&args));
    let drop = bertology::npy::read(&out.join("ablation.npy")).unwrap();
    let alone = bertology::npy::read(&out.join("single_head.npy")).unwrap();
    assert_eq!(drop.size(), [2, 6]);
    let base = a["score"].as_f64().unwrap();
    let tolerance = a["tolerance"].as_f64().unwrap() * base;
    let drops: Vec<f64> = Vec::try_from(drop.flatten(0, -1).to_kind(Kind::Double)).unwrap();
    let hurt = drops.iter().filter(|&&d| d > tolerance).count();
    let helped = drops.iter().filter(|&&d| d < -tolerance).count();
    assert_eq!(a["heads_that_hurt_when_masked"], hurt);
    assert_eq!(a["heads_that_help_when_masked"], helped);
    assert!(out.join("ablation.png").is_file());
    // Two entries against eval --head-mask: layer 1 without head 4; layer 0 with head 2 alone.
    let eval_with = |mask: &Tensor, name: &str| {
        let p = tmp.path().join(format!("{name}.npy"));
        std::fs::write(&p, bertology::npy::to_bytes(mask).unwrap()).unwrap();
        let mut args = vec!["eval"];
        args.extend(data);
        let (p, o) = (s(&p), s(&tmp.path().join(name)));
        args.extend(["--head-mask", &p, "--output-dir", &o, "--json", "--quiet"]);
        ok(&bertology(&args))["score"].as_f64().unwrap()
    };
    let without = Tensor::ones([2, 6], (Kind::Float, Device::Cpu));
    let _ = without.get(1).get(4).fill_(0.0);
    let want = base - eval_with(&without, "without");
    assert!(
        (drops[6 + 4] - want).abs() < 1e-6,
        "{} vs {want}",
        drops[10]
    );
    let only = Tensor::ones([2, 6], (Kind::Float, Device::Cpu));
    let _ = only.get(0).fill_(0.0);
    let _ = only.get(0).get(2).fill_(1.0);
    let want = eval_with(&only, "alone");
    let got = alone.get(0).get(2).double_value(&[]);
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    let best = &a["best_single_head_per_layer"][0];
    let best_score = best["score"].as_f64().unwrap();
    let row: Vec<f64> = Vec::try_from(alone.get(0).to_kind(Kind::Double)).unwrap();
    assert_eq!(best_score, row.iter().cloned().fold(f64::MIN, f64::max));
}
