//! The long commands end to end through the binary: finetune on the tiny model, importance and
//! prune on MiniLM with the fixture classifier, and their argument errors.
use crate::common::*;
use std::path::Path;

/// A tiny checkpoint without its 3-way classifier: an encoder to fine-tune for MRPC.
fn tiny_encoder(into: &Path) -> std::path::PathBuf {
    encoder_of(into, "tiny-bert")
}

fn encoder_of(into: &Path, name: &str) -> std::path::PathBuf {
    let dir = into.join(format!("{name}-encoder"));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "vocab.txt", "tokenizer_config.json"] {
        std::fs::copy(fixture(name).join(f), dir.join(f)).unwrap();
    }
    let all = tch::Tensor::read_safetensors(fixture(name).join("model.safetensors")).unwrap();
    let encoder: Vec<_> = all
        .into_iter()
        .filter(|(k, _)| !k.starts_with("classifier."))
        .collect();
    tch::Tensor::write_safetensors(&encoder, dir.join("model.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let obj = config.as_object_mut().unwrap();
    obj.remove("id2label");
    obj.remove("label2id");
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    dir
}

#[test]
fn finetune_lowers_the_loss_and_writes_a_checkpoint_that_reloads() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_encoder(tmp.path());
    let out = tmp.path().join("tuned");
    let model_s = model.display().to_string();
    let out_s = out.display().to_string();
    let args = [
        "finetune",
        "--task",
        "mrpc",
        "--device",
        "cpu",
        "--json",
        "--model",
        &model_s,
        "--output-dir",
        &out_s,
        "--train-subset",
        "64",
        "--eval-subset",
        "32",
        "--batch-size",
        "8",
        "--max-seq-length",
        "40",
        "--learning-rate",
        "1e-3",
        "--epochs",
        "4",
    ];
    let v = ok(&bertology(&args));
    let losses: Vec<f64> = v["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["train_loss"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 4);
    assert!(
        losses[3] < losses[0],
        "training loss did not fall: {losses:?}"
    );
    assert_eq!(v["settings"]["steps"], 32);
    for f in [
        "config.json",
        "model.safetensors",
        "vocab.txt",
        "finetune.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["id2label"], serde_json::json!({"0": "0", "1": "1"}));
    // The checkpoint reloads, with its classifier, and scores what fine-tuning reported.
    let e = ok(&bertology(&[
        "eval",
        "--task",
        "mrpc",
        "--device",
        "cpu",
        "--json",
        "--model",
        &out_s,
        "--data-subset",
        "32",
        "--max-seq-length",
        "40",
        "--output-dir",
        tmp.path().join("ev").to_str().unwrap(),
    ]));
    assert_eq!(e["metrics"], v["best"]["metrics"]);
    // Same seed and threads: the same result.
    let again = ok(&bertology(&args));
    assert_eq!(
        again["epochs"][3]["train_loss"],
        v["epochs"][3]["train_loss"]
    );
}

#[test]
fn importance_writes_standard_npy_csv_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let model = minilm_fixture_dir(tmp.path());
    let out = tmp.path().join("imp");
    let v = ok(&bertology(&[
        "importance",
        "--task",
        "mrpc",
        "--device",
        "cpu",
        "--json",
        "--data-subset",
        "32",
        "--model",
        model.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]));
    assert_eq!(v["examples"], 32);
    assert!(v["score"].as_f64().unwrap() > 0.5);
    for (f, dtype) in [
        ("head_importance.npy", "<f4"),
        ("attn_entropy.npy", "<f4"),
        ("head_ranks.npy", "<i8"),
    ] {
        let bytes = std::fs::read(out.join(f)).unwrap();
        assert_eq!(&bytes[..6], b"\x93NUMPY", "{f}");
        let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let header = String::from_utf8_lossy(&bytes[10..10 + len]).to_string();
        let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(
            compact.contains(&format!("'descr':'{dtype}'")) && compact.contains("'shape':(6,12"),
            "{f}: {header}"
        );
        let t = tch::Tensor::read_npy(out.join(f)).unwrap();
        assert_eq!(t.size(), vec![6, 12]);
    }
    let ranks: Vec<i64> = Vec::try_from(
        tch::Tensor::read_npy(out.join("head_ranks.npy"))
            .unwrap()
            .flatten(0, -1),
    )
    .unwrap();
    let mut sorted = ranks.clone();
    sorted.sort();
    assert_eq!(sorted, (0..72).collect::<Vec<_>>());
    let csv = std::fs::read_to_string(out.join("importance.csv")).unwrap();
    assert_eq!(
        csv.lines().next().unwrap(),
        "layer,head,importance,raw_importance,entropy,rank"
    );
    assert_eq!(csv.lines().count(), 73);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("importance.json")).unwrap())
            .unwrap();
    assert_eq!(json["settings"]["estimator"], "per-example");
    assert!(json["tokens"].as_i64().unwrap() > 32 * 10);
}

#[test]
fn prune_end_to_end_saves_a_model_that_reloads() {
    let tmp = tempfile::tempdir().unwrap();
    let model = minilm_fixture_dir(tmp.path());
    let out = tmp.path().join("prune");
    let v = ok(&bertology(&[
        "prune",
        "--task",
        "mrpc",
        "--device",
        "cpu",
        "--json",
        "--data-subset",
        "48",
        "--target-heads",
        "0.5",
        "--min-heads-per-layer",
        "1",
        "--timing-runs",
        "1",
        "--model",
        model.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]));
    assert_eq!(v["heads_kept"], 36);
    assert_eq!(v["stop"], "budget");
    assert!(v["max_abs_logit_diff_pruned_vs_masked"].as_f64().unwrap() <= 1e-5);
    assert_eq!(v["masked_score"], v["pruned_score"]);
    assert!(v["parameters_after"].as_i64().unwrap() < v["parameters_before"].as_i64().unwrap());
    let per_layer: Vec<i64> = v["heads_kept_per_layer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    assert!(per_layer.iter().all(|&h| h >= 1) && per_layer.iter().sum::<i64>() == 36);
    for f in [
        "head_mask.npy",
        "masking_curve.csv",
        "prune.json",
        "pruned_model/config.json",
        "pruned_model/model.safetensors",
        "pruned_model/tokenizer.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let pruned = out.join("pruned_model");
    let inspect = ok(&bertology(&[
        "inspect",
        "--json",
        "--device",
        "cpu",
        "--model",
        pruned.to_str().unwrap(),
    ]));
    assert_eq!(inspect["heads_per_layer"], v["heads_kept_per_layer"]);
    assert_eq!(inspect["parameters"], v["parameters_after"]);
    let e = ok(&bertology(&[
        "eval",
        "--task",
        "mrpc",
        "--device",
        "cpu",
        "--json",
        "--data-subset",
        "48",
        "--model",
        pruned.to_str().unwrap(),
        "--output-dir",
        tmp.path().join("ev").to_str().unwrap(),
    ]));
    assert_eq!(e["metrics"], v["pruned_metrics"]);
}

#[test]
fn prune_rejects_bad_settings_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("never");
    for (flag, value, expect) in [
        (
            "--masking-threshold",
            "1.5",
            "--masking-threshold 1.5: expected a value in (0, 1)",
        ),
        (
            "--masking-threshold",
            "0",
            "--masking-threshold 0: expected a value in (0, 1)",
        ),
        (
            "--masking-amount",
            "0",
            "--masking-amount 0: expected a value in (0, 1]",
        ),
        (
            "--metric",
            "mcc",
            "--metric mcc: task mrpc has the metrics acc, f1, acc_and_f1",
        ),
    ] {
        let e = one_line_error(&bertology(&[
            "prune",
            "--task",
            "mrpc",
            flag,
            value,
            "--output-dir",
            out.to_str().unwrap(),
        ]));
        assert!(e.contains(expect), "{e}");
    }
    assert!(!out.exists(), "no output on bad input");
    let model = minilm_fixture_dir(tmp.path());
    let e = one_line_error(&bertology(&[
        "importance",
        "--task",
        "mrpc",
        "--head-mask",
        "/no/mask.npy",
        "--model",
        model.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]));
    assert!(e.contains("--head-mask /no/mask.npy"), "{e}");
    assert!(!out.exists(), "no output on bad input");
}

#[test]
fn a_pruned_checkpoint_fine_tunes_at_its_shapes_with_heads_kept_masked() {
    let tmp = tempfile::tempdir().unwrap();
    let model = encoder_of(tmp.path(), "tiny-bert-pruned");
    let mask = tch::Tensor::ones([3, 4], (tch::Kind::Float, tch::Device::Cpu));
    let _ = mask.get(2).get(1).fill_(0.0);
    let mask_file = tmp.path().join("mask.npy");
    mask.write_npy(&mask_file).unwrap();
    let out = tmp.path().join("tuned");
    let v = ok(&bertology(&[
        "finetune",
        "--task",
        "mrpc",
        "--device",
        "cpu",
        "--json",
        "--model",
        model.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
        "--train-subset",
        "32",
        "--eval-subset",
        "16",
        "--batch-size",
        "8",
        "--max-seq-length",
        "40",
        "--epochs",
        "1",
        "--head-mask",
        mask_file.to_str().unwrap(),
    ]));
    assert_eq!(v["settings"]["steps"], 4);
    let inspect = ok(&bertology(&[
        "inspect",
        "--json",
        "--device",
        "cpu",
        "--model",
        out.to_str().unwrap(),
    ]));
    assert_eq!(inspect["heads_per_layer"], serde_json::json!([3, 2, 4]));
    let bad = tmp.path().join("bad.npy");
    tch::Tensor::ones([2, 4], (tch::Kind::Float, tch::Device::Cpu))
        .write_npy(&bad)
        .unwrap();
    let e = one_line_error(&bertology(&[
        "finetune",
        "--task",
        "mrpc",
        "--model",
        model.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
        "--head-mask",
        bad.to_str().unwrap(),
        "--max-seq-length",
        "40",
    ]));
    assert!(e.contains("bad.npy: shape [2, 4], expected [3, 4]"), "{e}");
}

#[test]
fn importance_of_a_pruned_checkpoint_records_and_fades_its_absent_heads() {
    let tmp = tempfile::tempdir().unwrap();
    // The encoder only: the 2-way MRPC head is then initialised from the seed.
    let model = encoder_of(tmp.path(), "tiny-bert-pruned");
    let out = tmp.path().join("importance");
    let v = ok(&bertology(&[
        "importance",
        "--task",
        "mrpc",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--json",
        "--model",
        model.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
        "--data-subset",
        "16",
        "--max-seq-length",
        "40",
    ]));
    assert_eq!(
        v["pruned_heads"],
        serde_json::json!({"0": [1], "1": [0, 3]})
    );
    // The pictures frame the 9 heads the model has and fade the 3 it lacks (as a prune run's
    // mask does), instead of ranking absent heads as if they were the least important.
    for picture in ["importance.svg", "entropy.svg"] {
        let svg = std::fs::read_to_string(out.join(picture)).unwrap();
        let frames = svg.matches(r##"fill="none" stroke="#000000"/>"##).count();
        assert_eq!(frames, 9, "{picture}");
        assert!(svg.contains("faded: pruned, framed: kept"), "{picture}");
    }
}
