//! Feed-forward neurons in every family against transformers 4.57 with the neuron mask as a
//! forward pre-hook on each MLP output projection (scripts/reference/neuron_mask.py; fixtures
//! by scripts/reference/make_neuron_fixtures.py): logits under [layers, N] and per-example
//! masks, the mask's gradient, neuron importance by both estimators; physical pruning of
//! neurons (uneven and uniform, alone and with heads) equals masking and reloads.
//!
//! `BERTOLOGY_KEEP_NEURON_MODELS=DIR` keeps each pruned model with its masks and inputs in
//! `DIR/<fixture>-<case>/` for scripts/reference/check_neuron_pruned.py (transformers reloads
//! them; scripts/check-neurons.sh runs both).
use crate::common::*;
use bertology::data::batch::Batch;
use bertology::importance::{compute_masked, Estimator, Settings};
use bertology::model::{Inputs, LoadOptions, Masks, Model};
use bertology::pruning::prune_units;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// (fixture folder under tests/fixtures, fixture name under tests/fixtures/neurons).
const MODELS: [(&str, &str); 10] = [
    ("tiny-bert", "tiny-bert"),
    ("families/roberta", "roberta"),
    ("families/distilbert", "distilbert"),
    ("families/electra", "electra"),
    ("tiny-gpt2", "tiny-gpt2"),
    ("tiny-gpt", "tiny-gpt"),
    ("families/llama", "llama"),
    ("families/mistral", "mistral"),
    ("families/qwen2", "qwen2"),
    ("families/llama-cls", "llama-cls"),
];

fn load(dir: &Path) -> Model {
    let mut m = Model::load(
        dir,
        &LoadOptions {
            device: Device::Cpu,
            seed: 0,
            task: None,
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
    m.vs.freeze();
    m
}

fn reference(name: &str) -> HashMap<String, Tensor> {
    read_tensors(&fixture("neurons").join(format!("{name}.safetensors")))
}

fn inputs(f: &HashMap<String, Tensor>) -> Inputs<'_> {
    Inputs {
        input_ids: &f["input_ids"],
        token_type_ids: &f["token_type_ids"],
        attention_mask: &f["attention_mask"],
    }
}

fn close(a: &Tensor, b: &Tensor, tol: f64, what: &str) {
    let d = max_abs_diff(a, b);
    assert!(d <= tol, "{what}: differs by {d} (tolerance {tol})");
}

fn logits(model: &Model, x: &Inputs, heads: Option<&Tensor>, neurons: Option<&Tensor>) -> Tensor {
    tch::no_grad(|| {
        model
            .net
            .forward_masked(x, Masks { heads, neurons }, Default::default())
    })
    .unwrap()
    .logits
}

#[test]
fn neuron_masks_gradients_and_importance_match_transformers() {
    for (dir, name) in MODELS {
        let model = load(&fixture(dir));
        let f = reference(name);
        let x = inputs(&f);
        let (layers, n) = (model.net.num_layers(), model.net.intermediate_size());
        assert_eq!(f["neuron_mask_2d"].size(), vec![layers, n], "{name}");
        for case in ["2d", "3d"] {
            let mask = &f[&format!("neuron_mask_{case}")];
            let ours = logits(&model, &x, None, Some(mask));
            close(
                &ours,
                &f[&format!("{case}.logits")],
                1e-5,
                &format!("{name} {case} logits"),
            );
        }
        // The mask's gradient through the batch loss.
        let leaf = f["neuron_mask_2d"].copy().set_requires_grad(true);
        let out = model
            .net
            .forward_masked(
                &x,
                Masks {
                    heads: None,
                    neurons: Some(&leaf),
                },
                Default::default(),
            )
            .unwrap();
        let loss = model.net.loss(&out.logits, &f["labels"], false);
        close(
            &loss.reshape([1]),
            &f["2d.loss"],
            1e-5,
            &format!("{name} loss"),
        );
        let grad = Tensor::run_backward(&[&loss], &[&leaf], false, false).remove(0);
        let scale = f["2d.mask_grad"].abs().max().double_value(&[]).max(1.0);
        close(
            &grad,
            &f["2d.mask_grad"],
            1e-5 * scale,
            &format!("{name} mask gradient"),
        );
        // Importance of every neuron, one batch, both estimators, unnormalised.
        let batch = Batch {
            input_ids: f["input_ids"].shallow_clone(),
            token_type_ids: f["token_type_ids"].shallow_clone(),
            attention_mask: f["attention_mask"].shallow_clone(),
            labels: Some(f["labels"].shallow_clone()),
            indices: vec![0, 1, 2],
            tokens: f["attention_mask"].sum(Kind::Int64).int64_value(&[]),
        };
        for (estimator, key) in [
            (Estimator::PerExample, "importance.per_example"),
            (Estimator::Anchor, "importance.anchor"),
        ] {
            let settings = Settings {
                estimator,
                layer_norm: false,
                global_norm: false,
                entropy: false,
            };
            let stats = compute_masked(
                model.net.as_ref(),
                std::slice::from_ref(&batch),
                Masks::default(),
                true,
                settings,
                None,
            )
            .unwrap();
            let ours = stats.raw_neuron_importance.expect("neuron importance");
            assert!(f[key].abs().max().double_value(&[]) > 0.0);
            close(&ours, &f[key], 1e-3, &format!("{name} {key}"));
            // Normalised importance has the shape the pictures and masking read.
            assert_eq!(stats.neuron_importance.unwrap().size(), vec![layers, n]);
        }
    }
}

/// A 0/1 mask [layers, n] keeping, in layer l, the neurons `keep(l, i)` says.
fn mask_of(layers: i64, n: i64, keep: impl Fn(i64, i64) -> bool) -> Tensor {
    let v: Vec<f32> = (0..layers)
        .flat_map(|l| (0..n).map(move |i| (l, i)))
        .map(|(l, i)| if keep(l, i) { 1.0 } else { 0.0 })
        .collect();
    Tensor::from_slice(&v).view([layers, n])
}

fn keep_dir() -> Option<PathBuf> {
    std::env::var_os("BERTOLOGY_KEEP_NEURON_MODELS").map(PathBuf::from)
}

/// Saves what check_neuron_pruned.py needs: the pruned model, the masks, the inputs.
fn keep(
    name: &str,
    case: &str,
    dir: &str,
    model: &Model,
    f: &HashMap<String, Tensor>,
    masks: (&Option<Tensor>, &Tensor),
) {
    let Some(root) = keep_dir() else { return };
    let out = root.join(format!("{name}-{case}"));
    model.save(&out.join("pruned_model")).unwrap();
    let mut named: Vec<(&str, Tensor)> = vec![
        ("neuron_mask", masks.1.shallow_clone()),
        ("input_ids", f["input_ids"].shallow_clone()),
        ("token_type_ids", f["token_type_ids"].shallow_clone()),
        ("attention_mask", f["attention_mask"].shallow_clone()),
    ];
    if let Some(h) = masks.0 {
        named.push(("head_mask", h.shallow_clone()));
    }
    Tensor::write_safetensors(&named, out.join("masks.safetensors")).unwrap();
    std::fs::write(out.join("original.txt"), fixture(dir).display().to_string()).unwrap();
}

#[test]
fn pruning_neurons_equals_masking_and_reloads_for_every_family() {
    for (dir, name) in MODELS {
        let model = load(&fixture(dir));
        let f = reference(name);
        let x = inputs(&f);
        let (layers, n, heads) = (
            model.net.num_layers(),
            model.net.intermediate_size(),
            model.net.num_heads(),
        );
        // Uneven: layer l loses the neurons i with (i + l) % 3 == 0 and layer 0 also neuron 1;
        // uniform: every layer keeps n / 2, a different half in each.
        let uneven = mask_of(layers, n, |l, i| (i + l) % 3 != 0 && !(l == 0 && i == 1));
        let uniform = mask_of(layers, n, |l, i| ((i * 7 + l * 5) % n) < n / 2);
        let head_mask = mask_of(layers, heads, |l, h| (h + l) % 2 == 0);
        for (case, neurons, heads_mask) in [
            ("uneven", &uneven, None),
            ("uniform", &uniform, None),
            ("both", &uneven, Some(head_mask.shallow_clone())),
        ] {
            let what = format!("{name} {case}");
            let masked = logits(&model, &x, heads_mask.as_ref(), Some(neurons));
            let pruned = prune_units(&model, heads_mask.as_ref(), Some(neurons)).unwrap();
            let expected: Vec<i64> =
                Vec::<f32>::try_from(neurons.sum_dim_intlist(1, false, Kind::Float))
                    .unwrap()
                    .into_iter()
                    .map(|v| v as i64)
                    .collect();
            assert_eq!(pruned.net.neurons_per_layer(), expected, "{what}");
            close(
                &logits(&pruned, &x, None, None),
                &masked,
                1e-5,
                &format!("{what} pruned"),
            );
            // A neuron mask indexes the pruned model's config numbering: the original neurons
            // when layers differ, 0..k when the intermediate size was rewritten.
            let size = pruned.net.intermediate_size();
            let more_keeps = |p: i64| p % 5 != 2;
            let more = mask_of(layers, size, |_, p| more_keeps(p));
            let rows: Vec<Vec<f32>> = Vec::try_from(neurons).unwrap();
            let pruned_kept = pruned.net.kept_neurons();
            let both = mask_of(layers, n, |l, i| {
                let kept: Vec<i64> = (0..n)
                    .filter(|&k| rows[l as usize][k as usize] == 1.0)
                    .collect();
                kept.iter()
                    .position(|&k| k == i)
                    .is_some_and(|j| more_keeps(pruned_kept[l as usize][j]))
            });
            close(
                &logits(&pruned, &x, None, Some(&more)),
                &logits(&model, &x, heads_mask.as_ref(), Some(&both)),
                1e-5,
                &format!("{what} pruned and masked"),
            );
            let tmp = tempfile::tempdir().unwrap();
            pruned.save(tmp.path()).unwrap();
            let config: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(tmp.path().join("config.json")).unwrap(),
            )
            .unwrap();
            let remote = tmp.path().join("modeling_bertology.py").is_file();
            match (case, model.net.intermediate_field()) {
                ("uniform", Some(field)) => {
                    assert_eq!(config[field], serde_json::json!(n / 2), "{what}");
                    assert!(config.get("pruned_neurons").is_none(), "{what}");
                }
                _ => {
                    assert!(config["pruned_neurons"].is_object(), "{what}");
                    assert!(remote, "{what}: no modelling file");
                    assert!(config["auto_map"].is_object(), "{what}");
                }
            }
            let again = load(tmp.path());
            assert_eq!(again.net.neurons_per_layer(), expected, "{what} reloaded");
            close(
                &logits(&again, &x, None, None),
                &masked,
                1e-5,
                &format!("{what} reloaded"),
            );
            // Pruned again: more neurons go, from the reloaded model.
            let twice = prune_units(&again, None, Some(&more)).unwrap();
            close(
                &logits(&twice, &x, None, None),
                &logits(&model, &x, heads_mask.as_ref(), Some(&both)),
                1e-5,
                &format!("{what} pruned twice"),
            );
            keep(name, case, dir, &pruned, &f, (&heads_mask, neurons));
        }
    }
}

#[test]
fn neuron_masks_of_the_wrong_shape_are_errors() {
    let model = load(&fixture("tiny-bert"));
    let f = reference("tiny-bert");
    let x = inputs(&f);
    for shape in [vec![3i64, 36], vec![2, 37], vec![2, 3, 37], vec![37]] {
        let bad = Tensor::ones(shape.as_slice(), (Kind::Float, Device::Cpu));
        let err = model
            .net
            .forward_masked(
                &x,
                Masks {
                    heads: None,
                    neurons: Some(&bad),
                },
                Default::default(),
            )
            .err()
            .unwrap_or_else(|| panic!("{shape:?} accepted"));
        assert!(
            err.to_string().starts_with("neuron mask has shape"),
            "{err}"
        );
    }
}

/// `prune --units both` through the binary on a grouped-query model: every step's masks are
/// written, each step's size is what pruning its masks gives (the last step's is the pruned
/// model's), `eval --head-mask --neuron-mask` scores the run's masks as the run did, and
/// `report --compare` draws heads and neurons against size.
#[test]
fn joint_runs_record_every_steps_masks_and_size() {
    let tmp = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let valid =
        std::fs::read_to_string(root().join("../shared/data/wikitext-2/valid.txt")).unwrap();
    let text = tmp.path().join("valid-head.txt");
    std::fs::write(&text, &valid[..valid.char_indices().nth(4000).unwrap().0]).unwrap();
    let model = s(&fixture("families/qwen2"));
    let lm = |cmd: &str, extra: &[&str]| {
        let mut a: Vec<String> = [cmd, "--task", "lm", "--model", &model, "--text", &s(&text)]
            .iter()
            .map(|x| x.to_string())
            .collect();
        a.extend(
            [
                "--block-size",
                "24",
                "--data-subset",
                "16",
                "--json",
                "--quiet",
            ]
            .iter()
            .chain(extra)
            .map(|x| x.to_string()),
        );
        let argv: Vec<&str> = a.iter().map(String::as_str).collect();
        ok(&bertology(&argv))
    };
    let mut runs = Vec::new();
    for units in ["heads", "neurons", "both"] {
        let run = tmp.path().join(format!("prune-{units}"));
        let mut how = vec!["--units", units, "--masking-amount", "0.25"];
        if units != "neurons" {
            how.extend(["--target-heads", "0.5"]);
        }
        if units != "heads" {
            how.extend(["--target-neurons", "0.5"]);
        }
        how.extend(["--timing-runs", "1", "--output-dir"]);
        let out = s(&run);
        how.push(&out);
        let summary = lm("prune", &how);
        let mut curve = csv::Reader::from_path(run.join("masking_curve.csv")).unwrap();
        let headers = curve.headers().unwrap().clone();
        let rows: Vec<csv::StringRecord> = curve.records().map(Result::unwrap).collect();
        let col = |name: &str| {
            let i = headers.iter().position(|h| h == name).unwrap();
            rows.iter().map(|r| r[i].to_string()).collect::<Vec<_>>()
        };
        let sizes: Vec<i64> = col("parameters_kept")
            .iter()
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(sizes[0], summary["parameters_before"], "{units}: {sizes:?}");
        assert_eq!(
            *sizes.last().unwrap(),
            summary["parameters_after"],
            "{units}: {sizes:?}"
        );
        assert!(sizes.windows(2).all(|w| w[0] > w[1]), "{units}: {sizes:?}");
        let head_steps = bertology::npy::read(&run.join("masking_masks.npy")).unwrap();
        assert_eq!(head_steps.size()[0] as usize, rows.len(), "{units}");
        if units != "heads" {
            let steps = bertology::npy::read(&run.join("masking_neuron_masks.npy")).unwrap();
            let kept: Vec<i64> = col("neurons_kept")
                .iter()
                .map(|v| v.parse().unwrap())
                .collect();
            let counted: Vec<i64> =
                Vec::try_from(steps.sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Double))
                    .map(|v: Vec<f64>| v.iter().map(|&x| x as i64).collect())
                    .unwrap();
            assert_eq!(counted, kept, "{units}: neuron masks against neurons_kept");
            // The run's final masks, evaluated without pruning, score what the run reported.
            let eval_dir = tmp.path().join(format!("eval-{units}"));
            let e = lm(
                "eval",
                &[
                    "--head-mask",
                    &s(&run.join("head_mask.npy")),
                    "--neuron-mask",
                    &s(&run.join("neuron_mask.npy")),
                    "--output-dir",
                    &s(&eval_dir),
                ],
            );
            let (got, want) = (
                e["metrics"]["inverse_loss"].as_f64().unwrap(),
                summary["masked_score"].as_f64().unwrap(),
            );
            assert!(
                (got - want).abs() < 1e-6 * want,
                "{units}: eval {got} vs prune {want}"
            );
        }
        runs.push(out);
    }
    let compare = tmp.path().join("compare");
    let mut argv = vec!["report", "--quiet", "--compare"];
    argv.extend(runs.iter().map(String::as_str));
    let c = s(&compare);
    argv.extend(["--output-dir", &c]);
    let out = bertology(&argv);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::metadata(compare.join("pruning_curve.png"))
            .unwrap()
            .len()
            > 1000
    );
    let svg = std::fs::read_to_string(compare.join("pruning_curve.svg")).unwrap();
    assert!(svg.contains("parameters kept (millions)"), "x axis: size");
    assert!(svg.contains("neurons, importance"), "labels name the units");
}
