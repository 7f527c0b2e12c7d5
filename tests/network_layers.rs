//! The layer kernels' part of "Refusing a step" (`fusedprop::network`) on networks of one or
//! a few units a layer, where the bound can be computed by hand (for the mutation run of
//! `src/layer.rs`, .cargo/mutants.toml: few network types, quick to build):
//!
//! 1. every output of a last layer of more than four units counts in the measured
//!    `max|dL/dz|`;
//! 2. the optimizer state's magnitude counts in the margin (momentum's velocity);
//! 3. a layer's gradient bound uses the largest output of the layer below it as its input
//!    bound, for a chain nested either way;
//! 4. the closed-form bound of a layer below, `max|f'| O max|W| max|dL/dz above|`, uses the
//!    activation's own `max|f'|` (SiLU's 1.125, above 1), and a step it refuses is decided
//!    on the measured values: the test places a step between `1.0` and `1.125` times the
//!    closed form, where the measured bound refuses;
//! 5. the parallel step decides on the maxima of all its tiles, not the first slot's;
//! 6. the parallel step's reduction of a layer of more than 4096 weights (split in chunks
//!    over the threads), with 0, 1 and 2 state slots and with more than 64 slots, is bit for
//!    bit the serial step.
//!
//! Each refused step must leave the weights and the optimizer state bit for bit as they were.

use fusedprop::{
    Chain, Dense, Dim, Error, Layer, Linear, MeanSquaredError, Momentum, NetWorkspace, Network,
    Optimizer, OptimizerState, Relu, Sgd, Silu, Tanh, chain,
};

/// `f32::MAX / 16`, the margin of "Refusing a step" (`fusedprop::Error::UpdateOverflow`).
const LIMIT: f64 = f32::MAX as f64 / 16.0;

/// One unit.
type One = Dense<1, 1>;
/// Seven outputs: four chains of maxima in flight and three more outputs.
type Seven = chain![Dense<3, 8, Tanh>, Dense<8, 7>];
/// A chain nested to the left (`Chain<Chain<_, _>, _>`, which `chain!` does not write): the
/// bound of its last layer takes its input bound and `max|f'|` from a chain.
type Left = Chain<Chain<Dense<1, 1, Relu>, Dense<1, 1, Silu>>, Dense<1, 1, Linear>>;

fn params<L: Layer, H: fusedprop::Head<L::Out>>(net: &Network<L, H>) -> Vec<u32> {
    let mut p = vec![0.0; L::PARAMS];
    net.write_params(&mut p).unwrap();
    p.iter().map(|v| v.to_bits()).collect()
}

/// A step on given output gradients: `Ok`, or the error after checking that the weights and
/// the state are bit for bit unchanged.
fn given_step<L, P: Optimizer, const I: usize, const O: usize>(
    net: &mut Network<L, MeanSquaredError>,
    x: &[[f32; I]],
    dy: &[[f32; O]],
    opt: &P,
    state: &mut OptimizerState<L, P>,
) -> Result<(), Error>
where
    L: Layer<In = Dim<I>, Out = Dim<O>>,
{
    let (p0, s0) = (params(net), state.clone());
    let mut ws = Box::new(NetWorkspace::<L>::new());
    let r = net.train_step_with_output_grad(x, dy, opt, state, &mut ws);
    if r.is_err() {
        assert_eq!(params(net), p0, "a refused step changed a weight");
        assert!(*state == s0, "a refused step changed the optimizer state");
    } else {
        let mut p = vec![0.0; L::PARAMS];
        net.write_params(&mut p).unwrap();
        assert!(p.iter().all(|v| v.is_finite()), "{p:?}");
    }
    r
}

/// `σ(z)` and SiLU's derivative `σ(z) (1 + z (1 - σ(z)))`, in `f64`.
fn silu_grad(z: f64) -> f64 {
    let s = 1.0 / (1.0 + (-z).exp());
    s * (1.0 + z * (1.0 - s))
}

/// (1) A last layer of seven outputs: a `dL/dz` of 4e37 (past the margin) on any one output
/// refuses the step, one of 1e-3 is an ordinary step.
#[test]
fn every_output_of_a_wide_last_layer_counts_in_the_bound() {
    let x = [[0.5f32, -0.25, 1.0]];
    let sgd = Sgd::new(0.1).unwrap();
    for j in 0..7 {
        for (g, refused) in [(4e37f32, true), (1e-3, false)] {
            let mut net = Network::<Seven, MeanSquaredError>::new(3);
            let mut st = OptimizerState::new();
            let mut dy = [[0.0f32; 7]];
            dy[0][j] = g;
            let r = given_step(&mut net, &x, &dy, &sgd, &mut st);
            if refused {
                assert_eq!(r, Err(Error::UpdateOverflow), "output {j}");
            } else {
                assert_eq!(r, Ok(()), "output {j}");
            }
        }
    }
}

/// (2) Momentum's update is `μ v - lr g`: the margin counts the velocity. After a first step
/// of velocity `-v0` (and weights `-v0`), a second step of gradient 1 is refused when
/// `max|w| + μ max|v| + lr max|g|` passes `f32::MAX / 16` (`v0` = 1.2e37) and taken when it
/// does not (`v0` = 6e36), though the gradient alone is far inside the margin either way.
#[test]
fn the_margin_counts_the_optimizer_state() {
    let opt = Momentum::new(1.0, 0.9).unwrap();
    let x = [[1.0f32]];
    for (v0, refused) in [(1.2e37f32, true), (6e36, false)] {
        let mut net = Network::<One, MeanSquaredError>::new(1);
        net.read_params(&[0.0, 0.0]).unwrap();
        let mut st = OptimizerState::new();
        given_step(&mut net, &x, &[[v0]], &opt, &mut st).unwrap();
        let mut p = [0.0f32; 2];
        net.write_params(&mut p).unwrap();
        assert_eq!(p, [-v0, -v0], "the first step");
        let mut v = Vec::new();
        st.visit(|s| v.extend_from_slice(s));
        assert_eq!(v, [-v0, -v0], "the velocity");
        let bound = f64::from(v0) + 0.9 * f64::from(v0) + 1.0;
        assert_eq!(bound >= LIMIT, refused, "the test's placement");
        assert!(1.0 + f64::from(v0) < LIMIT, "the state must matter");
        let r = given_step(&mut net, &x, &[[1.0]], &opt, &mut st);
        if refused {
            assert_eq!(r, Err(Error::UpdateOverflow), "v0 = {v0}");
        } else {
            assert_eq!(r, Ok(()), "v0 = {v0}");
        }
    }
}

/// (3) The gradient of `W` is at most `N max|dL/dz| max(|input|, 1)`, the input being the
/// outputs of the layer below. With one sample of `x = 1` and the weights below (biases 0),
/// one layer's gradient `dL/dz * a_below` passes the margin because its *input* is large
/// (1e20, with `dL/dz` of about 4e18), while every other gradient and every `dL/dz` is far
/// inside it: refused. (The update would take that weight past `f32::MAX`.)
#[test]
fn a_layers_bound_uses_the_largest_output_below_it() {
    let sgd = Sgd::new(1.0).unwrap();
    // [w1, b1, w2, b2, w3, b3]: the last layer's input (SiLU of 1e20) is 1e20; its gradient
    // is 4e18 * 1e20.
    let last = [1.0f32, 0.0, 1e20, 0.0, 1e-20, 0.0];
    // The middle layer's input (ReLU of 1e20) is 1e20, its `dL/dz` SiLU'(1) 4e18.
    let middle = [1e20f32, 0.0, 1e-20, 0.0, 1.0, 0.0];
    for (what, p) in [("last", last), ("middle", middle)] {
        let mut net = Network::<Left, MeanSquaredError>::new(1);
        net.read_params(&p).unwrap();
        let mut st = OptimizerState::new();
        let r = given_step(&mut net, &[[1.0]], &[[4e18]], &sgd, &mut st);
        assert_eq!(r, Err(Error::UpdateOverflow), "{what}");
    }
    // The same networks with a gradient 1e20 times smaller: ordinary steps.
    for p in [last, middle] {
        let mut net = Network::<Left, MeanSquaredError>::new(1);
        net.read_params(&p).unwrap();
        let mut st = OptimizerState::new();
        assert_eq!(
            given_step(&mut net, &[[1.0]], &[[4e-2]], &sgd, &mut st),
            Ok(())
        );
    }
}

/// (4) The middle (SiLU) layer's `dL/dz` is `SiLU'(z) w3 dy`, `SiLU'` up to about 1.0998
/// (`GRAD_BOUND` 1.125). With `w3 dy a1` = 2e37 and `z` = 2.4 (`SiLU'(2.4)` = 1.09984), the
/// measured bound of its gradient, `SiLU'(z) w3 dy a1` = 2.2e37, passes the margin, though a
/// bound with a `max|f'|` of 1 would not: refused. Every other gradient is far inside it.
#[test]
fn a_layer_below_is_bounded_with_its_activations_largest_slope() {
    let sgd = Sgd::new(1.0).unwrap();
    let (a1, w2, w3) = (2.4e6f32, 1e-6f32, 1e10f32);
    let dy = (2e37 / (f64::from(w3) * f64::from(a1))) as f32;
    let z2 = f64::from(w2 * a1);
    let unit = f64::from(w3) * f64::from(dy) * f64::from(a1);
    let measured = silu_grad(z2) * unit;
    assert!(
        measured >= LIMIT && unit + f64::from(w2) < LIMIT,
        "the test's placement: {unit:e}, {measured:e}"
    );
    let mut net = Network::<Left, MeanSquaredError>::new(1);
    net.read_params(&[a1, 0.0, w2, 0.0, w3, 0.0]).unwrap();
    let mut st = OptimizerState::new();
    let r = given_step(&mut net, &[[1.0]], &[[dy]], &sgd, &mut st);
    assert_eq!(r, Err(Error::UpdateOverflow));
    // A tenth of the gradient: taken.
    let r = given_step(&mut net, &[[1.0]], &[[dy / 10.0]], &sgd, &mut st);
    assert_eq!(r, Ok(()));
}

/// (4) The factor of the layer below is `O max|W|`, `|W^T v| <= O max|W| max|v|`, which is
/// reached when every weight is `w` and every `dL/dz` above is `dy`: with seven outputs of
/// weights 1e10 over a hidden tanh layer at `z = 0` (`tanh'(0)` = 1), the hidden `dL/dz` is
/// `7 w dy` exactly, 2.5e37 here, past the margin: refused (a factor of `O + max|W|` would
/// allow it). A seventh of that gradient is taken.
#[test]
fn the_factor_below_a_layer_is_its_width_times_its_largest_weight() {
    let sgd = Sgd::new(1e-3).unwrap();
    let w = 1e10f32;
    let dy = (2.5e37 / (7.0 * f64::from(w))) as f32;
    assert!(7.0 * f64::from(w) * f64::from(dy) >= LIMIT);
    assert!((7.0 + f64::from(w)) * f64::from(dy) < LIMIT / 2.0);
    let mut p = vec![0.0f32; <Seven as Layer>::PARAMS];
    // The hidden layer's weights and biases (3 * 8 + 8) stay 0; the last layer's weights
    // are all `w`, its biases 0.
    p[32..32 + 56].fill(w);
    for (g, refused) in [(dy, true), (dy / 7.0, false)] {
        let mut net = Network::<Seven, MeanSquaredError>::new(1);
        net.read_params(&p).unwrap();
        let mut st = OptimizerState::new();
        let r = given_step(&mut net, &[[1.0, -1.0, 0.5]], &[[g; 7]], &sgd, &mut st);
        if refused {
            assert_eq!(r, Err(Error::UpdateOverflow));
        } else {
            assert_eq!(r, Ok(()));
        }
    }
}

/// The padded samples of a partial last block do not reach the bound: one sample, `x = 1`,
/// whose first layer is `relu(-1e30 x + 1e30)` = 0, while a padded lane (`x = 0`) would have
/// 1e30 there, the next layer's input bound. The step (`dy` = 1, a learning rate of 1e10) is
/// ordinary for the one sample; with 1e30 as the input bound it would pass the margin.
#[test]
fn padded_samples_do_not_reach_the_bound() {
    let sgd = Sgd::new(1e10).unwrap();
    let mut net = Network::<Left, MeanSquaredError>::new(1);
    net.read_params(&[-1e30, 1e30, 1.0, 0.0, 1.0, 0.0]).unwrap();
    let mut st = OptimizerState::new();
    assert_eq!(
        given_step(&mut net, &[[1.0]], &[[1.0]], &sgd, &mut st),
        Ok(())
    );
}

/// `Layer::DEPTH` counts the dense layers and `Layer::PARAMS` their weights and biases, in a
/// chain nested either way.
#[test]
fn a_chain_counts_its_layers_and_parameters() {
    assert_eq!((<One as Layer>::DEPTH, <One as Layer>::PARAMS), (1, 2));
    assert_eq!(
        (<Seven as Layer>::DEPTH, <Seven as Layer>::PARAMS),
        (2, 3 * 8 + 8 + 8 * 7 + 7)
    );
    assert_eq!((<Left as Layer>::DEPTH, <Left as Layer>::PARAMS), (3, 6));
}

/// `OptimizerState::visit` walks every layer of a chain in `write_params` order: after one
/// momentum step from zero weights the velocity is the weights (`0 + v`).
#[test]
fn the_state_of_a_chain_is_visited_layer_by_layer() {
    let opt = Momentum::new(0.5, 0.9).unwrap();
    let mut net = Network::<Left, MeanSquaredError>::new(1);
    net.read_params(&[0.0; 6]).unwrap();
    let mut st = OptimizerState::new();
    given_step(&mut net, &[[1.0]], &[[2.0]], &opt, &mut st).unwrap();
    let mut v = Vec::new();
    st.visit(|s| v.extend(s.iter().map(|x| x.to_bits())));
    assert_eq!(v, params(&net));
    assert_eq!(v[5], (-1.0f32).to_bits(), "the last bias: -0.5 * 2");
}

#[cfg(feature = "rayon")]
mod parallel {
    use super::*;
    use fusedprop::{Adam, NetParWorkspace, TILE_SAMPLES};

    /// (5) Two tiles in one round of two slots, a target of 1e18 in the second tile only: the
    /// last layer's `max|dL/dz|` is about `2e18 / N`, its gradient bound 2e18, which with a
    /// learning rate of 1e20 passes the margin. `train_step_par` refuses the step as
    /// `train_step` does, and changes nothing.
    fn refuses_on_the_second_tile<L>(p: &[f32])
    where
        L: Layer<In = Dim<1>, Out = Dim<1>> + fusedprop::optim::ConstZero,
    {
        let n = 2 * TILE_SAMPLES;
        let x = vec![[1.0f32]; n];
        let mut t = vec![[0.0f32]; n];
        t[TILE_SAMPLES + 5] = [1e18];
        let mut serial = Network::<L, MeanSquaredError>::new(1);
        serial.read_params(p).unwrap();
        let mut par = serial.clone();
        let sgd = Sgd::new(1e20).unwrap();
        let (mut s1, mut s2) = (OptimizerState::new(), OptimizerState::new());
        let mut ws = Box::new(NetWorkspace::<L>::new());
        let mut pws = Box::new(NetParWorkspace::<L, 2>::new());
        pws.set_min_flop(0);
        let e1 = serial.train_step(&x, &t, &sgd, &mut s1, &mut ws);
        let before = params(&par);
        let e2 = par.train_step_par(&x, &t, &sgd, &mut s2, &mut pws);
        assert_eq!(e1, Err(Error::UpdateOverflow));
        assert_eq!(e2, Err(Error::UpdateOverflow));
        assert_eq!(params(&par), before);
        // Without the large target: taken, the same step.
        t[TILE_SAMPLES + 5] = [0.0];
        let sgd = Sgd::new(0.1).unwrap();
        let a = serial.train_step(&x, &t, &sgd, &mut s1, &mut ws).unwrap();
        let b = par.train_step_par(&x, &t, &sgd, &mut s2, &mut pws).unwrap();
        assert_eq!(a.to_bits(), b.to_bits());
        assert_eq!(params(&serial), params(&par));
    }

    #[test]
    fn the_parallel_step_decides_on_every_tiles_maxima() {
        refuses_on_the_second_tile::<One>(&[1e-3, 0.0]);
        refuses_on_the_second_tile::<Left>(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
    }

    /// 65 inputs, 64 outputs: 4160 weights, more than one chunk of the parallel reduction.
    type Big = Dense<65, 64>;

    fn big_data(n: usize) -> (Vec<[f32; 65]>, Vec<[f32; 64]>) {
        let x = (0..n)
            .map(|s| core::array::from_fn(|i| ((s * 13 + i * 7) as f32 * 0.31).sin()))
            .collect();
        let t = (0..n)
            .map(|s| core::array::from_fn(|j| ((s * 5 + j * 3) as f32 * 0.17).cos()))
            .collect();
        (x, t)
    }

    fn big_equal<P: Optimizer, const C: usize>(opt: P, n: usize, steps: usize) {
        let (x, t) = big_data(n);
        let mut serial = Network::<Big, MeanSquaredError>::new(4);
        let mut par = serial.clone();
        let (mut s1, mut s2) = (OptimizerState::new(), OptimizerState::new());
        let mut ws = Box::new(NetWorkspace::<Big>::new());
        let mut pws = Box::new(NetParWorkspace::<Big, C>::new());
        pws.set_min_flop(0);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for step in 0..steps {
            let a = serial.train_step(&x, &t, &opt, &mut s1, &mut ws).unwrap();
            let b = pool
                .install(|| par.train_step_par(&x, &t, &opt, &mut s2, &mut pws))
                .unwrap();
            assert_eq!(a.to_bits(), b.to_bits(), "{opt:?}, loss, step {step}");
            assert_eq!(
                params(&serial),
                params(&par),
                "{opt:?}, weights, step {step}"
            );
            assert!(s1 == s2, "{opt:?}, state, step {step}");
        }
    }

    /// (6) Five tiles in rounds of three slots, the last tile partial.
    #[test]
    fn a_layer_of_several_chunks_reduces_bit_for_bit() {
        let n = 4 * TILE_SAMPLES + 21;
        big_equal::<_, 3>(Sgd::new(0.01).unwrap(), n, 2);
        big_equal::<_, 3>(Momentum::new(0.01, 0.9).unwrap(), n, 2);
        big_equal::<_, 3>(Adam::new(0.001).unwrap(), n, 2);
    }

    /// (6) More slots than the chunked reduction takes parts (64): 65 tiles in one round.
    /// (The workspace of 65 slots, about 8 MB, is built on a thread with a stack of its own:
    /// `Box::new(NetParWorkspace::new())` may stage it on the stack.)
    #[test]
    fn a_round_of_more_than_64_parts_reduces_bit_for_bit() {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(|| big_equal::<_, 65>(Sgd::new(0.01).unwrap(), 65 * TILE_SAMPLES, 1))
            .unwrap()
            .join()
            .unwrap();
    }
}

/// A workspace forgets what a refused step measured: a step of `chain![One, One]` whose
/// hidden `dL/dz` overflows (`3e38 x -188`, with a finite loss of 8836) is refused, and the
/// next steps on the same workspace, with ordinary weights, give bit for bit what they give
/// on a fresh workspace.
#[test]
fn a_refused_steps_maxima_do_not_outlive_it() {
    type Net = Network<chain![One, One], MeanSquaredError>;
    let (x, y) = ([[1.0f32]], [[100.0f32]]);
    let sgd = Sgd::new(0.01).unwrap();
    let mut net = Net::new(0);
    // Layer 1: w = 0, b = 2e-38, so h = 2e-38; layer 2: w = 3e38, b = 0, so the output is 6.
    net.read_params(&[0.0, 2e-38, 3e38, 0.0]).unwrap();
    let mut st = OptimizerState::<_, Sgd>::new();
    let mut ws = NetWorkspace::new();
    let before = params(&net);
    assert!(net.loss(&x, &y).unwrap().is_finite());
    assert!(net.train_step(&x, &y, &sgd, &mut st, &mut ws).is_err());
    assert_eq!(params(&net), before, "a refused step changes nothing");

    let ordinary = [0.5f32, 0.25, -0.75, 0.125];
    let mut fresh = Net::new(0);
    fresh.read_params(&ordinary).unwrap();
    net.read_params(&ordinary).unwrap();
    let (mut st_fresh, mut ws_fresh) = (OptimizerState::<_, Sgd>::new(), NetWorkspace::new());
    let y = [[1.0f32]];
    for step in 0..3 {
        let want = fresh
            .train_step(&x, &y, &sgd, &mut st_fresh, &mut ws_fresh)
            .unwrap();
        let got = net
            .train_step(&x, &y, &sgd, &mut st, &mut ws)
            .unwrap_or_else(|e| panic!("step {step} after the refused one: {e}"));
        assert_eq!(got.to_bits(), want.to_bits(), "step {step}'s loss");
        assert_eq!(params(&net), params(&fresh), "step {step}'s weights");
    }
}
