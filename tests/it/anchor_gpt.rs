//! `--estimator anchor` on a language model reproduces run_prune_gpt.py
//! (scripts/reference/anchor_gpt.py, fixture anchor_gpt.json) on a small GPT-2 trained on MRPC
//! train (scripts/reference/train_gpt2.py) and held-out MRPC dev token ids, in file order.
use crate::common::*;
use bertology::data::batch::Padding;
use bertology::data::dataset::Dataset;
use bertology::data::glue::Task;
use bertology::data::lm::read_token_ids;
use bertology::importance::{compute, Estimator, Settings};
use bertology::masking::{mask_heads, Goal, MaskingSettings, Order};
use bertology::model::{LoadOptions, Model};
use tch::{Device, Kind, Tensor};

fn rows(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn anchor_estimator_replicates_run_prune_gpt_importance_and_masking() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("anchor_gpt.json")).unwrap())
            .unwrap();
    let mut model = Model::load(
        &fixture("tiny-gpt2-trained"),
        &LoadOptions {
            device: Device::Cpu,
            seed: 0,
            task: Some(Task::Lm.into()),
        },
    )
    .unwrap();
    model.vs.freeze();
    let ids = read_token_ids(&fixture("tiny_mrpc_dev_ids.txt"), 300, 16, "--token-ids").unwrap();
    let data = Dataset::language_model(Task::Lm, ids, 0, None);
    let batches = data.batches(4, Padding::Longest, Device::Cpu);
    let n_batches = reference["batches"].as_f64().unwrap();
    assert_eq!(batches.len() as f64, n_batches);
    let importance = Settings {
        estimator: Estimator::Anchor,
        layer_norm: true,
        global_norm: true,
        entropy: false,
    };
    let stats = compute(model.net.as_ref(), &batches, None, importance, None).unwrap();
    for (ours, key) in [
        (&stats.raw_importance, "raw_importance"),
        (&stats.importance, "importance"),
    ] {
        let ours: Vec<Vec<f32>> = Vec::try_from(ours).unwrap();
        for (a, b) in ours
            .iter()
            .flatten()
            .zip(rows(&reference[key]).iter().flatten())
        {
            let rel = (*a as f64 - b).abs() / b.abs().max(1e-12);
            assert!(
                rel <= 1e-4 || (*a as f64 - b).abs() < 1e-9,
                "{key}: ours {a} vs run_prune_gpt {b}"
            );
        }
    }
    let settings = MaskingSettings {
        goal: Goal::Threshold(reference["threshold"].as_f64().unwrap()),
        amount: reference["amount"].as_f64().unwrap(),
        min_heads_per_layer: 0,
        reestimate: true,
        order: Order::Importance,
        unit_heads: 1,
        uniform_heads: false,
        seed: 0,
        importance,
    };
    let r = mask_heads(
        model.net.as_ref(),
        &data,
        &batches,
        "inverse_loss",
        settings,
        None,
    )
    .unwrap();
    // run_prune_gpt's score is 1 / (sum of the batch-mean losses): n_batches times smaller than
    // our 1 / (mean token loss) when batches hold equal token counts, so the threshold
    // decisions are the same.
    let theirs: Vec<(u64, f64)> = reference["curve"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap() * n_batches))
        .collect();
    let ours: Vec<(u64, f64)> = r
        .curve
        .iter()
        .map(|s| (s.heads_kept as u64, s.score))
        .collect();
    assert_eq!(ours.len(), theirs.len(), "ours {ours:?} vs {theirs:?}");
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a.0, b.0, "heads kept: ours {ours:?} vs {theirs:?}");
        assert!(
            (a.1 - b.1).abs() <= 1e-6 * b.1,
            "scores: ours {ours:?} vs {theirs:?}"
        );
    }
    let theirs_mask: Vec<f32> = rows(&reference["final_mask"])
        .into_iter()
        .flatten()
        .map(|v| v as f32)
        .collect();
    let mask = Tensor::from_slice(&theirs_mask).view([3, 4]);
    assert_eq!(
        r.mask.to_kind(Kind::Float),
        mask,
        "final mask: ours {} vs run_prune_gpt {}",
        r.mask,
        mask
    );
}
