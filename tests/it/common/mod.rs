//! Helpers shared by the integration tests.
use bertology::data::batch::{encode_examples, make_batches, Padding};
use bertology::data::glue::{resolve_data_dir, Example, Split, Task};
use bertology::model::tokenizer::TextTokenizer;
use bertology::model::{LoadOptions, Model};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The built binary, ready for arguments (and environment changes).
pub fn bertology_command(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_bertology"));
    c.args(args);
    c
}

/// Runs the binary to completion.
pub fn bertology(args: &[&str]) -> std::process::Output {
    bertology_command(args).output().unwrap()
}

/// The JSON a successful `--json` run printed (stderr shown when it failed).
pub fn ok(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The stderr of a failed run, checked to be one line and no panic.
pub fn one_line_error(out: &std::process::Output) -> String {
    let e = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "expected failure");
    assert!(!e.contains("panicked"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    e
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests").join("fixtures").join(name)
}

pub fn read_tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// The installed all-MiniLM-L6-v2 (scripts/setup.sh puts it there; CI runs set-up first).
pub fn minilm_dir() -> PathBuf {
    let dir = root().join("models").join("all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run scripts/setup.sh",
        dir.display()
    );
    dir
}

/// MiniLM with the committed MRPC classifier fixture.
pub fn minilm_with_classifier() -> Model {
    let model = Model::load(
        &minilm_dir(),
        &LoadOptions {
            device: Device::Cpu,
            seed: 0,
            task: Some(Task::Mrpc.into()),
        },
    )
    .unwrap();
    let copied = model
        .overlay(&fixture("minilm_classifier.safetensors"))
        .unwrap();
    assert_eq!(copied.len(), 2);
    model
}

pub fn mrpc_dev(subset: Option<usize>) -> Vec<Example> {
    let dir =
        resolve_data_dir(Task::Mrpc, None, &root()).expect("MRPC data (scripts/setup.sh links it)");
    Task::Mrpc.read(&dir, Split::Dev, subset).unwrap()
}

/// Logits of `examples` in their original order.
pub fn logits_of(
    model: &Model,
    examples: &[Example],
    batch_size: usize,
    padding: Padding,
) -> Tensor {
    let tok = TextTokenizer::from_dir(&model.dir, 128).unwrap();
    let encoded = encode_examples(&tok, examples).unwrap();
    let labels: Vec<_> = examples.iter().map(|e| e.label).collect();
    let batches = make_batches(
        &encoded,
        &labels,
        batch_size,
        padding,
        tok.pad_id(),
        Device::Cpu,
    );
    let mut rows: Vec<Option<Tensor>> = (0..examples.len()).map(|_| None).collect();
    tch::no_grad(|| {
        for b in &batches {
            let out = model
                .net
                .forward(&b.inputs(), None, Default::default())
                .unwrap();
            for (row, &i) in b.indices.iter().enumerate() {
                rows[i] = Some(out.logits.get(row as i64));
            }
        }
    });
    Tensor::stack(&rows.into_iter().map(Option::unwrap).collect::<Vec<_>>(), 0)
}

/// A model folder holding MiniLM with the fixture classifier (config, weights, tokenizer), as a
/// fine-tuned checkpoint would look.
pub fn minilm_fixture_dir(into: &Path) -> PathBuf {
    let model = minilm_with_classifier();
    let dir = into.join("minilm-mrpc-fixture");
    model.save(&dir).unwrap();
    TextTokenizer::from_dir(&model.dir, 128)
        .unwrap()
        .save_files(&dir)
        .unwrap();
    dir
}

/// Batches of the first `n` MRPC dev pairs for `model`.
pub fn mrpc_batches(
    model: &Model,
    n: Option<usize>,
    batch_size: usize,
    padding: Padding,
) -> (
    bertology::data::dataset::Dataset,
    Vec<bertology::data::batch::Batch>,
) {
    let tok = TextTokenizer::from_dir(&model.dir, 128).unwrap();
    let dir = resolve_data_dir(Task::Mrpc, None, &root()).unwrap();
    let data =
        bertology::data::dataset::Dataset::load(Task::Mrpc, &dir, Split::Dev, n, &tok).unwrap();
    let batches = data.batches(batch_size, padding, Device::Cpu);
    (data, batches)
}

/// Every file and folder under `dir` with its size, modification time and mode: two equal
/// snapshots mean nothing was created, removed or rewritten.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.path().symlink_metadata().unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            out.insert(
                rel,
                format!(
                    "{} {} bytes, mtime {:?}, mode {:o}",
                    if m.is_dir() { "dir" } else { "file" },
                    m.len(),
                    mtime,
                    m.mode()
                ),
            );
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

/// What differs between two snapshots, for an assertion message.
pub fn snapshot_diff(
    before: &std::collections::BTreeMap<String, String>,
    after: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let mut diff = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => diff.push(format!("removed {k}")),
            Some(w) if w != v => diff.push(format!("changed {k}: {v} -> {w}")),
            _ => {}
        }
    }
    for k in after.keys().filter(|k| !before.contains_key(*k)) {
        diff.push(format!("created {k}"));
    }
    diff
}

/// The MRPC folder (scripts/setup.sh links it).
pub fn mrpc_dir() -> PathBuf {
    resolve_data_dir(Task::Mrpc, None, &root())
        .expect("MRPC data (scripts/setup.sh links it)")
        .canonicalize()
        .unwrap()
}

/// `T`: the tiny BERT fixture as a 2-label classifier for MRPC (its 3-way classifier cut to
/// two rows), with its tokenizer files.
pub fn tiny_classifier(into: &Path) -> PathBuf {
    let dir = into.join("T");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["vocab.txt", "tokenizer_config.json"] {
        std::fs::copy(fixture("tiny-bert").join(f), dir.join(f)).unwrap();
    }
    let tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(fixture("tiny-bert").join("model.safetensors"))
            .unwrap()
            .into_iter()
            .map(|(k, t)| {
                let t = if k.starts_with("classifier.") {
                    t.narrow(0, 0, 2).contiguous()
                } else {
                    t
                };
                (k, t)
            })
            .collect();
    Tensor::write_safetensors(&tensors, dir.join("model.safetensors")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tiny-bert").join("config.json")).unwrap(),
    )
    .unwrap();
    config["id2label"] = serde_json::json!({"0": "0", "1": "1"});
    config["label2id"] = serde_json::json!({"0": 0, "1": 1});
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    dir
}

/// Rewrites a model folder's weights through `edit`.
pub fn edit_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let path = dir.join("model.safetensors");
    let mut tensors: Vec<(String, Tensor)> = Tensor::read_safetensors(&path).unwrap();
    edit(&mut tensors);
    Tensor::write_safetensors(&tensors, &path).unwrap();
}

/// Rewrites a JSON file through `edit`.
pub fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}
