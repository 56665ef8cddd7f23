//! Data as people have it: GLUE in the hub's parquet layout (a folder or the Hugging Face
//! cache), one's own CSV / TSV / JSON Lines / parquet files, through the readers and the binary.
//! Fixtures: tests/fixtures/data/, made by scripts/reference/make_data_fixtures.py.
use crate::common::*;
use bertology::data::glue::{Example, Label, Split, Task};
use bertology::data::glue_parquet;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn data(p: &str) -> PathBuf {
    fixture("data").join(p)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Each hub config's fixture split, and the old TSV task that holds the same rows.
const CONFIGS: [(Task, Split); 11] = [
    (Task::Cola, Split::Train),
    (Task::Sst2, Split::Dev),
    (Task::Mrpc, Split::Dev),
    (Task::Mrpc, Split::Test),
    (Task::Qqp, Split::Train),
    (Task::Stsb, Split::Dev),
    (Task::Mnli, Split::Dev),
    (Task::Qnli, Split::Dev),
    (Task::Rte, Split::Dev),
    (Task::Wnli, Split::Train),
    (Task::Ax, Split::Test),
];

#[test]
fn every_glue_config_in_parquet_reads_as_its_tsv() {
    let mut configs = std::collections::BTreeSet::new();
    for (task, split) in CONFIGS {
        let tsv = task
            .read(&data("glue_tsv").join(task.folder()), split, None)
            .unwrap_or_else(|e| panic!("{task:?} TSV: {e}"));
        let (parquet, files) =
            glue_parquet::read(task, &data("glue_parquet").join(task.hub_config()), split)
                .unwrap_or_else(|e| panic!("{task:?} parquet: {e}"));
        assert!(tsv.len() >= 2, "{task:?}");
        assert_eq!(parquet, tsv, "{task:?} {split:?}");
        assert!(files[0]
            .to_string_lossy()
            .contains(&format!("{}-00000-of-", task.hub_split(split))));
        configs.insert(task.hub_config());
    }
    assert_eq!(configs.len(), 10, "all ten hub configs: {configs:?}");
    // The hub numbers MNLI's classes differently from transformers: mapped by name.
    let (mnli, _) = glue_parquet::read(Task::Mnli, &data("glue_parquet/mnli"), Split::Dev).unwrap();
    let labels: Vec<_> = mnli.iter().map(|e| e.label).collect();
    assert_eq!(
        labels,
        [
            Some(Label::Class(1)),
            Some(Label::Class(2)),
            Some(Label::Class(0))
        ]
    );
    // MRPC's dev split is two shards (snappy, then zstd with the `datasets` metadata).
    let (mrpc, files) =
        glue_parquet::read(Task::Mrpc, &data("glue_parquet/mrpc"), Split::Dev).unwrap();
    assert_eq!((mrpc.len(), files.len()), (8, 2));
    let (stsb, _) = glue_parquet::read(Task::Stsb, &data("glue_parquet/stsb"), Split::Dev).unwrap();
    assert_eq!(stsb[0].label, Some(Label::Score(4.75)));
    let (test, _) =
        glue_parquet::read(Task::Mrpc, &data("glue_parquet/mrpc"), Split::Test).unwrap();
    assert!(test.iter().all(|e: &Example| e.label.is_none()));
}

/// `bertology eval --json` with these data flags on the MiniLM MRPC fixture model; the
/// summary and predictions.csv's rows (index, label, prediction, logits).
fn eval(model: &Path, out: &Path, flags: &[&str]) -> (Value, Vec<Vec<String>>) {
    eval_env(model, out, flags, &[])
}

fn eval_env(
    model: &Path,
    out: &Path,
    flags: &[&str],
    env: &[(&str, &str)],
) -> (Value, Vec<Vec<String>>) {
    let mut args = vec![
        "eval",
        "--device",
        "cpu",
        "--json",
        "--model",
        s(model),
        "--output-dir",
        s(out),
    ];
    args.extend_from_slice(flags);
    let mut cmd = bertology_command(&args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let summary = ok(&cmd.output().unwrap());
    let mut reader = csv::Reader::from_path(out.join("predictions.csv")).unwrap();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().take(4).map(str::to_string).collect())
        .collect();
    (summary, rows)
}

const PAIR: [&str; 4] = [
    "--text-column",
    "sentence1",
    "--text-pair-column",
    "sentence2",
];

#[test]
fn the_same_mrpc_rows_in_every_format_give_identical_predictions() {
    let tmp = tempfile::tempdir().unwrap();
    let model = minilm_fixture_dir(tmp.path());
    let o = |n: &str| tmp.path().join(n);
    let (tsv, tsv_rows) = eval(
        &model,
        &o("tsv"),
        &["--task", "mrpc", "--data-dir", s(&data("glue_tsv/MRPC"))],
    );
    assert_eq!(tsv["examples"], 8);
    assert_eq!(tsv["source"]["kind"], "glue-tsv");
    let root = data("glue_parquet");
    let config = data("glue_parquet/mrpc");
    let csv = data("custom/mrpc.csv");
    let jsonl = data("custom/mrpc.jsonl");
    let parquet = data("custom/mrpc.parquet");
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("hub-root", vec!["--task", "mrpc", "--data-dir", s(&root)]),
        (
            "hub-config",
            vec!["--task", "mrpc", "--data-dir", s(&config)],
        ),
        ("csv", [&["--data-file", s(&csv)][..], &PAIR].concat()),
        ("jsonl", [&["--data-file", s(&jsonl)][..], &PAIR].concat()),
        (
            "parquet",
            [&["--data-file", s(&parquet)][..], &PAIR].concat(),
        ),
    ];
    for (name, flags) in runs {
        let (summary, rows) = eval(&model, &o(name), &flags);
        assert_eq!(rows, tsv_rows, "{name}: predictions and logits");
        assert_eq!(summary["examples"], 8, "{name}");
        if !name.starts_with("hub") {
            // A data file is scored by the custom metrics: acc as GLUE's, plus f1 and mcc.
            for k in ["acc", "f1"] {
                assert_eq!(summary["metrics"][k], tsv["metrics"][k], "{name} {k}");
            }
            assert_eq!(summary["labels"], serde_json::json!(["0", "1"]));
            assert_eq!(summary["source"]["kind"], "file");
            assert_eq!(
                summary["source"]["files"][0],
                s(&data(&format!("custom/mrpc.{name}")))
            );
        } else {
            assert_eq!(summary["metrics"], tsv["metrics"], "{name}");
            assert_eq!(summary["source"]["kind"], "parquet");
            assert_eq!(summary["source"]["config"], "mrpc");
            assert_eq!(
                summary["source"]["splits"],
                serde_json::json!(["validation"])
            );
            let files = summary["source"]["files"].as_array().unwrap();
            assert_eq!(files.len(), 2, "{name}: both shards, in order");
            assert!(files[1]
                .as_str()
                .unwrap()
                .ends_with("validation-00001-of-00002.parquet"));
        }
    }
}

/// One shard in the hub's MRPC columns, written by the parquet crate itself (an independent
/// writer from the pyarrow that made the fixtures).
fn write_mrpc_shard(
    path: &Path,
    rows: &[(&str, &str, i64)],
    offset: i32,
    compression: Compression,
) {
    use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
    let schema = parse_message_type(
        "message schema { REQUIRED BYTE_ARRAY sentence1 (UTF8); REQUIRED BYTE_ARRAY sentence2 (UTF8); REQUIRED INT64 label; REQUIRED INT32 idx; }",
    )
    .unwrap();
    let props = WriterProperties::builder()
        .set_compression(compression)
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props)).unwrap();
    let mut group = writer.next_row_group().unwrap();
    for text in [0, 1] {
        let values: Vec<ByteArray> = rows
            .iter()
            .map(|r| ByteArray::from(if text == 0 { r.0 } else { r.1 }))
            .collect();
        let mut col = group.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .unwrap();
        col.close().unwrap();
    }
    let labels: Vec<i64> = rows.iter().map(|r| r.2).collect();
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<Int64Type>()
        .write_batch(&labels, None, None)
        .unwrap();
    col.close().unwrap();
    let idx: Vec<i32> = (0..rows.len() as i32).map(|i| i + offset).collect();
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<Int32Type>()
        .write_batch(&idx, None, None)
        .unwrap();
    col.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();
}

/// The whole MRPC dev set as CSV, JSON Lines and two parquet shards in the hub's layout
/// (snappy, zstd), written here from the real TSV, gives the TSV's predictions and metrics.
/// (scripts/reference/make_data_fixtures.py --mrpc-dev makes the same files with pyarrow.)
#[test]
fn full_mrpc_dev_in_every_format_equals_tsv() {
    let tmp = tempfile::tempdir().unwrap();
    let model = minilm_fixture_dir(tmp.path());
    let examples = mrpc_dev(None);
    assert_eq!(examples.len(), 408);
    let csv_path = tmp.path().join("dev.csv");
    let mut w = csv::Writer::from_path(&csv_path).unwrap();
    w.write_record(["sentence1", "sentence2", "label"]).unwrap();
    let mut jsonl = String::new();
    for e in &examples {
        let Some(Label::Class(y)) = e.label else {
            panic!("MRPC dev is labelled")
        };
        let b = e.text_b.as_deref().unwrap();
        w.write_record([e.text_a.as_str(), b, &y.to_string()])
            .unwrap();
        jsonl +=
            &serde_json::json!({"sentence1": e.text_a, "sentence2": b, "label": y}).to_string();
        jsonl.push('\n');
    }
    w.flush().unwrap();
    let jsonl_path = tmp.path().join("dev.jsonl");
    std::fs::write(&jsonl_path, jsonl).unwrap();
    let rows: Vec<(&str, &str, i64)> = examples
        .iter()
        .map(|e| match e.label {
            Some(Label::Class(y)) => (e.text_a.as_str(), e.text_b.as_deref().unwrap(), y),
            _ => unreachable!(),
        })
        .collect();
    let hub = tmp.path().join("hub/mrpc");
    std::fs::create_dir_all(&hub).unwrap();
    write_mrpc_shard(
        &hub.join("validation-00000-of-00002.parquet"),
        &rows[..204],
        0,
        Compression::SNAPPY,
    );
    write_mrpc_shard(
        &hub.join("validation-00001-of-00002.parquet"),
        &rows[204..],
        204,
        Compression::ZSTD(Default::default()),
    );
    let (tsv, tsv_rows) = eval(&model, &tmp.path().join("tsv"), &["--task", "mrpc"]);
    let (hub_summary, hub_rows) = eval(
        &model,
        &tmp.path().join("hub-out"),
        &["--task", "mrpc", "--data-dir", s(&tmp.path().join("hub"))],
    );
    assert_eq!(hub_rows, tsv_rows, "parquet shards");
    assert_eq!(hub_summary["metrics"], tsv["metrics"]);
    for path in [&csv_path, &jsonl_path] {
        let (summary, rows) = eval(
            &model,
            &tmp.path().join("out"),
            &[&["--data-file", s(path)][..], &PAIR].concat(),
        );
        assert_eq!(rows.len(), 408);
        assert_eq!(rows, tsv_rows, "{}", path.display());
        assert_eq!(summary["metrics"]["acc"], tsv["metrics"]["acc"]);
        assert_eq!(summary["metrics"]["f1"], tsv["metrics"]["f1"]);
    }
}

/// A hub cache laid out as huggingface_hub leaves it: refs/main holds the commit (with a
/// newline), snapshots/<commit>/mrpc/ the shards.
fn hub_cache(into: &Path) -> (PathBuf, &'static str) {
    let commit = "bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c";
    let repo = into.join("hub/datasets--nyu-mll--glue");
    let config = repo.join("snapshots").join(commit).join("mrpc");
    std::fs::create_dir_all(&config).unwrap();
    for f in std::fs::read_dir(data("glue_parquet/mrpc")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, config.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), format!("{commit}\n")).unwrap();
    (into.join("hub"), commit)
}

#[test]
fn a_dataset_in_the_hub_cache_is_found_by_id_offline_and_by_revision() {
    let tmp = tempfile::tempdir().unwrap();
    let model = minilm_fixture_dir(tmp.path());
    let (cache, commit) = hub_cache(tmp.path());
    let (_, tsv_rows) = eval(
        &model,
        &tmp.path().join("tsv"),
        &["--task", "mrpc", "--data-dir", s(&data("glue_tsv/MRPC"))],
    );
    let pinned = format!("nyu-mll/glue@{commit}");
    let home = tmp.path().to_str().unwrap().to_string();
    // (dataset flag, environment, revision recorded)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        ("nyu-mll/glue", vec![("HF_HUB_CACHE", s(&cache))], "main"),
        (
            "nyu-mll/glue",
            vec![("HF_HUB_CACHE", s(&cache)), ("HF_HUB_OFFLINE", "1")],
            "main",
        ),
        (&pinned, vec![("HF_HUB_CACHE", s(&cache))], commit),
        // $HF_HOME/hub when $HF_HUB_CACHE is not set.
        ("nyu-mll/glue@main", vec![("HF_HOME", &home)], "main"),
    ];
    for (i, (id, env, revision)) in cases.into_iter().enumerate() {
        let out = tmp.path().join(format!("hub{i}"));
        let args = [
            "eval",
            "--device",
            "cpu",
            "--json",
            "--model",
            s(&model),
            "--output-dir",
            s(&out),
            "--dataset",
            id,
            "--task",
            "mrpc",
        ];
        let mut cmd = bertology_command(&args);
        for k in ["HF_HUB_CACHE", "HF_HOME", "HF_HUB_OFFLINE"] {
            cmd.env_remove(k);
        }
        cmd.envs(env);
        let summary = ok(&cmd.output().unwrap());
        assert_eq!(summary["source"]["kind"], "hub-cache", "{id}");
        assert_eq!(summary["source"]["dataset"], "nyu-mll/glue");
        assert_eq!(summary["source"]["revision"], revision);
        assert_eq!(summary["source"]["commit"], commit);
        let mut reader = csv::Reader::from_path(out.join("predictions.csv")).unwrap();
        let rows: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().take(4).map(str::to_string).collect())
            .collect();
        assert_eq!(rows, tsv_rows, "{id}");
    }
}

/// The tiny checkpoint without its classifier: an encoder to put a new head on.
fn tiny_encoder(into: &Path) -> PathBuf {
    let dir = into.join("tiny-encoder");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["vocab.txt", "tokenizer_config.json"] {
        std::fs::copy(fixture("tiny-bert").join(f), dir.join(f)).unwrap();
    }
    let all = tch::Tensor::read_safetensors(fixture("tiny-bert/model.safetensors")).unwrap();
    let encoder: Vec<_> = all
        .into_iter()
        .filter(|(k, _)| !k.starts_with("classifier."))
        .collect();
    tch::Tensor::write_safetensors(&encoder, dir.join("model.safetensors")).unwrap();
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny-bert/config.json")).unwrap())
            .unwrap();
    let obj = config.as_object_mut().unwrap();
    obj.remove("id2label");
    obj.remove("label2id");
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

#[test]
fn custom_csv_with_named_labels_through_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let encoder = tiny_encoder(tmp.path());
    let file = data("custom/sentiment.csv");
    let cols = [
        "--data-file",
        s(&file),
        "--text-column",
        "review",
        "--label-column",
        "sentiment",
        "--max-seq-length",
        "32",
        "--device",
        "cpu",
        "--json",
    ];
    let tuned = tmp.path().join("tuned");
    let names = serde_json::json!(["negative", "neutral", "positive"]);
    let ft = ok(&bertology(
        &[
            &[
                "finetune",
                "--model",
                s(&encoder),
                "--output-dir",
                s(&tuned),
                "--epochs",
                "2",
                "--batch-size",
                "8",
                "--dev-fraction",
                "0.2",
            ][..],
            &cols,
        ]
        .concat(),
    ));
    assert_eq!(ft["labels"], names);
    assert_eq!(
        (ft["train_examples"].as_u64(), ft["dev_examples"].as_u64()),
        (Some(24), Some(6))
    );
    assert_eq!(ft["source"]["kind"], "file");
    assert_eq!(ft["source"]["dev_fraction"], 0.2);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(tuned.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["id2label"]["2"], "positive",
        "the new head's classes are saved"
    );
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(tuned.join("finetune.json")).unwrap())
            .unwrap();
    assert_eq!(saved["labels"], names);

    let out = tmp.path().join("eval");
    let ev = ok(&bertology(
        &[
            &["eval", "--model", s(&tuned), "--output-dir", s(&out)][..],
            &cols,
        ]
        .concat(),
    ));
    assert_eq!(ev["labels"], names);
    assert_eq!(ev["examples"], 30);
    assert_eq!(ev["metric"], "acc");
    assert!(ev["metrics"]["mcc"].is_number() && ev["metrics"].get("f1").is_none());
    let mut reader = csv::Reader::from_path(out.join("predictions.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[4..], ["label_name", "prediction_name"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    // The file's first rows are positive, negative, neutral: sorted, those are 2, 0, 1.
    assert_eq!((&rows[0][1], &rows[0][4]), ("2", "positive"));
    assert_eq!((&rows[1][1], &rows[1][4]), ("0", "negative"));
    for r in &rows {
        assert!(names.as_array().unwrap().iter().any(|n| n == &r[5]));
    }

    let out = tmp.path().join("importance");
    let imp = ok(&bertology(
        &[
            &["importance", "--model", s(&tuned), "--output-dir", s(&out)][..],
            &cols,
        ]
        .concat(),
    ));
    assert_eq!(imp["labels"], names);
    assert_eq!(imp["source"]["files"][0], s(&file));
    assert!(out.join("head_importance.npy").is_file());

    let out = tmp.path().join("prune");
    let pr = ok(&bertology(
        &[
            &[
                "prune",
                "--model",
                s(&tuned),
                "--output-dir",
                s(&out),
                "--metric",
                "mcc",
                "--target-heads",
                "0.5",
            ][..],
            &cols,
        ]
        .concat(),
    ));
    assert_eq!(pr["labels"], names);
    assert_eq!(pr["metric"], "mcc");
    assert_eq!(pr["heads_kept"], 6);
    let pruned: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("pruned_model/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(pruned["label2id"]["neutral"], 1);
}

/// Bad inputs of every kind: a one-line error that names the problem, a failed exit, and no
/// output folder.
#[test]
fn bad_data_gives_one_line_errors_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let model = minilm_fixture_dir(tmp.path());
    let dir = tmp.path();
    let w = |name: &str, text: &[u8]| -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    };
    let csv = data("custom/mrpc.csv");
    let header_only = w("empty.csv", b"sentence1,sentence2,label\n");
    let ragged = w("ragged.csv", b"text,label\na,1\nb,0,extra\n");
    let out_of_range = w("five.csv", b"text,label\na,0\nb,5\n");
    let three_names = w("three.csv", b"text,label\na,x\nb,y\nc,z\n");
    let mixed = w(
        "mixed.jsonl",
        b"{\"text\":\"a\",\"label\":1}\n{\"text\":\"b\",\"label\":\"pos\"}\n",
    );
    let number_text = w("number.jsonl", b"{\"text\":7,\"label\":1}\n");
    let not_json = w("broken.jsonl", b"{\"text\":\"a\",\"label\":1}\n{oops\n");
    let missing_label = w("gap.csv", b"text,label\na,1\nb,\n");
    let corrupt = w("corrupt.parquet", b"PAR1 this is not parquet at all PAR1");
    let txt = w("data.txt", b"text,label\na,1\n");
    // A hub folder with a corrupt shard, one with a shard missing, one with RTE's file under MRPC.
    w(
        "hubcorrupt/mrpc/validation-00000-of-00001.parquet",
        b"garbage",
    );
    let gap = dir.join("hubgap/mrpc");
    std::fs::create_dir_all(&gap).unwrap();
    std::fs::copy(
        data("glue_parquet/mrpc/validation-00001-of-00002.parquet"),
        gap.join("validation-00001-of-00002.parquet"),
    )
    .unwrap();
    let wrong = dir.join("hubwrong/mrpc");
    std::fs::create_dir_all(&wrong).unwrap();
    std::fs::copy(
        data("glue_parquet/rte/validation-00000-of-00001.parquet"),
        wrong.join("validation-00000-of-00001.parquet"),
    )
    .unwrap();
    let cache = dir.join("emptycache");
    std::fs::create_dir_all(&cache).unwrap();

    let f = |p: &Path| vec!["--data-file".to_string(), s(p).to_string()];
    let g = |d: &str| {
        vec![
            "--task".into(),
            "mrpc".into(),
            "--data-dir".into(),
            s(&dir.join(d)).into(),
        ]
    };
    let strs = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            [f(&csv), strs(&["--text-column", "sentence"])].concat(),
            vec![
                "no column \"sentence\" for --text-column",
                "columns: sentence1, sentence2, label",
            ],
        ),
        (
            [
                f(&csv),
                strs(&["--text-column", "sentence1", "--label-column", "gold"]),
            ]
            .concat(),
            vec!["no column \"gold\"", "mrpc.csv"],
        ),
        (f(&header_only), vec!["empty.csv", "no rows"]),
        (
            f(&ragged),
            vec!["ragged.csv", "line 3", "3 fields, expected 2"],
        ),
        (
            f(&out_of_range),
            vec!["five.csv", "row 2", "label 5 is outside the classes 0..1"],
        ),
        (
            f(&three_names),
            vec!["three.csv", "needs 3 outputs", "has 2"],
        ),
        (f(&mixed), vec!["mixed.jsonl", "mixes names and numbers"]),
        (
            f(&number_text),
            vec!["number.jsonl", "row 1", "holds an integer, expected text"],
        ),
        (f(&not_json), vec!["broken.jsonl", "line 2", "not JSON"]),
        (f(&missing_label), vec!["gap.csv", "row 2", "no label"]),
        (
            f(&corrupt),
            vec!["corrupt.parquet", "not a readable parquet file"],
        ),
        (f(&txt), vec!["data.txt", "unknown data file type"]),
        (f(&dir.join("nope.csv")), vec!["nope.csv", "no such file"]),
        (
            g("hubcorrupt"),
            vec![
                "validation-00000-of-00001.parquet",
                "not a readable parquet file",
            ],
        ),
        (g("hubgap"), vec!["shard 00000 of 00002", "missing"]),
        (
            g("hubwrong"),
            vec![
                "label names entailment, not_entailment",
                "not_equivalent, equivalent",
            ],
        ),
        (
            [g("hubgap"), strs(&["--split", "test"])].concat(),
            vec!["no parquet files for the test split"],
        ),
        (
            strs(&["--task", "mrpc", "--dataset", "nyu-mll/glue"]),
            vec!["not in the Hugging Face cache", "datasets--nyu-mll--glue"],
        ),
        (strs(&["--task", "ax"]), vec!["ax has only a test split"]),
        (
            [
                f(&csv),
                strs(&["--text-column", "sentence1", "--metric", "spearmanr"]),
            ]
            .concat(),
            vec!["--metric spearmanr", "acc, f1, mcc"],
        ),
    ];
    for (i, (flags, expect)) in cases.iter().enumerate() {
        let out = dir.join(format!("out{i}"));
        let mut args: Vec<String> = strs(&[
            "eval",
            "--device",
            "cpu",
            "--model",
            s(&model),
            "--output-dir",
            s(&out),
        ]);
        args.extend(flags.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = bertology_command(&refs)
            .env("HF_HUB_CACHE", &cache)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap();
        let e = one_line_error(&run);
        for want in expect {
            assert!(e.contains(want), "case {i} {flags:?}: {e}");
        }
        assert!(!out.exists(), "case {i}: {} was written", out.display());
    }
    // A data file needs a model: there is no default for one's own data.
    let run = bertology(&["eval", "--data-file", s(&csv), "--text-column", "sentence1"]);
    assert!(one_line_error(&run).contains("--data-file needs --model"));
    // Fine-tuning on a data file needs somewhere to put the model.
    let run = bertology(&[
        "finetune",
        "--data-file",
        s(&csv),
        "--text-column",
        "sentence1",
    ]);
    assert!(one_line_error(&run).contains("--output-dir"));
}
