//! `Network::train_step_packed` is bit for bit `Network::train_step` on the same rows: narrow
//! and wide (16+ inputs: the row kernel, fed by transposing the packed tile back) first
//! layers, several tiles, a partial last block, and label errors reported as passed.

use fusedprop::rng::SplitMix64;
use fusedprop::{
    Adam, Dense, Error, Momentum, NetWorkspace, Network, Optimizer, OptimizerState, PackedBatch,
    Relu, SoftmaxCrossEntropy, Tanh, chain,
};

fn rows<const I: usize>(n: usize, seed: u64) -> Vec<[f32; I]> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| core::array::from_fn(|_| rng.uniform(2.0)))
        .collect()
}

fn same<L, P: Optimizer, const I: usize, const B: usize>(n: usize, opt: P)
where
    L: fusedprop::Layer<In = fusedprop::Dim<I>, Out = fusedprop::Dim<3>>
        + fusedprop::optim::ConstZero,
{
    let x = rows::<I>(n, 2);
    let y: Vec<u32> = (0..n).map(|i| (i * 5 % 3) as u32).collect();
    let batch = Box::new(PackedBatch::<I, B>::from_rows(&x, &y).unwrap());
    let mut a = Network::<L, SoftmaxCrossEntropy>::new(3);
    let mut b = a.clone();
    let (mut sa, mut sb) = (OptimizerState::new(), OptimizerState::new());
    let mut ws = Box::new(NetWorkspace::ZERO);
    for step in 0..3 {
        let la = a.train_step_packed(&batch, &opt, &mut sa, &mut ws).unwrap();
        let lb = b.train_step(&x, &y, &opt, &mut sb, &mut ws).unwrap();
        assert_eq!(la.to_bits(), lb.to_bits(), "loss, step {step}");
        let (mut pa, mut pb) = (vec![0.0f32; L::PARAMS], vec![0.0f32; L::PARAMS]);
        a.write_params(&mut pa).unwrap();
        b.write_params(&mut pb).unwrap();
        assert!(
            pa.iter().zip(&pb).all(|(p, q)| p.to_bits() == q.to_bits()),
            "weights, step {step}"
        );
        assert!(sa == sb, "state, step {step}");
    }
}

#[test]
fn packed_equals_rows() {
    same::<chain![Dense<4, 32, Relu>, Dense<32, 3>], _, 4, 8>(
        120,
        Momentum::new(0.05, 0.9).unwrap(),
    );
    same::<chain![Dense<4, 9, Tanh>, Dense<9, 3>], _, 4, 20>(300, Adam::new(0.01).unwrap());
    same::<chain![Dense<37, 17, Relu>, Dense<17, 8, Tanh>, Dense<8, 3>], _, 37, 20>(
        301,
        Adam::adamw(0.01, 0.01).unwrap(),
    );
}

#[test]
fn packed_label_out_of_range_is_refused_before_any_work() {
    type L = chain![Dense<4, 8, Relu>, Dense<8, 3>];
    let x = rows::<4>(20, 1);
    let mut y = vec![0u32; 20];
    y[17] = 16_777_217;
    let batch = PackedBatch::<4, 2>::from_rows(&x, &y).unwrap();
    let mut net = Network::<L, SoftmaxCrossEntropy>::new(1);
    let before = net.clone();
    let mut st = OptimizerState::new();
    let e = net
        .train_step_packed(
            &batch,
            &Adam::new(0.01).unwrap(),
            &mut st,
            &mut NetWorkspace::new(),
        )
        .unwrap_err();
    assert!(
        matches!(e, Error::LabelOutOfRange { index: 17, .. }),
        "{e:?}"
    );
    assert!(net == before);
    assert_eq!(st.steps(), 0);
}
