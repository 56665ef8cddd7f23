//! Bad model inputs through the real binary: one clear line naming the file and the problem,
//! a non-zero exit, and no panic.
use crate::common::{bertology_command, fixture};
use std::path::Path;

fn bertology(args: &[&str]) -> std::process::Output {
    bertology_command(args)
        .env_remove("HF_HUB_CACHE")
        .output()
        .unwrap()
}

/// Runs `inspect --model dir` and returns its one-line error.
fn inspect_error(dir: &Path) -> String {
    let out = bertology(&[
        "inspect",
        "--device",
        "cpu",
        "--model",
        dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "stdout should be empty: {:?}",
        out.stdout
    );
    stderr
}

fn copy_tiny(to: &Path) {
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("tiny-bert").join(f), to.join(f)).unwrap();
    }
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn runs_with_no_environment_and_lists_subcommands() {
    let out = bertology_command(&["--help"]).env_clear().output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("inspect"), "{help}");
    assert!(help.contains("--device"), "{help}");
}

#[test]
fn missing_folder() {
    let e = inspect_error(Path::new("/nonexistent/model-folder"));
    assert!(
        e.contains("/nonexistent/model-folder") && e.contains("no such folder"),
        "{e}"
    );
}

#[test]
fn missing_config() {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("tiny-bert/model.safetensors"),
        d.path().join("model.safetensors"),
    )
    .unwrap();
    let e = inspect_error(d.path());
    assert!(e.contains("config.json") && e.contains("missing"), "{e}");
}

#[test]
fn malformed_config() {
    let d = tempfile::tempdir().unwrap();
    copy_tiny(d.path());
    std::fs::write(d.path().join("config.json"), "{\"hidden_size\": 32,").unwrap();
    let e = inspect_error(d.path());
    assert!(e.contains("config.json") && e.contains("malformed"), "{e}");
}

#[test]
fn unsupported_model_type() {
    let d = tempfile::tempdir().unwrap();
    copy_tiny(d.path());
    edit_config(d.path(), |v| v["model_type"] = "t5".into());
    let e = inspect_error(d.path());
    assert!(
        e.contains("config.json") && e.contains("unsupported model_type \"t5\""),
        "{e}"
    );
}

#[test]
fn weight_of_the_wrong_shape() {
    let d = tempfile::tempdir().unwrap();
    copy_tiny(d.path());
    edit_config(d.path(), |v| v["intermediate_size"] = 38.into());
    let e = inspect_error(d.path());
    // Caught before anything is allocated: the config's size against the weight that holds it.
    assert!(
        e.contains("config.json: intermediate_size is 38")
            && e.contains("model.safetensors holds encoder.layer.0.intermediate.dense.weight of shape [37, 32]"),
        "{e}"
    );
}

#[test]
fn missing_weight() {
    let d = tempfile::tempdir().unwrap();
    copy_tiny(d.path());
    // Rewrite the checkpoint without one encoder weight.
    let all = tch::Tensor::read_safetensors(fixture("tiny-bert/model.safetensors")).unwrap();
    let kept: Vec<(String, tch::Tensor)> = all
        .into_iter()
        .filter(|(k, _)| k != "bert.encoder.layer.1.output.dense.weight")
        .collect();
    tch::Tensor::write_safetensors(&kept, d.path().join("model.safetensors")).unwrap();
    let e = inspect_error(d.path());
    assert!(
        e.contains("model.safetensors")
            && e.contains("missing weight bert.encoder.layer.1.output.dense.weight"),
        "{e}"
    );
}

#[test]
fn pytorch_bin_only() {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("tiny-bert/config.json"),
        d.path().join("config.json"),
    )
    .unwrap();
    std::fs::write(d.path().join("pytorch_model.bin"), b"not really a pickle").unwrap();
    let e = inspect_error(d.path());
    assert!(
        e.contains("pytorch_model.bin")
            && e.contains("save_pretrained")
            && e.contains("safe_serialization=True"),
        "{e}"
    );
}

#[test]
fn hub_id_from_the_cache_with_offline_set() {
    let cache = tempfile::tempdir().unwrap();
    let snapshot = cache.path().join("models--org--tiny/snapshots/abc");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(cache.path().join("models--org--tiny/refs")).unwrap();
    std::fs::write(cache.path().join("models--org--tiny/refs/main"), "abc").unwrap();
    copy_tiny(&snapshot);
    let run = |model: &str| {
        bertology_command(&["inspect", "--json", "--device", "cpu", "--model", model])
            .env("HF_HUB_CACHE", cache.path())
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap()
    };
    let out = run("org/tiny");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["heads_total"], 12);
    let out = run("org/other");
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("models--org--other") && e.contains("HF_HUB_OFFLINE"),
        "{e}"
    );
}
