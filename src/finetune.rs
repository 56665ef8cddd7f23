//! Fine-tuning: AdamW with decoupled weight decay (none on biases and LayerNorm weights), linear
//! warm-up and decay, gradient clipping, dropout on, length-bucketed batches. Written out
//! rather than taken from tch's optimisers so the update is exactly torch.optim.AdamW's and the
//! decay groups follow transformers' rule.
use crate::data::batch::{make_batch, Batch, Padding};
use crate::data::dataset::Dataset;
use tch::{nn::VarStore, Device, Kind, Tensor};

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct Hyper {
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub warmup_ratio: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub max_grad_norm: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
}

/// transformers' linear schedule: warm-up over ceil(ratio · total) steps, then linear decay to 0.
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        peak * step as f64 / warmup.max(1) as f64
    } else {
        peak * ((total - step.min(total)) as f64 / (total - warmup).max(1) as f64).max(0.0)
    }
}

pub fn warmup_steps(total: usize, ratio: f64) -> usize {
    (total as f64 * ratio).ceil() as usize
}

struct Param {
    value: Tensor,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

/// transformers' Trainer: no weight decay on biases and layer-norm weights. Layer norms are
/// known by their module's name, in each family's spelling (`LayerNorm`, `layer_norm`,
/// `sa_layer_norm`, GPT's `ln_1` / `ln_f`).
fn decays(name: &str) -> bool {
    let mut parts = name.rsplit('.');
    let (last, module) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let module = module.to_ascii_lowercase();
    let norm = module.contains("norm") || module.starts_with("ln_") || module == "ln";
    !(last == "bias" || norm)
}

/// torch.optim.AdamW, step for step.
pub struct AdamW {
    params: Vec<Param>,
    step: i32,
    hyper: Hyper,
}

impl AdamW {
    pub fn new(vs: &VarStore, hyper: Hyper) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let params = vars
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(name, value)| Param {
                m: value.zeros_like(),
                v: value.zeros_like(),
                decay: decays(&name),
                value,
            })
            .collect();
        AdamW {
            params,
            step: 0,
            hyper,
        }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.value.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// Clips the global gradient norm to `max_norm` (torch.nn.utils.clip_grad_norm_); returns
    /// the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| p.value.grad())
            .filter(|g| g.defined())
            .collect();
        let total = tch::no_grad(|| {
            let norms: Vec<Tensor> = grads
                .iter()
                .map(|g| g.norm().to_kind(Kind::Double))
                .collect();
            Tensor::stack(&norms, 0).norm().double_value(&[])
        });
        let coef = (max_norm / (total + 1e-6)).min(1.0);
        if coef < 1.0 {
            tch::no_grad(|| {
                for g in &grads {
                    let _ = g.shallow_clone().g_mul_scalar_(coef);
                }
            });
        }
        total
    }

    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let h = self.hyper;
        let bias1 = 1.0 - h.adam_beta1.powi(self.step);
        let bias2 = 1.0 - h.adam_beta2.powi(self.step);
        tch::no_grad(|| {
            for p in &mut self.params {
                let g = p.value.grad();
                if !g.defined() {
                    continue;
                }
                if p.decay && h.weight_decay != 0.0 {
                    let _ = p.value.g_mul_scalar_(1.0 - lr * h.weight_decay);
                }
                let _ =
                    p.m.g_mul_scalar_(h.adam_beta1)
                        .g_add_(&(&g * (1.0 - h.adam_beta1)));
                let _ =
                    p.v.g_mul_scalar_(h.adam_beta2)
                        .g_add_(&(&g * &g * (1.0 - h.adam_beta2)));
                let denom = p.v.sqrt() / bias2.sqrt() + h.adam_epsilon;
                let update = &p.m / denom * (lr / bias1);
                let _ = p.value.g_sub_(&update);
            }
        });
    }
}

/// One epoch's batches: a seeded shuffle; with `bucket`, examples are then sorted by length
/// within pools of 50 batches (little padding) and the batches themselves shuffled. A
/// language model's batches carry its token labels.
pub fn epoch_batches(
    data: &Dataset,
    batch_size: usize,
    seed: i64,
    bucket: bool,
    device: Device,
) -> Vec<Batch> {
    let mut batches = shuffled_batches(data, batch_size, seed, bucket, device);
    data.add_token_labels(&mut batches);
    batches
}

fn shuffled_batches(
    data: &Dataset,
    batch_size: usize,
    seed: i64,
    bucket: bool,
    device: Device,
) -> Vec<Batch> {
    tch::manual_seed(seed);
    let n = data.len() as i64;
    let perm: Vec<i64> =
        Vec::try_from(Tensor::randperm(n, (Kind::Int64, Device::Cpu))).unwrap_or_default();
    let mut order: Vec<usize> = perm.into_iter().map(|i| i as usize).collect();
    if !bucket {
        return order
            .chunks(batch_size)
            .map(|c| {
                make_batch(
                    &data.encoded,
                    &data.labels,
                    c,
                    Padding::Longest,
                    data.pad_id,
                    device,
                )
            })
            .collect();
    }
    for pool in order.chunks_mut(batch_size * 50) {
        pool.sort_by_key(|&i| data.encoded[i].ids.len());
    }
    let chunks: Vec<&[usize]> = order.chunks(batch_size).collect();
    let shuffle: Vec<i64> = Vec::try_from(Tensor::randperm(
        chunks.len() as i64,
        (Kind::Int64, Device::Cpu),
    ))
    .unwrap_or_default();
    shuffle
        .into_iter()
        .map(|c| {
            make_batch(
                &data.encoded,
                &data.labels,
                chunks[c as usize],
                Padding::Longest,
                data.pad_id,
                device,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let (total, warm) = (100, warmup_steps(100, 0.1));
        assert_eq!(warm, 10);
        assert_eq!(lr_at(0, total, warm, 1.0), 0.0);
        assert!((lr_at(5, total, warm, 1.0) - 0.5).abs() < 1e-12);
        assert!((lr_at(10, total, warm, 1.0) - 1.0).abs() < 1e-12);
        assert!((lr_at(55, total, warm, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(lr_at(100, total, warm, 1.0), 0.0);
        assert_eq!(warmup_steps(345, 0.1), 35);
    }

    #[test]
    fn no_decay_on_biases_and_layer_norms_of_every_family() {
        for name in [
            "bert.encoder.layer.0.attention.output.LayerNorm.weight",
            "distilbert.transformer.layer.0.sa_layer_norm.weight",
            "transformer.h.0.ln_1.weight",
            "transformer.ln_f.weight",
            "cls.predictions.bias",
            "transformer.h.0.attn.c_attn.bias",
        ] {
            assert!(!decays(name), "{name}");
        }
        for name in [
            "transformer.h.0.attn.c_attn.weight",
            "bert.embeddings.word_embeddings.weight",
            "classifier.weight",
            "w",
        ] {
            assert!(decays(name), "{name}");
        }
    }

    #[test]
    fn adamw_matches_torch_on_a_quadratic() {
        // torch.optim.AdamW(lr=0.1, weight_decay=0.01) on f(x) = sum(x²) from x0 = [1, -2], three
        // steps, gives [0.6989112, -1.6949446] (torch 2.13).
        let vs = VarStore::new(Device::Cpu);
        let x = vs
            .root()
            .var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0]));
        let hyper = Hyper {
            learning_rate: 0.1,
            weight_decay: 0.01,
            warmup_ratio: 0.0,
            epochs: 1,
            batch_size: 1,
            max_grad_norm: 1.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
        };
        let mut opt = AdamW::new(&vs, hyper);
        for _ in 0..3 {
            opt.zero_grad();
            (&x * &x).sum(Kind::Float).backward();
            opt.step(0.1);
        }
        let v: Vec<f32> = Vec::try_from(x.detach()).unwrap();
        assert!((v[0] - 0.698_911_25).abs() < 1e-6, "{v:?}");
        assert!((v[1] + 1.694_944_6).abs() < 1e-6, "{v:?}");
    }
}
