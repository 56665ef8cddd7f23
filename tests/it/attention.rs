//! `bertology attention`: statistics and the map of heads against the Python reference
//! (scripts/reference/attention_stats.py: transformers' attentions and numpy) on MiniLM and the
//! first 64 MRPC dev pairs, and the command end to end.
use crate::common::*;
use bertology::attention::{analyse, stats::NAMES, token_classes};
use bertology::data::batch::Padding;
use bertology::model::tokenizer::TextTokenizer;
use tch::Kind;

#[test]
fn statistics_and_distances_equal_the_python_reference() {
    let model = minilm_with_classifier();
    // Batches of 8 padded to their longest: the reference runs each pair alone, so any
    // padding that leaked into a statistic would show here.
    let (data, batches) = mrpc_batches(&model, Some(64), 8, Padding::Longest);
    let tok = TextTokenizer::from_dir(&model.dir, 128).unwrap();
    let classes = token_classes(&tok, &data.encoded).unwrap();
    assert!(classes
        .iter()
        .all(|c| c.separator.iter().filter(|&&s| s).count() == 2));
    let a = analyse(
        model.net.as_ref(),
        &batches,
        &classes,
        false,
        Some(16),
        None,
    )
    .unwrap();
    let reference = read_tensors(&fixture("attention_stats_minilm.safetensors"));
    assert_eq!(
        a.stats.tokens as f64,
        reference["tokens"].double_value(&[0])
    );
    let theirs: Vec<Vec<Vec<f64>>> =
        Vec::try_from(reference["statistics"].to_kind(Kind::Double)).unwrap();
    assert_eq!(
        (theirs.len(), theirs[0].len(), theirs[0][0].len()),
        (8, 6, 12)
    );
    for ((name, ours), theirs) in NAMES.iter().zip(&a.stats.values).zip(&theirs) {
        for (l, (o, t)) in ours.iter().zip(theirs).enumerate() {
            for (h, (x, y)) in o.iter().zip(t).enumerate() {
                assert!((x - y).abs() < 1e-5, "{name} {l}-{h}: ours {x} vs {y}");
            }
        }
    }
    let d = a.distances.unwrap();
    let theirs: Vec<Vec<f64>> =
        Vec::try_from(reference["distances"].to_kind(Kind::Double)).unwrap();
    assert_eq!((d.len(), theirs.len()), (72, 72));
    for (i, (o, t)) in d.iter().zip(&theirs).enumerate() {
        for (j, (x, y)) in o.iter().zip(t).enumerate() {
            assert!((x - y).abs() < 1e-5, "distance {i},{j}: ours {x} vs {y}");
        }
    }
}

fn rows(path: &std::path::Path) -> Vec<csv::StringRecord> {
    csv::Reader::from_path(path)
        .unwrap()
        .records()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn command_writes_rows_with_importance_ranks_pictures_and_report() {
    let tmp = tempfile::tempdir().unwrap();
    let model = minilm_fixture_dir(tmp.path());
    // An importance run folder: importance rising with the flat head index, so rank 0 is 5-11.
    let imp = tmp.path().join("imp");
    std::fs::create_dir_all(&imp).unwrap();
    tch::Tensor::arange(72, (Kind::Float, tch::Device::Cpu))
        .view([6, 12])
        .f_div_scalar(71.0)
        .unwrap()
        .write_npy(imp.join("head_importance.npy"))
        .unwrap();
    let out = tmp.path().join("attn");
    let summary = ok(&bertology(&[
        "attention",
        "--device",
        "cpu",
        "--task",
        "mrpc",
        "--model",
        model.to_str().unwrap(),
        "--data-subset",
        "12",
        "--importance",
        imp.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(summary["examples"], 12);
    let r = rows(&out.join("attention_heads.csv"));
    assert_eq!(r.len(), 72);
    let last = &r[71];
    assert_eq!((&last[0], &last[1], &last[11]), ("5", "11", "0"));
    // Shares are fractions; entropy is at most the log of the longest input.
    for row in &r {
        for c in 2..8 {
            let v: f64 = row[c].parse().unwrap();
            assert!((0.0..=1.0 + 1e-6).contains(&v), "{row:?}");
        }
        let e: f64 = row[8].parse().unwrap();
        assert!(e >= 0.0 && e <= 128f64.ln());
    }
    let rho = summary["findings"]["importance"]["spearman"]["entropy"]
        .as_f64()
        .unwrap();
    assert!((-1.0..=1.0).contains(&rho));
    for name in NAMES {
        for ext in ["png", "svg"] {
            let p = out.join(format!("attention_{name}.{ext}"));
            assert!(
                std::fs::metadata(&p).unwrap().len() > 1000,
                "{}",
                p.display()
            );
        }
    }
    let map = image::open(out.join("head_map.png")).unwrap().to_rgb8();
    let coloured = map.pixels().filter(|p| p[0].abs_diff(p[2]) > 60).count();
    assert!(coloured > 2000, "the map has {coloured} coloured pixels");
    assert_eq!(rows(&out.join("head_map.csv")).len(), 72);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("Spearman ρ = ") && md.contains("heads put more than half"));
    assert!(md.contains("the first token ([CLS])") && md.contains("separator tokens ([SEP])"));
    assert!(md.contains("![head_map.png](head_map.png)"));
}

#[test]
fn bad_importance_folders_and_examples_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("tiny-bert");
    let out = tmp.path().join("out");
    let base = [
        "attention",
        "--device",
        "cpu",
        "--model",
        model.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ];
    let e = one_line_error(&bertology(
        &[
            &base[..],
            &[
                "--text",
                "a b",
                "--importance",
                tmp.path().to_str().unwrap(),
            ],
        ]
        .concat(),
    ));
    assert!(
        e.contains("--importance") && e.contains("head_importance.npy"),
        "{e}"
    );
    tch::Tensor::ones([2, 2], (Kind::Float, tch::Device::Cpu))
        .write_npy(tmp.path().join("head_importance.npy"))
        .unwrap();
    let e = one_line_error(&bertology(
        &[
            &base[..],
            &[
                "--text",
                "a b",
                "--importance",
                tmp.path().to_str().unwrap(),
            ],
        ]
        .concat(),
    ));
    assert!(e.contains("[2, 2]") && e.contains("[3, 4]"), "{e}");
    let missing = tmp.path().join("no-such-run");
    let e = one_line_error(&bertology(
        &[
            &base[..],
            &["--text", "a b", "--importance", missing.to_str().unwrap()],
        ]
        .concat(),
    ));
    assert!(e.contains("no-such-run: no such folder"), "{e}");
    let e = one_line_error(&bertology(
        &[&base[..], &["--text", "a", "--text", "b"]].concat(),
    ));
    assert!(e.contains("one example"), "{e}");
    // A map setting without the map is a contradiction, not something to ignore.
    let e = one_line_error(&bertology(
        &[
            &base[..],
            &["--text", "a b", "--no-map", "--map-queries", "4"],
        ]
        .concat(),
    ));
    assert!(e.contains("--no-map") && e.contains("--map-queries"), "{e}");
    let e = one_line_error(&bertology(
        &[
            &base[..],
            &[
                "--task",
                "mrpc",
                "--example",
                "100000",
                "--max-seq-length",
                "40",
            ],
        ]
        .concat(),
    ));
    assert!(e.contains("--example 100000"), "{e}");
    assert!(!out.join("attention.html").exists());
}

#[test]
fn viewer_page_of_a_text_holds_its_tokens_and_every_head() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("tiny-bert");
    let summary = ok(&bertology(&[
        "attention",
        "--device",
        "cpu",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "the cat.",
        "--text-pair",
        "a dog",
        "--output-dir",
        tmp.path().to_str().unwrap(),
        "--json",
    ]));
    let tokens: Vec<&str> = summary["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tokens,
        [
            "[CLS]", "t", "##h", "##e", "c", "##a", "##t", ".", "[SEP]", "a", "d", "##o", "##g",
            "[SEP]"
        ]
    );
    let html = std::fs::read_to_string(tmp.path().join("attention.html")).unwrap();
    let data = page_data(&html);
    assert_eq!(
        (data["layers"].as_u64(), data["heads"].as_u64()),
        (Some(3), Some(4))
    );
    // Every head's rows are distributions over the 14 tokens (in thousandths).
    for l in 0..3 {
        for h in 0..4 {
            let w = data["attn"][l][h].as_array().unwrap();
            assert_eq!(w.len(), 14 * 14);
            for row in w.chunks(14) {
                let s: u64 = row.iter().map(|v| v.as_u64().unwrap()).sum();
                assert!(
                    (993..=1007).contains(&s),
                    "layer {l} head {h}: row sums to {s}"
                );
            }
        }
    }
}

/// The JSON data embedded in a viewer page.
fn page_data(html: &str) -> serde_json::Value {
    let data = html
        .split("<script type=\"application/json\" id=\"data\">")
        .nth(1)
        .and_then(|s| s.split("</script>").next())
        .unwrap();
    serde_json::from_str(data).unwrap()
}

/// Tiny GPT-2 over 8 MRPC dev pairs: a decoder's run says it is causal, leaves "next token"
/// unmeasured for every head (null in JSON, empty in the CSV, no heatmap) while measuring the
/// rest, and its statistics are those of attention rows that put no weight on later tokens.
#[test]
fn decoder_statistics_are_causal_and_leave_the_next_token_unmeasured() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("tiny-gpt2");
    let data = [
        "--device",
        "cpu",
        "--task",
        "mrpc",
        "--model",
        model.to_str().unwrap(),
        "--data-subset",
        "8",
        "--max-seq-length",
        "16",
    ];
    let out = tmp.path().join("attn");
    let summary = ok(&bertology(
        &[
            &["attention"][..],
            &data[..],
            &["--output-dir", out.to_str().unwrap(), "--json"],
        ]
        .concat(),
    ));
    assert_eq!(summary["causal"], true);
    assert!(summary["next_token"]
        .as_str()
        .unwrap()
        .starts_with("not measured"));
    assert_eq!(
        summary["findings"]["most_weight_on"]["next"]["measured"],
        false
    );
    let stats = &summary["statistics"];
    for l in 0..3 {
        for h in 0..4 {
            assert!(stats["next"][l][h].is_null(), "next {l}-{h}");
            for name in NAMES.iter().filter(|n| **n != "next") {
                assert!(stats[name][l][h].is_f64(), "{name} {l}-{h}");
            }
        }
    }
    let next = NAMES.iter().position(|n| *n == "next").unwrap() + 2;
    let r = rows(&out.join("attention_heads.csv"));
    assert_eq!(r.len(), 12);
    for row in &r {
        assert_eq!(&row[next], "", "{row:?}");
        for c in (2..10).filter(|&c| c != next) {
            let v: f64 = row[c].parse().unwrap();
            assert!(v >= 0.0, "{row:?}");
        }
    }
    assert!(!out.join("attention_next.png").exists());
    assert!(out.join("attention_previous.png").exists());
    // GPT-2 has no [CLS] and no separators: the report names what the inputs hold.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("the next token: not measured (causal model)"),
        "{md}"
    );
    assert!(md.contains("the first token (a text token: no start token)"));
    assert!(md.contains("separator tokens (the tokenizer adds none)"));
    assert!(!md.contains("[CLS] /") && !md.contains("[SEP]"), "{md}");

    // The same inputs' attention rows: nothing above the diagonal, and the run's previous-token
    // and self statistics are their means over real query tokens.
    let hs = tmp.path().join("hs");
    ok(&bertology(
        &[
            &["hidden-states"][..],
            &data[..],
            &[
                "--attentions",
                "--layers",
                "0",
                "--output-dir",
                hs.to_str().unwrap(),
                "--json",
            ],
        ]
        .concat(),
    ));
    let t = read_tensors(&hs.join("hidden_states.safetensors"));
    let mask = t["attention_mask"].to_kind(Kind::Double);
    let n = mask.size()[1];
    assert_eq!(
        mask.sum(Kind::Double).double_value(&[]),
        summary["tokens"].as_f64().unwrap()
    );
    // Uniform attention over the keys a query sees: ln(i + 1) at query i, not ln(length).
    let lengths: Vec<i64> = Vec::try_from(mask.sum_dim_intlist(1, false, Kind::Int64)).unwrap();
    let uniform: f64 = lengths
        .iter()
        .flat_map(|&len| (1..=len).map(|k| (k as f64).ln()))
        .sum::<f64>()
        / lengths.iter().sum::<i64>() as f64;
    let reported = summary["uniform_entropy"].as_f64().unwrap();
    assert!((uniform - reported).abs() < 1e-9, "{uniform} vs {reported}");
    let with_previous = mask.narrow(1, 1, n - 1) * mask.narrow(1, 0, n - 1);
    for l in 0..3 {
        let a = t[&format!("attentions.{l}")].to_kind(Kind::Double);
        assert_eq!(a.size(), [8, 4, n, n]);
        let later = a.triu(1).abs().max().double_value(&[]);
        assert_eq!(later, 0.0, "layer {l}: weight on a later token");
        let previous = (a.diagonal(-1, -2, -1) * with_previous.unsqueeze(1)).sum_dim_intlist(
            [0, 2].as_slice(),
            false,
            Kind::Double,
        ) / with_previous.sum(Kind::Double);
        let itself = (a.diagonal(0, -2, -1) * mask.unsqueeze(1)).sum_dim_intlist(
            [0, 2].as_slice(),
            false,
            Kind::Double,
        ) / mask.sum(Kind::Double);
        for h in 0..4 {
            for (name, m) in [("previous", &previous), ("self", &itself)] {
                let (x, y) = (
                    m.double_value(&[h]),
                    stats[name][l][h as usize].as_f64().unwrap(),
                );
                assert!((x - y).abs() < 1e-5, "{name} {l}-{h}: rows {x} vs run {y}");
            }
        }
    }
}

/// The viewer on a decoder: every head's rows put no weight on later tokens (so no line goes
/// there), the page says the model is causal, and GPT-2's tokens start without [CLS].
#[test]
fn viewer_page_of_a_decoder_draws_no_weight_on_later_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("tiny-gpt2");
    let summary = ok(&bertology(&[
        "attention",
        "--device",
        "cpu",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "the cat sat.",
        "--text-pair",
        "a cat, sitting",
        "--output-dir",
        tmp.path().to_str().unwrap(),
        "--json",
    ]));
    let tokens = summary["tokens"].as_array().unwrap();
    let n = tokens.len();
    assert_eq!(tokens[0], "t");
    assert_eq!(n, 15);
    let html = std::fs::read_to_string(tmp.path().join("attention.html")).unwrap();
    let data = page_data(&html);
    assert_eq!(data["causal"], true);
    assert!(html.contains("A causal model (decoder)"));
    for l in 0..3 {
        for h in 0..4 {
            let w = data["attn"][l][h].as_array().unwrap();
            assert_eq!(w.len(), n * n);
            for (i, row) in w.chunks(n).enumerate() {
                let v: Vec<u64> = row.iter().map(|v| v.as_u64().unwrap()).collect();
                assert!(v[i + 1..].iter().all(|&x| x == 0), "{l}-{h} row {i}: {v:?}");
                let s: u64 = v.iter().sum();
                assert!((993..=1007).contains(&s), "{l}-{h} row {i} sums to {s}");
            }
        }
    }
}
