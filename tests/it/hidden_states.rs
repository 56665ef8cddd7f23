//! `bertology hidden-states` on every family's tiny fixture against transformers'
//! output_hidden_states (the references in FAMILIES, made by
//! scripts/reference/check_hidden_states.py fixture from the same three inputs, each run alone).
//! bertology batches the three together, so padding — right padding for the decoders — that
//! changed a real token's state would show here.
use crate::common::*;
use tch::{Kind, Tensor};

/// (model folder, reference file, first token of the first input): check_hidden_states.py's
/// FAMILIES. The first token shows each family's own pair format is used.
const FAMILIES: [(&str, &str, &str); 6] = [
    ("tiny-bert", "tiny_bert_hidden_states.safetensors", "[CLS]"),
    (
        "families/roberta",
        "families/roberta_hidden_states.safetensors",
        "<s>",
    ),
    (
        "families/distilbert",
        "families/distilbert_hidden_states.safetensors",
        "[CLS]",
    ),
    (
        "families/electra",
        "families/electra_hidden_states.safetensors",
        "[CLS]",
    ),
    ("tiny-gpt2", "tiny_gpt2_hidden_states.safetensors", "t"),
    ("tiny-gpt", "tiny_gpt_hidden_states.safetensors", "the</w>"),
];

/// The inputs of check_hidden_states.py's TEXTS, as command-line arguments.
const ARGS: [&str; 12] = [
    "--text",
    "the cat sat.",
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
    model: &str,
    dir: &std::path::Path,
    extra: &[&str],
) -> (serde_json::Value, std::collections::HashMap<String, Tensor>) {
    let model = fixture(model);
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
fn every_family_layer_and_pooling_equals_transformers() {
    for (model, file, first) in FAMILIES {
        let reference = read_tensors(&fixture(file));
        let lengths_ref = Vec::<i64>::try_from(&reference["lengths"]).unwrap();
        for pool in ["none", "cls", "mean"] {
            let tmp = tempfile::tempdir().unwrap();
            let (summary, ours) = run(model, tmp.path(), &["--pool", pool]);
            assert_eq!(
                summary["layers"],
                serde_json::json!([0, 1, 2, 3]),
                "{model}"
            );
            assert_eq!(
                Vec::<i64>::try_from(&ours["lengths"]).unwrap(),
                lengths_ref,
                "{model}: token counts differ from transformers'"
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
                let d = max_abs_diff(&ours[&name], &theirs);
                assert!(d < 1e-5, "{model} pool {pool} {name}: max |diff| {d}");
            }
            let meta: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(tmp.path().join("hidden_states.json")).unwrap(),
            )
            .unwrap();
            let ex = meta["examples"].as_array().unwrap();
            assert_eq!(ex[1]["index"], 1);
            assert_eq!(ex[0]["tokens"][0], first, "{model}");
            assert_eq!(ex[0]["text_b"], "a cat, sitting");
            for (e, &n) in ex.iter().zip(&lengths_ref) {
                assert_eq!(e["tokens"].as_array().unwrap().len() as i64, n, "{model}");
            }
        }
    }
}

#[test]
fn selected_layers_and_attentions_with_padding_zeroed() {
    let tmp = tempfile::tempdir().unwrap();
    let (summary, t) = run(
        "tiny-bert",
        tmp.path(),
        &["--layers", "3,1", "--attentions"],
    );
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
    // --task lm/mlm read text files in the other commands; here --text is the text itself.
    let gpt2 = fixture("tiny-gpt2");
    let e = one_line_error(&bertology(&[
        "hidden-states",
        "--device",
        "cpu",
        "--model",
        gpt2.to_str().unwrap(),
        "--task",
        "lm",
        "--output-dir",
        tmp.path().to_str().unwrap(),
    ]));
    assert!(
        e.contains("--task lm") && e.contains("--text \"...\" (without --task)"),
        "{e}"
    );
    assert!(!tmp.path().join("hidden_states.safetensors").exists());
}
