//! `bertology eval` against transformers' predictions on all 408 MRPC dev pairs.
use crate::common::*;
use bertology::data::batch::Padding;

#[test]
fn predictions_and_metrics_equal_transformers_on_mrpc_dev() {
    let tmp = tempfile::tempdir().unwrap();
    let model = minilm_fixture_dir(tmp.path());
    let out = tmp.path().join("eval");
    let run = bertology(&[
        "eval",
        "--task",
        "mrpc",
        "--device",
        "cpu",
        "--quiet",
        "--model",
        model.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("minilm_mrpc_dev.json")).unwrap())
            .unwrap();
    let ours: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(ours["examples"], 408);
    for k in ["acc", "f1", "acc_and_f1"] {
        let (a, b) = (
            ours["metrics"][k].as_f64().unwrap(),
            reference[k].as_f64().unwrap(),
        );
        assert!((a - b).abs() <= 1e-6, "{k}: ours {a} vs transformers {b}");
    }
    let theirs: Vec<i64> = Vec::try_from(
        read_tensors(&fixture("minilm_mrpc_dev.safetensors"))["predictions"].shallow_clone(),
    )
    .unwrap();
    let mut reader = csv::Reader::from_path(out.join("predictions.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 408);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0].parse::<usize>().unwrap(), i);
        assert_eq!(row[2].parse::<i64>().unwrap(), theirs[i], "prediction {i}");
    }
}

#[test]
fn length_bucketing_and_fixed_padding_agree() {
    let model = minilm_with_classifier();
    let examples = mrpc_dev(None);
    let bucketed = logits_of(&model, &examples, 32, Padding::Longest);
    let fixed = logits_of(&model, &examples, 32, Padding::Fixed(128));
    assert!(max_abs_diff(&bucketed, &fixed) <= 1e-4);
    assert!(bucketed.argmax(-1, false).equal(&fixed.argmax(-1, false)));
}

#[test]
fn unlabelled_test_split_and_bad_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let model = minilm_fixture_dir(tmp.path());
    let out = tmp.path().join("eval-test");
    let run = bertology(&[
        "eval",
        "--task",
        "mrpc",
        "--split",
        "test",
        "--data-subset",
        "10",
        "--device",
        "cpu",
        "--json",
        "--model",
        model.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v["examples"], 10);
    assert_eq!(v["metrics"], serde_json::json!({}));
    let csv = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    assert_eq!(csv.lines().count(), 11);

    let run = bertology(&[
        "eval",
        "--task",
        "mrpc",
        "--model",
        model.to_str().unwrap(),
        "--data-dir",
        "/no/such/MRPC",
    ]);
    assert!(!run.status.success());
    let e = String::from_utf8_lossy(&run.stderr);
    assert!(
        e.contains("--data-dir /no/such/MRPC") && e.lines().count() == 1,
        "{e}"
    );
    let run = bertology(&[
        "eval",
        "--task",
        "mrpc",
        "--model",
        model.to_str().unwrap(),
        "--max-seq-length",
        "1000",
    ]);
    let e = String::from_utf8_lossy(&run.stderr);
    assert!(
        e.contains("--max-seq-length 1000") && e.contains("512 tokens"),
        "{e}"
    );
}

/// --verbose adds the model's load report to stderr; without it, stderr stays empty.
#[test]
fn verbose_prints_the_load_report() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_classifier(tmp.path());
    let run = |verbose: bool| {
        let mut args = vec![
            "eval",
            "--device",
            "cpu",
            "--model",
            model.to_str().unwrap(),
            "--task",
            "mrpc",
            "--data-dir",
        ];
        let data = mrpc_dir();
        let data = data.to_str().unwrap().to_string();
        let out_dir = tmp.path().join("out");
        let out_dir = out_dir.to_str().unwrap().to_string();
        args.extend([
            data.as_str(),
            "--data-subset",
            "4",
            "--max-seq-length",
            "32",
        ]);
        args.extend(["--output-dir", out_dir.as_str()]);
        if verbose {
            args.insert(0, "--verbose");
        }
        let out = bertology(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let loud = run(true);
    assert!(
        loud.contains(&format!("loaded {}", model.display()))
            && loud.contains("heads per layer [4, 4, 4]")
            && loud.contains("parameters"),
        "{loud}"
    );
    assert_eq!(run(false), "");
}
