//! Importance and entropy against the Python references (scripts/reference/anchor.py) on MiniLM
//! with the committed classifier and the first 64 MRPC dev pairs.
use crate::common::*;
use bertology::data::batch::{encode_examples, make_batches, Padding};
use bertology::importance::{compute, ranks, Estimator, HeadStats, Settings};
use bertology::model::tokenizer::TextTokenizer;
use tch::{Device, Kind, Tensor};

fn run(estimator: Estimator, batch_size: usize, padding: Padding, entropy: bool) -> HeadStats {
    run_masked(estimator, batch_size, padding, entropy, None)
}

fn run_masked(
    estimator: Estimator,
    batch_size: usize,
    padding: Padding,
    entropy: bool,
    mask: Option<&Tensor>,
) -> HeadStats {
    let mut model = minilm_with_classifier();
    model.vs.freeze();
    let examples = mrpc_dev(Some(64));
    let tok = TextTokenizer::from_dir(&model.dir, 128).unwrap();
    let encoded = encode_examples(&tok, &examples).unwrap();
    let labels: Vec<_> = examples.iter().map(|e| e.label).collect();
    let batches = make_batches(
        &encoded,
        &labels,
        batch_size,
        padding,
        tok.pad_id(),
        Device::Cpu,
    );
    let settings = Settings {
        estimator,
        layer_norm: true,
        global_norm: true,
        entropy,
    };
    compute(model.net.as_ref(), &batches, mask, settings, None).unwrap()
}

/// Within 1e-4 relative or 1e-6 absolute, element by element.
fn assert_close(name: &str, ours: &Tensor, theirs: &Tensor) {
    let a: Vec<f64> = Vec::try_from(ours.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    let b: Vec<f64> = Vec::try_from(theirs.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let ok = (x - y).abs() <= 1e-6 || (x - y).abs() <= 1e-4 * y.abs().max(x.abs());
        assert!(ok, "{name}[{i}]: ours {x} vs reference {y}");
    }
}

/// Identical ranks, except between heads whose reference values are closer than the tolerance.
fn assert_same_ranks(ours: &Tensor, theirs: &Tensor) {
    let (ro, rt) = (ranks(ours), ranks(theirs));
    let order: Vec<i64> = Vec::try_from(rt.flatten(0, -1)).unwrap();
    let mine: Vec<i64> = Vec::try_from(ro.flatten(0, -1)).unwrap();
    let vals: Vec<f64> = Vec::try_from(theirs.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    for i in 0..order.len() {
        if order[i] != mine[i] {
            // Some other head swapped with this one: their values must be within tolerance.
            let j = order.iter().position(|&r| r == mine[i]).unwrap();
            let gap = (vals[i] - vals[j]).abs();
            assert!(
                gap <= 1e-6 || gap <= 1e-4 * vals[i].abs(),
                "rank of head {i} differs ({} vs {})",
                mine[i],
                order[i]
            );
        }
    }
}

#[test]
fn anchor_estimator_matches_run_bertology_at_batch_sizes_1_and_8() {
    for bs in [1usize, 8] {
        let r = read_tensors(&fixture(&format!("importance_anchor_b{bs}.safetensors")));
        let ours = run(Estimator::Anchor, bs, Padding::Fixed(128), true);
        assert_close(
            &format!("b{bs} raw importance"),
            &ours.raw_importance,
            &r["raw_importance"],
        );
        assert_close(
            &format!("b{bs} importance"),
            &ours.importance,
            &r["importance"],
        );
        assert_close(&format!("b{bs} entropy"), &ours.entropy, &r["entropy"]);
        assert_same_ranks(&ours.importance, &r["importance"]);
        assert!(max_abs_diff(&ours.logits, &r["logits"]) < 1e-4);
    }
}

#[test]
fn per_example_estimator_matches_the_reference_and_ignores_batch_size() {
    let r = read_tensors(&fixture("importance_per_example.safetensors"));
    let b1 = run(Estimator::PerExample, 1, Padding::Longest, false);
    let b32 = run(Estimator::PerExample, 32, Padding::Longest, false);
    assert_close("per-example raw", &b32.raw_importance, &r["raw_importance"]);
    assert_close("per-example importance", &b32.importance, &r["importance"]);
    assert_same_ranks(&b32.importance, &r["importance"]);
    // Batch size 1 vs 32: within 1e-5 relative.
    let a: Vec<f64> =
        Vec::try_from(b1.raw_importance.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    let b: Vec<f64> =
        Vec::try_from(b32.raw_importance.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() <= 1e-5 * y.abs().max(1e-12),
            "batch 1 {x} vs batch 32 {y}"
        );
    }
    // The anchor's estimator does depend on the batch size (its defect), ours does not.
    let a1 = run(Estimator::Anchor, 1, Padding::Longest, false);
    let a8 = run(Estimator::Anchor, 8, Padding::Longest, false);
    assert!(max_abs_diff(&a1.raw_importance, &a8.raw_importance) > 1e-4);
}

#[test]
fn heads_masked_to_zero_leave_the_graph_without_changing_importance() {
    // Scattered heads and all of layer 2 masked, as the masking loop produces.
    let mut m = vec![1f32; 72];
    for i in [0usize, 5, 13, 14, 15, 40, 71].into_iter().chain(24..36) {
        m[i] = 0.0;
    }
    let mask = Tensor::from_slice(&m).view([6, 12]);
    for estimator in [Estimator::PerExample, Estimator::Anchor] {
        // With entropy the explicit-attention path runs and every head stays in the graph;
        // without it masked heads' attention is computed outside the graph.
        let full = run_masked(estimator, 16, Padding::Longest, true, Some(&mask));
        let fast = run_masked(estimator, 16, Padding::Longest, false, Some(&mask));
        let name = format!("{estimator:?}");
        assert_close(&name, &fast.raw_importance, &full.raw_importance);
        assert_close(&name, &fast.importance, &full.importance);
        assert!(max_abs_diff(&fast.logits, &full.logits) < 1e-5);
        // Masked heads still get their gradient (the anchor's layer norms count them).
        let raw: Vec<f32> = Vec::try_from(fast.raw_importance.flatten(0, -1)).unwrap();
        assert!(
            raw[13] > 0.0 && raw[30] > 0.0,
            "{name}: masked heads lost their gradient"
        );
    }
}
