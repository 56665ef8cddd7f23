//! `bertology hidden-states` on the tiny BERT fixture against transformers' output_hidden_states
//! (tests/fixtures/tiny_bert_hidden_states.safetensors, made by
//! scripts/reference/check_hidden_states.py fixture from the same three inputs).
mod common;
use common::*;
use tch::{Kind, Tensor};

/// The inputs of check_hidden_states.py's TEXTS, as command-line arguments.
const ARGS: [&str; 12] = [
    "--text",
    "the cat sat on the mat.",
    "--text-pair",
    "a cat, sitting",
    "--text",
    "hello world",
    "--text-pair",
    "",
    "--text",
    "no",
    "--text-pair",
    "yes (maybe)",
];

fn run(
    dir: &std::path::Path,
    extra: &[&str],
) -> (serde_json::Value, std::collections::HashMap<String, Tensor>) {
    let model = fixture("tiny-bert");
    let out = dir.to_str().unwrap();
    let mut args = vec![
        "hidden-states",
        "--device",
        "cpu",
        "--model",
        model.to_str().unwrap(),
        "--output-dir",
        out,
        "--json",
    ];
    args.extend(ARGS);
    args.extend(extra);
    let summary = ok(&bertology(&args));
    (
        summary,
        read_tensors(&dir.join("hidden_states.safetensors")),
    )
}

#[test]
fn every_layer_and_pooling_equals_transformers() {
    let reference = read_tensors(&fixture("tiny_bert_hidden_states.safetensors"));
    for pool in ["none", "cls", "mean"] {
        let tmp = tempfile::tempdir().unwrap();
        let (summary, ours) = run(tmp.path(), &["--pool", pool]);
        assert_eq!(summary["layers"], serde_json::json!([0, 1, 2, 3]));
        assert_eq!(
            Vec::<i64>::try_from(&ours["lengths"]).unwrap(),
            Vec::<i64>::try_from(&reference["lengths"]).unwrap()
        );
        let lengths = reference["lengths"].to_kind(Kind::Float).unsqueeze(-1);
        for i in 0..4 {
            let name = format!("hidden_states.{i}");
            // The reference is zero-padded, so its sum over positions is the sum over tokens.
            let all = &reference[&name];
            let theirs = match pool {
                "cls" => all.select(1, 0),
                "mean" => all.sum_dim_intlist(1, false, Kind::Float) / &lengths,
                _ => all.shallow_clone(),
            };
            let theirs = &theirs;
            let d = max_abs_diff(&ours[&name], theirs);
            assert!(d < 1e-5, "pool {pool} {name}: max |diff| {d}");
        }
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(tmp.path().join("hidden_states.json")).unwrap(),
        )
        .unwrap();
        let ex = &meta["examples"];
        assert_eq!(ex[1]["index"], 1);
        assert_eq!(ex[0]["tokens"][0], "[CLS]");
        assert_eq!(ex[0]["tokens"][1], "t");
        assert_eq!(ex[0]["text_b"], "a cat, sitting");
    }
}

#[test]
fn selected_layers_and_attentions_with_padding_zeroed() {
    let tmp = tempfile::tempdir().unwrap();
    let (summary, t) = run(tmp.path(), &["--layers", "3,1", "--attentions"]);
    assert_eq!(summary["layers"], serde_json::json!([1, 3]));
    assert!(!t.contains_key("hidden_states.0") && t.contains_key("hidden_states.3"));
    let lengths: Vec<i64> = Vec::try_from(&t["lengths"]).unwrap();
    let longest = *lengths.iter().max().unwrap();
    for l in 0..3 {
        let a = &t[&format!("attentions.{l}")];
        assert_eq!(a.size(), [3, 4, longest, longest]);
        // Real query rows sum to 1 over real keys; padding rows and columns are zero.
        for (row, &n) in lengths.iter().enumerate() {
            let x = a.get(row as i64);
            let sums = x.narrow(1, 0, n).sum_dim_intlist(-1, false, Kind::Double);
            assert!((sums - 1.0).abs().max().double_value(&[]) < 1e-5);
            let padded = x.sum(Kind::Double).double_value(&[]) - (4 * n) as f64;
            assert!(
                padded.abs() < 1e-4,
                "layer {l} row {row}: padding carries weight"
            );
        }
    }
    let mask = &t["attention_mask"];
    assert_eq!(
        mask.sum(Kind::Int64).int64_value(&[]),
        lengths.iter().sum::<i64>()
    );
}

#[test]
fn bad_layers_and_pair_counts_are_one_line_errors() {
    let model = fixture("tiny-bert");
    let tmp = tempfile::tempdir().unwrap();
    let base = [
        "hidden-states",
        "--device",
        "cpu",
        "--model",
        model.to_str().unwrap(),
        "--output-dir",
        tmp.path().to_str().unwrap(),
    ];
    let e = one_line_error(&bertology(
        &[&base[..], &["--text", "a b", "--layers", "9"]].concat(),
    ));
    assert!(
        e.contains("--layers 9") && e.contains("0 (embeddings) to 3"),
        "{e}"
    );
    let e = one_line_error(&bertology(
        &[
            &base[..],
            &["--text", "a", "--text", "b", "--text-pair", "c"],
        ]
        .concat(),
    ));
    assert!(e.contains("--text-pair"), "{e}");
    assert!(!tmp.path().join("hidden_states.safetensors").exists());
}
