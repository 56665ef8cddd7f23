//! Parity with transformers 4.57 on committed fixtures (scripts/reference/make_model_fixtures.py).
use crate::common::*;
use bertology::data::batch::Padding;
use bertology::model::{ForwardOptions, Inputs};
use bertology::model::{LoadOptions, Model};
use bertology::model_source::resolve_model_in;
use tch::{Device, Tensor};

fn load(dir: &std::path::Path) -> Model {
    Model::load(
        dir,
        &LoadOptions {
            device: Device::Cpu,
            seed: 0,
            task: None,
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

#[test]
fn tiny_bert_matches_transformers_with_and_without_head_masks() {
    let model = load(&fixture("tiny-bert"));
    let f = read_tensors(&fixture("tiny_parity.safetensors"));
    let inputs = Inputs {
        input_ids: &f["input_ids"],
        token_type_ids: &f["token_type_ids"],
        attention_mask: &f["attention_mask"],
    };
    for (case, mask) in [
        ("none", None),
        ("2d", Some(&f["head_mask_2d"])),
        ("3d", Some(&f["head_mask_3d"])),
    ] {
        let out = tch::no_grad(|| model.net.forward(&inputs, mask, ALL_OUTPUTS)).unwrap();
        let d = max_abs_diff(&out.logits, &f[&format!("{case}.logits")]);
        assert!(d <= 1e-5, "{case}: logits differ by {d}");
        let attentions = out.attentions.unwrap();
        assert_eq!(attentions.len(), 3);
        for (i, a) in attentions.iter().enumerate() {
            let d = max_abs_diff(a, &f[&format!("{case}.attentions.{i}")]);
            assert!(d <= 1e-5, "{case}: attentions of layer {i} differ by {d}");
        }
        let hidden = out.hidden_states.unwrap();
        assert_eq!(hidden.len(), 4);
        for (i, h) in hidden.iter().enumerate() {
            let d = max_abs_diff(h, &f[&format!("{case}.hidden_states.{i}")]);
            assert!(d <= 1e-5, "{case}: hidden state {i} differs by {d}");
        }
        // The fast path (no attentions or hidden states asked: fused attention, last layer
        // computed for [CLS] only) gives the same logits.
        let fast = tch::no_grad(|| model.net.forward(&inputs, mask, Default::default())).unwrap();
        let d = max_abs_diff(&fast.logits, &f[&format!("{case}.logits")]);
        assert!(d <= 1e-5, "{case}: fused path logits differ by {d}");
    }
    // A zero in the mask really removes the head: its attention output is all zeros.
    let out = tch::no_grad(|| {
        model
            .net
            .forward(&inputs, Some(&f["head_mask_2d"]), ALL_OUTPUTS)
    })
    .unwrap();
    let a0 = &out.attentions.unwrap()[0];
    assert_eq!(
        a0.get(0)
            .get(1)
            .abs()
            .sum(tch::Kind::Float)
            .double_value(&[]),
        0.0
    );
}

#[test]
fn a_wrong_head_mask_shape_is_an_error() {
    let model = load(&fixture("tiny-bert"));
    let f = read_tensors(&fixture("tiny_parity.safetensors"));
    let inputs = Inputs {
        input_ids: &f["input_ids"],
        token_type_ids: &f["token_type_ids"],
        attention_mask: &f["attention_mask"],
    };
    let bad = Tensor::ones([3, 5], (tch::Kind::Float, Device::Cpu));
    let err = model
        .net
        .forward(&inputs, Some(&bad), Default::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("expected [3, 4]"), "{err}");
}

#[test]
fn checkpoint_pruned_by_transformers_loads_at_its_shapes_and_matches() {
    let model = load(&fixture("tiny-bert-pruned"));
    assert_eq!(model.net.heads_per_layer(), vec![3, 2, 4]);
    let f = read_tensors(&fixture("tiny_parity.safetensors"));
    let reference = read_tensors(&fixture("tiny_pruned_logits.safetensors"));
    let inputs = Inputs {
        input_ids: &f["input_ids"],
        token_type_ids: &f["token_type_ids"],
        attention_mask: &f["attention_mask"],
    };
    for opts in [Default::default(), ALL_OUTPUTS] {
        let out = tch::no_grad(|| model.net.forward(&inputs, None, opts)).unwrap();
        let d = max_abs_diff(&out.logits, &reference["logits"]);
        assert!(d <= 1e-5, "pruned logits differ by {d}");
    }
    // Pruning equals masking: the unpruned model with those heads masked gives the same logits.
    let full = load(&fixture("tiny-bert"));
    let mask = Tensor::ones([3, 4], (tch::Kind::Float, Device::Cpu));
    for (l, h) in [(0, 1), (1, 0), (1, 3)] {
        let _ = mask.get(l).get(h).fill_(0.0);
    }
    let masked =
        tch::no_grad(|| full.net.forward(&inputs, Some(&mask), Default::default())).unwrap();
    let d = max_abs_diff(&masked.logits, &reference["logits"]);
    assert!(d <= 1e-5, "masked vs pruned differ by {d}");
    // A mask over the original heads works on the pruned model too (pruned heads are ignored).
    let _ = mask.get(2).get(3).fill_(0.0);
    let on_pruned =
        tch::no_grad(|| model.net.forward(&inputs, Some(&mask), Default::default())).unwrap();
    let on_full =
        tch::no_grad(|| full.net.forward(&inputs, Some(&mask), Default::default())).unwrap();
    let d = max_abs_diff(&on_pruned.logits, &on_full.logits);
    assert!(d <= 1e-5, "mask on pruned vs full differ by {d}");
}

#[test]
fn minilm_with_fixture_classifier_matches_transformers_on_mrpc_dev() {
    let model = minilm_with_classifier();
    let examples = mrpc_dev(Some(64));
    let ours = logits_of(&model, &examples, 32, Padding::Longest);
    let reference = read_tensors(&fixture("minilm_mrpc_dev.safetensors"));
    let theirs = reference["logits"].narrow(0, 0, 64);
    let d = max_abs_diff(&ours, &theirs);
    assert!(d <= 1e-4, "MiniLM logits differ by {d}");
}

#[test]
fn hub_ids_resolve_through_a_cache_folder() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--test-org--tiny-bert");
    let snapshot = repo.join("snapshots").join("0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "0123abcd").unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("tiny-bert").join(f), snapshot.join(f)).unwrap();
    }
    let dir = resolve_model_in("test-org/tiny-bert", cache.path(), true).unwrap();
    assert_eq!(dir, snapshot);
    let pinned = resolve_model_in("test-org/tiny-bert@0123abcd", cache.path(), true).unwrap();
    assert_eq!(pinned, snapshot);
    assert_eq!(load(&dir).net.heads_per_layer(), vec![4, 4, 4]);
    let err = resolve_model_in("test-org/absent", cache.path(), true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("models--test-org--absent") && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
}

#[test]
fn sharded_checkpoints_load_like_single_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("tiny-bert/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let all = Tensor::read_safetensors(fixture("tiny-bert/model.safetensors")).unwrap();
    let (first, second): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(k, _)| k.contains("layer.0") || k.contains("embeddings"));
    Tensor::write_safetensors(&first, dir.path().join("model-00001-of-00002.safetensors")).unwrap();
    Tensor::write_safetensors(&second, dir.path().join("model-00002-of-00002.safetensors"))
        .unwrap();
    let mut map = serde_json::Map::new();
    for (k, _) in &first {
        map.insert(k.clone(), "model-00001-of-00002.safetensors".into());
    }
    for (k, _) in &second {
        map.insert(k.clone(), "model-00002-of-00002.safetensors".into());
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let sharded = load(dir.path());
    let f = read_tensors(&fixture("tiny_parity.safetensors"));
    let inputs = Inputs {
        input_ids: &f["input_ids"],
        token_type_ids: &f["token_type_ids"],
        attention_mask: &f["attention_mask"],
    };
    let out = tch::no_grad(|| sharded.net.forward(&inputs, None, Default::default())).unwrap();
    assert!(max_abs_diff(&out.logits, &f["none.logits"]) <= 1e-5);
}

#[test]
fn vocab_txt_fallback_tokenises_like_tokenizer_json() {
    use bertology::model::tokenizer::TextTokenizer;
    let dir = tempfile::tempdir().unwrap();
    for f in ["vocab.txt", "tokenizer_config.json"] {
        std::fs::copy(minilm_dir().join(f), dir.path().join(f)).unwrap();
    }
    let from_json = TextTokenizer::from_dir(&minilm_dir(), 128).unwrap();
    let from_vocab = TextTokenizer::from_dir(dir.path(), 128).unwrap();
    let pairs: Vec<(String, Option<String>)> = mrpc_dev(Some(64))
        .into_iter()
        .map(|e| (e.text_a, e.text_b))
        .collect();
    let a = from_json.encode_batch(&pairs).unwrap();
    let b = from_vocab.encode_batch(&pairs).unwrap();
    assert_eq!(a, b);
    // Pairs: [CLS] a [SEP] b [SEP] with token types 0 then 1; truncation to the maximum.
    assert_eq!(a[0].ids[0], 101);
    assert!(a[0].type_ids.contains(&1) && a[0].type_ids[0] == 0);
    let long = "word ".repeat(300);
    let t = from_vocab.encode(&long, Some(&long)).unwrap();
    assert_eq!(t.ids.len(), 128);
}
