//! Masking and physical pruning on MiniLM with the committed classifier and real MRPC dev data.
use crate::common::*;
use bertology::data::batch::Padding;
use bertology::eval::predict;
use bertology::importance::{Estimator, Settings};
use bertology::masking::{mask_heads, Goal, MaskingSettings, Order, StopReason};
use bertology::model::{LoadOptions, Model};
use bertology::pruning::prune;
use tch::{Device, Kind, Tensor};

fn mask_with(zeros: &[(i64, i64)]) -> Tensor {
    let m = Tensor::ones([6, 12], (Kind::Float, Device::Cpu));
    for &(l, h) in zeros {
        let _ = m.get(l).get(h).fill_(0.0);
    }
    m
}

fn settings(goal: Goal, order: Order, min_heads: usize) -> MaskingSettings {
    MaskingSettings {
        goal,
        amount: 0.1,
        min_heads_per_layer: min_heads,
        reestimate: true,
        order,
        unit_heads: 1,
        uniform_heads: false,
        seed: 7,
        importance: Settings {
            estimator: Estimator::PerExample,
            layer_norm: true,
            global_norm: true,
            entropy: false,
        },
    }
}

#[test]
fn pruned_logits_equal_masked_logits_on_mrpc_dev() {
    let model = minilm_with_classifier();
    let (_, batches) = mrpc_batches(&model, None, 64, Padding::Longest);
    let all_of_layer_2: Vec<(i64, i64)> = (0..12).map(|h| (2, h)).chain([(3, 4)]).collect();
    for zeros in [
        vec![(0, 3)],
        vec![(1, 0), (1, 2), (1, 5), (1, 7), (4, 1), (4, 11)],
        all_of_layer_2,
    ] {
        let mask = mask_with(&zeros);
        let pruned = prune(&model, &mask).unwrap();
        let masked = predict(model.net.as_ref(), &batches, Some(&mask), None).unwrap();
        let physical = predict(pruned.net.as_ref(), &batches, None, None).unwrap();
        let d = max_abs_diff(&masked, &physical);
        assert!(d <= 1e-5, "mask {zeros:?}: pruned vs masked differ by {d}");
        let kept: i64 = pruned.net.heads_per_layer().iter().sum();
        assert_eq!(kept, 72 - zeros.len() as i64);
        assert!(pruned.num_parameters() < model.num_parameters());
    }
}

#[test]
fn saved_pruned_model_reloads_at_its_shapes_and_prunes_again() {
    let model = minilm_with_classifier();
    let (_, batches) = mrpc_batches(&model, Some(64), 32, Padding::Longest);
    let mut zeros: Vec<(i64, i64)> = (0..12).map(|h| (5, h)).collect();
    zeros.extend([(0, 0), (0, 11), (2, 6)]);
    let pruned = prune(&model, &mask_with(&zeros)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    pruned.save(dir.path()).unwrap();
    let reloaded = Model::load(
        dir.path(),
        &LoadOptions {
            device: Device::Cpu,
            seed: 0,
            task: None,
        },
    )
    .unwrap();
    assert_eq!(reloaded.net.heads_per_layer(), vec![10, 12, 11, 12, 12, 0]);
    assert!(reloaded.report.initialised.is_empty());
    let a = predict(pruned.net.as_ref(), &batches, None, None).unwrap();
    let b = predict(reloaded.net.as_ref(), &batches, None, None).unwrap();
    assert!(max_abs_diff(&a, &b) <= 1e-6);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["pruned_heads"]["0"], serde_json::json!([0, 11]));
    assert_eq!(config["pruned_heads"]["5"].as_array().unwrap().len(), 12);
    // Pruning the reloaded model further merges original head indices.
    let again = prune(&reloaded, &mask_with(&[(0, 0), (0, 5), (1, 1)])).unwrap();
    assert_eq!(again.config.pruned_heads().unwrap()[&0], vec![0, 5, 11]);
    assert_eq!(again.net.heads_per_layer(), vec![9, 11, 11, 12, 12, 0]);
    let masked = predict(
        model.net.as_ref(),
        &batches,
        Some(&mask_with(&[zeros.clone(), vec![(0, 5), (1, 1)]].concat())),
        None,
    )
    .unwrap();
    let physical = predict(again.net.as_ref(), &batches, None, None).unwrap();
    assert!(max_abs_diff(&masked, &physical) <= 1e-5);
}

#[test]
fn anchor_estimator_replicates_run_bertology_masking() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("masking_anchor.json")).unwrap())
            .unwrap();
    let mut model = minilm_with_classifier();
    model.vs.freeze();
    let (data, batches) = mrpc_batches(&model, Some(64), 1, Padding::Fixed(128));
    let mut s = settings(Goal::Threshold(0.9), Order::Importance, 0);
    s.importance.estimator = Estimator::Anchor;
    let r = mask_heads(model.net.as_ref(), &data, &batches, "acc", s, None).unwrap();
    let theirs: Vec<(u64, f64)> = reference["curve"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    let ours: Vec<(u64, f64)> = r
        .curve
        .iter()
        .map(|s| (s.heads_kept as u64, s.score))
        .collect();
    assert_eq!(
        ours.len(),
        theirs.len(),
        "curves: ours {ours:?} vs anchor {theirs:?}"
    );
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a.0, b.0, "heads kept: ours {ours:?} vs anchor {theirs:?}");
        assert!(
            (a.1 - b.1).abs() < 1e-9,
            "scores: ours {ours:?} vs anchor {theirs:?}"
        );
    }
    let mask: Vec<Vec<f32>> = Vec::try_from(r.mask).unwrap();
    let theirs_mask: Vec<Vec<f32>> = reference["final_mask"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    assert_eq!(mask, theirs_mask);
}

#[test]
fn masking_loop_stops_at_threshold_runs_out_honours_minimum_and_budget() {
    let mut model = minilm_with_classifier();
    model.vs.freeze();
    let (data, batches) = mrpc_batches(&model, Some(32), 32, Padding::Longest);
    let run = |s: MaskingSettings| {
        mask_heads(model.net.as_ref(), &data, &batches, "acc", s, None).unwrap()
    };
    let count = |m: &Tensor| m.sum(Kind::Float).double_value(&[]) as usize;

    // Runs out of heads: every head masked, then nothing left to mask.
    let all = run(settings(Goal::Threshold(1e-9), Order::Importance, 0));
    assert_eq!(all.stop, StopReason::NoHeadsLeft);
    assert_eq!(count(&all.mask), 0);
    let kept: Vec<usize> = all.curve.iter().map(|s| s.heads_kept).collect();
    assert_eq!(kept, vec![72, 65, 58, 51, 44, 37, 30, 23, 16, 9, 2, 0]);

    // Stops at the threshold with the last passing mask: pick a threshold just above the lowest
    // score of the full curve; the run follows the same path until its first step below it.
    let orig = all.original_score;
    let (low_step, low) = all
        .curve
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, s)| (i, s.score))
        .fold((0, f64::MAX), |a, b| if b.1 < a.1 { b } else { a });
    let t = (low + 1e-9) / orig;
    let stopped = run(settings(Goal::Threshold(t), Order::Importance, 0));
    assert_eq!(stopped.stop, StopReason::Threshold);
    let last = stopped.curve.last().unwrap();
    assert!(!last.accepted && last.score < t * orig);
    assert!(stopped.curve.len() - 1 <= low_step);
    let passing = &stopped.curve[stopped.curve.len() - 2];
    assert!(passing.accepted);
    assert_eq!(count(&stopped.mask), passing.heads_kept);
    assert_eq!(stopped.final_score, passing.score);
    // The same mask comes out of budget mode stopped at that head count.
    let budget_same = run(settings(
        Goal::KeepHeads(passing.heads_kept),
        Order::Importance,
        0,
    ));
    assert!(budget_same.mask.equal(&stopped.mask));

    // Minimum of heads per layer.
    let min2 = run(settings(Goal::Threshold(1e-9), Order::Importance, 2));
    assert_eq!(min2.stop, StopReason::NoHeadsLeft);
    let per_layer: Vec<f64> = Vec::try_from(
        min2.mask
            .sum_dim_intlist(1, false, Kind::Float)
            .to_kind(Kind::Double),
    )
    .unwrap();
    assert_eq!(per_layer, vec![2.0; 6]);

    // Budget mode keeps exactly round(F·N) heads.
    for (f, want) in [(0.5, 36), (0.3, 22), (0.9, 65)] {
        let r = run(settings(
            Goal::KeepHeads((f * 72.0f64).round() as usize),
            Order::Importance,
            0,
        ));
        assert_eq!(r.stop, StopReason::Budget);
        assert_eq!(count(&r.mask), want, "budget {f}");
    }

    // Orders: importance masks the 7 least important heads first, reverse the 7 most important,
    // random neither.
    let imp: Vec<f32> = Vec::try_from(all.initial_importance.flatten(0, -1)).unwrap();
    let mut by_importance: Vec<usize> = (0..72).collect();
    by_importance.sort_by(|&a, &b| imp[a].total_cmp(&imp[b]));
    let first_step = |order: Order| {
        let r = run(settings(Goal::KeepHeads(65), order, 0));
        let m: Vec<f32> = Vec::try_from(r.mask.flatten(0, -1)).unwrap();
        let mut masked: Vec<usize> = (0..72).filter(|&i| m[i] == 0.0).collect();
        masked.sort();
        masked
    };
    let sorted = |v: &[usize]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    let least = sorted(&by_importance[..7]);
    let most = sorted(&by_importance[65..]);
    assert_eq!(first_step(Order::Importance), least);
    assert_eq!(first_step(Order::Reverse), most);
    let random = first_step(Order::Random);
    assert_ne!(random, least);
    assert_ne!(random, most);
    assert_eq!(random.len(), 7);
}
