//! The libtorch link works for real: autograd through a small module, and safetensors I/O.
use tch::{nn, nn::Module, nn::OptimizerConfig, Device, Kind, Tensor};

#[test]
fn forward_and_backward_through_a_small_module() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = nn::seq()
        .add(nn::linear(vs.root() / "l1", 4, 8, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(vs.root() / "l2", 8, 1, Default::default()));
    let x = Tensor::randn([64, 4], (Kind::Float, Device::Cpu));
    let y = x.sum_dim_intlist(-1, true, Kind::Float);
    let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
    let first = net
        .forward(&x)
        .mse_loss(&y, tch::Reduction::Mean)
        .double_value(&[]);
    for _ in 0..200 {
        let loss = net.forward(&x).mse_loss(&y, tch::Reduction::Mean);
        opt.backward_step(&loss);
    }
    let last = net
        .forward(&x)
        .mse_loss(&y, tch::Reduction::Mean)
        .double_value(&[]);
    assert!(last < first * 0.1, "loss did not fall: {first} -> {last}");

    // The gradient of sum(w·x) with respect to x is w.
    let w = Tensor::from_slice(&[1.0f32, -2.0, 3.0]);
    let v = Tensor::from_slice(&[0.5f32, 0.5, 0.5]).set_requires_grad(true);
    (&w * &v).sum(Kind::Float).backward();
    let g: Vec<f32> = Vec::try_from(v.grad()).unwrap();
    assert_eq!(g, vec![1.0, -2.0, 3.0]);
}

#[test]
fn safetensors_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.safetensors");
    let a = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([3, 4]);
    let b = Tensor::from_slice(&[7i64, 8, 9]);
    Tensor::write_safetensors(&[("a", &a), ("b", &b)], &path).unwrap();
    let back: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .collect();
    assert!(back["a"].equal(&a));
    assert!(back["b"].equal(&b));
    assert_eq!(back["a"].size(), vec![3, 4]);
}
