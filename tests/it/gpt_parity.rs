//! GPT-2, OpenAI GPT and the masked-LM heads of BERT and RoBERTa against transformers 4.57 on committed fixtures
//! (scripts/reference/make_gpt_fixtures.py): logits, loss, attentions, hidden states and mask
//! gradients, with no mask, a [layers, heads] mask and a per-example mask; checkpoints pruned by
//! transformers; pruning by bertology against masking.
use crate::common::*;
use bertology::data::glue::Task;
use bertology::model::{ForwardOptions, Inputs, LoadOptions, Model, Objective};
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

fn load(name: &str, task: Option<Task>) -> Model {
    Model::load(
        &fixture(name),
        &LoadOptions {
            device: Device::Cpu,
            seed: 0,
            task: task.map(Into::into),
        },
    )
    .unwrap()
}

const ALL_OUTPUTS: ForwardOptions = ForwardOptions {
    train: false,
    output_attentions: true,
    output_hidden_states: true,
    detached_attentions: false,
};

fn check_close(what: &str, ours: &Tensor, theirs: &Tensor) {
    let d = max_abs_diff(ours, theirs);
    assert!(d <= 1e-5, "{what} differs by {d}");
}

/// Every case of one model of the fixture: outputs with no mask, a [L, H] mask (zeros and 0.5)
/// and a per-example mask, on the explicit path and the fused one; loss and mask gradients for
/// language models.
fn check_model(model: &Model, prefix: &str, f: &HashMap<String, Tensor>) {
    let types = f["input_ids"].zeros_like();
    let inputs = Inputs {
        input_ids: &f["input_ids"],
        token_type_ids: &types,
        attention_mask: &f["attention_mask"],
    };
    let lm = model.net.objective() != Objective::Classification;
    let labels = match model.net.objective() {
        Objective::MaskedLm => &f["mlm_labels"],
        _ => &f["labels"],
    };
    for (case, mask) in [
        ("none", None),
        ("2d", Some(&f["head_mask_2d"])),
        ("3d", Some(&f["head_mask_3d"])),
    ] {
        let key = |k: &str| format!("{prefix}.{case}.{k}");
        let out = tch::no_grad(|| model.net.forward(&inputs, mask, ALL_OUTPUTS)).unwrap();
        check_close(&key("logits"), &out.logits, &f[&key("logits")]);
        if lm {
            let loss = model.net.loss(&out.logits, labels, false);
            check_close(&key("loss"), &loss.reshape([1]), &f[&key("loss")]);
        }
        let attentions = out.attentions.unwrap();
        assert_eq!(attentions.len(), 3);
        for (i, a) in attentions.iter().enumerate() {
            check_close(
                &key(&format!("attentions.{i}")),
                a,
                &f[&key(&format!("attentions.{i}"))],
            );
        }
        let hidden = out.hidden_states.unwrap();
        assert_eq!(hidden.len(), 4);
        for (i, h) in hidden.iter().enumerate() {
            let k = key(&format!("hidden_states.{i}"));
            check_close(&k, h, &f[&k]);
        }
        let fast = tch::no_grad(|| model.net.forward(&inputs, mask, Default::default())).unwrap();
        check_close(
            &format!("{} (fused)", key("logits")),
            &fast.logits,
            &f[&key("logits")],
        );
    }
    if lm {
        // ∂(batch-mean token loss)/∂ξ for ξ = ones [L, H], and ∂(Σ per-example mean)/∂ξ for
        // per-example ξ [B, L, H], on both attention paths.
        for opts in [Default::default(), ALL_OUTPUTS] {
            let xi = Tensor::ones([3, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let out = model.net.forward(&inputs, Some(&xi), opts).unwrap();
            let loss = model.net.loss(&out.logits, labels, false);
            let g = Tensor::run_backward(&[&loss], &[&xi], false, false).remove(0);
            check_close(
                &format!("{prefix}.grad_2d"),
                &g,
                &f[&format!("{prefix}.grad_2d")],
            );
            let xi = Tensor::ones([3, 3, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let out = model.net.forward(&inputs, Some(&xi), opts).unwrap();
            let loss = model.net.loss(&out.logits, labels, true);
            let g = Tensor::run_backward(&[&loss], &[&xi], false, false).remove(0);
            check_close(
                &format!("{prefix}.grad_3d"),
                &g,
                &f[&format!("{prefix}.grad_3d")],
            );
        }
    }
}

#[test]
fn tiny_gpt2_lm_matches_transformers() {
    let f = read_tensors(&fixture("gpt_parity.safetensors"));
    let model = load("tiny-gpt2", None);
    assert_eq!(model.net.hf_class(), "GPT2LMHeadModel");
    check_model(&model, "gpt2", &f);
    // `--task lm` picks the same head.
    let again = load("tiny-gpt2", Some(Task::Lm));
    assert_eq!(again.net.objective(), Objective::CausalLm);
}

#[test]
fn tiny_gpt2_classifier_matches_transformers() {
    let f = read_tensors(&fixture("gpt_parity.safetensors"));
    let model = load("tiny-gpt2-cls", None);
    assert_eq!(model.net.hf_class(), "GPT2ForSequenceClassification");
    check_model(&model, "gpt2_cls", &f);
    assert!(model.init_warning().is_none());
}

#[test]
fn tiny_openai_gpt_lm_matches_transformers() {
    let f = read_tensors(&fixture("gpt_parity.safetensors"));
    let model = load("tiny-gpt", None);
    assert_eq!(model.net.hf_class(), "OpenAIGPTLMHeadModel");
    check_model(&model, "gpt", &f);
}

#[test]
fn gpt2_pruned_by_transformers_loads_and_bertology_pruning_equals_masking() {
    let f = read_tensors(&fixture("gpt_parity.safetensors"));
    let types = f["input_ids"].zeros_like();
    let inputs = Inputs {
        input_ids: &f["input_ids"],
        token_type_ids: &types,
        attention_mask: &f["attention_mask"],
    };
    let pruned = load("tiny-gpt2-pruned", None);
    assert_eq!(pruned.net.heads_per_layer(), vec![3, 4, 2]);
    for opts in [Default::default(), ALL_OUTPUTS] {
        let out = tch::no_grad(|| pruned.net.forward(&inputs, None, opts)).unwrap();
        check_close("pruned logits", &out.logits, &f["gpt2_pruned.logits"]);
    }
    // Our own physical pruning of the full model: the same weights as transformers' prune_heads.
    let full = load("tiny-gpt2", None);
    let mask = Tensor::ones([3, 4], (Kind::Float, Device::Cpu));
    for (l, h) in [(0, 1), (2, 0), (2, 3)] {
        let _ = mask.get(l).get(h).fill_(0.0);
    }
    let ours = bertology::pruning::prune(&full, &mask).unwrap();
    assert_eq!(ours.net.heads_per_layer(), vec![3, 4, 2]);
    let theirs = pruned.vs.variables();
    for (name, t) in ours.vs.variables() {
        check_close(&format!("pruned weight {name}"), &t, &theirs[&name]);
    }
    assert_eq!(
        ours.config.pruned_heads_json(),
        serde_json::json!({"0": [1], "2": [0, 3]})
    );
    let masked = tch::no_grad(|| full.net.forward(&inputs, Some(&mask), Default::default()))
        .unwrap()
        .logits;
    check_close("masked vs pruned", &masked, &f["gpt2_pruned.logits"]);
}

#[test]
fn tiny_bert_and_roberta_masked_lm_match_transformers() {
    let f = read_tensors(&fixture("gpt_parity.safetensors"));
    for (name, prefix, class) in [
        ("tiny-bert-mlm", "bert_mlm", "BertForMaskedLM"),
        ("tiny-roberta-mlm", "roberta_mlm", "RobertaForMaskedLM"),
    ] {
        let model = load(name, Some(Task::Mlm));
        assert_eq!(model.net.hf_class(), class);
        check_model(&model, prefix, &f);
        // With no task, a checkpoint with an MLM head and no classifier is read as a masked LM.
        assert_eq!(load(name, None).net.objective(), Objective::MaskedLm);
    }
}

#[test]
fn a_gpt2_laid_out_like_the_hub_cache_loads_by_its_legacy_id() {
    // models--gpt2/snapshots/<rev>/ with the hub's key names (no `transformer.` prefix) and the
    // causal-mask buffers old GPT-2 checkpoints carry (attn.bias, attn.masked_bias).
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--gpt2");
    let snapshot = repo
        .join("snapshots")
        .join("607a30d783dfa663caf39e06633721c8d4cfcd7e");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(
        repo.join("refs/main"),
        "607a30d783dfa663caf39e06633721c8d4cfcd7e",
    )
    .unwrap();
    let src = fixture("tiny-gpt2");
    for f in ["config.json", "vocab.json", "merges.txt"] {
        std::fs::copy(src.join(f), snapshot.join(f)).unwrap();
    }
    let mut tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(src.join("model.safetensors"))
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k.trim_start_matches("transformer.").to_string(), t))
            .collect();
    for l in 0..3 {
        let causal = Tensor::ones([16, 16], (Kind::Float, Device::Cpu))
            .tril(0)
            .view([1, 1, 16, 16]);
        tensors.push((format!("h.{l}.attn.bias"), causal));
        tensors.push((format!("h.{l}.attn.masked_bias"), Tensor::from(-1e4f32)));
    }
    Tensor::write_safetensors(&tensors, snapshot.join("model.safetensors")).unwrap();
    let dir = bertology::model_source::resolve_model_in("gpt2", cache.path(), true).unwrap();
    assert_eq!(dir, snapshot);
    let model = Model::load(
        &dir,
        &LoadOptions {
            device: Device::Cpu,
            seed: 0,
            task: Some(Task::Lm.into()),
        },
    )
    .unwrap();
    assert_eq!(
        model.report.unexpected.len(),
        6,
        "{:?}",
        model.report.unexpected
    );
    let f = read_tensors(&fixture("gpt_parity.safetensors"));
    let types = f["input_ids"].zeros_like();
    let inputs = Inputs {
        input_ids: &f["input_ids"],
        token_type_ids: &types,
        attention_mask: &f["attention_mask"],
    };
    let out = tch::no_grad(|| model.net.forward(&inputs, None, Default::default())).unwrap();
    check_close(
        "hub-layout gpt2 logits",
        &out.logits,
        &f["gpt2.none.logits"],
    );
}
