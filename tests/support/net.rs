//! The `f64` oracle of any [`Network`]: built from `Network::write_params` (the flat parameter
//! order) and `Network::visit_layers` (each dense layer's shape and its activation's `f64`
//! `eval`/`grad`), it computes the forward pass, each head's mean loss (the formulas of the
//! `head` module docs) and the gradient of the mean loss by backpropagation, all in `f64`,
//! written as plain loops. Parameters are a separate `&[f64]` argument, so that finite
//! differences can perturb them.
//!
//! It also runs the chain rule on *magnitudes* (`Scales`), which bounds what `f32` rounding
//! anywhere upstream can do to each result: the scale the tolerances of the table multiply.

use fusedprop::layer::{ActivationF64, LayerInfo};
use fusedprop::reference as r;
use fusedprop::{Dim, Head, Layer, Network};

/// The loss head, from `Head::NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// Softmax and sparse categorical cross-entropy.
    Softmax,
    /// Mean squared error, mean over the batch and the outputs.
    Mse,
    /// Binary cross-entropy from the logits, mean over the batch and the outputs.
    Bce,
}

/// A sample's target, in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A class index.
    Label(u32),
    /// A row of values.
    Row(Vec<f64>),
}

/// The head's target types, converted exactly to the oracle's.
pub trait OracleTarget {
    /// This target for the oracle.
    fn target(&self) -> Target;
}

impl OracleTarget for u32 {
    fn target(&self) -> Target {
        Target::Label(*self)
    }
}

impl<const O: usize> OracleTarget for [f32; O] {
    fn target(&self) -> Target {
        Target::Row(self.iter().map(|v| f64::from(*v)).collect())
    }
}

/// Converts a batch of targets.
pub fn targets<T: OracleTarget>(y: &[T]) -> Vec<Target> {
    y.iter().map(OracleTarget::target).collect()
}

/// Converts a batch of rows, exactly.
pub fn inputs<const N: usize>(x: &[[f32; N]]) -> Vec<Vec<f64>> {
    x.iter()
        .map(|r| r.iter().map(|v| f64::from(*v)).collect())
        .collect()
}

/// One dense layer as the oracle sees it.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Inputs.
    pub inputs: usize,
    /// Outputs.
    pub outputs: usize,
    /// Offset of its weights in the flat parameters (its biases follow them).
    pub at: usize,
    /// Keras's name of the activation.
    pub activation: &'static str,
}

impl Shape {
    /// ReLU and leaky ReLU: a kink at 0 (finite differences skip points near it) and no
    /// arithmetic error of their own.
    pub fn piecewise_linear(&self) -> bool {
        matches!(self.activation, "linear" | "relu" | "leaky_relu")
    }

    /// Whether the activation has a kink at 0.
    pub fn kinked(&self) -> bool {
        matches!(self.activation, "relu" | "leaky_relu")
    }
}

/// What the forward pass of one sample went through: per layer, its input, its
/// pre-activation `z` and `f'(z)`; and the last layer's outputs.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The input of each layer (the sample, then each layer's activations).
    pub input: Vec<Vec<f64>>,
    /// Each layer's `z = W a + b`.
    pub z: Vec<Vec<f64>>,
    /// Each layer's `f'(z)`.
    pub fprime: Vec<Vec<f64>>,
    /// The last layer's activations (before the head).
    pub out: Vec<f64>,
}

/// Calls its argument with each dense layer of a network, in order.
type Visit<'a> = Box<dyn Fn(&mut dyn FnMut(LayerInfo, &dyn ActivationF64)) + 'a>;

/// The oracle of one network (borrowed for its activations).
pub struct NetOracle<'a> {
    visit: Visit<'a>,
    /// The dense layers, in order.
    pub shapes: Vec<Shape>,
    /// The head.
    pub head: HeadKind,
    /// Number of parameters.
    pub params: usize,
}

/// The network's parameters in `f64`, in `write_params` order.
pub fn params64<L: Layer, H: Head<L::Out>>(net: &Network<L, H>) -> Vec<f64> {
    let mut p = vec![0.0f32; L::PARAMS];
    net.write_params(&mut p).expect("length");
    p.into_iter().map(f64::from).collect()
}

impl<'a> NetOracle<'a> {
    /// The oracle of `net`'s architecture and head (its parameters are passed to each call).
    pub fn new<L: Layer, H: Head<L::Out>>(net: &'a Network<L, H>) -> Self {
        let head = match H::NAME {
            "softmax + sparse categorical cross-entropy" => HeadKind::Softmax,
            "mean squared error" => HeadKind::Mse,
            "sigmoid + binary cross-entropy" => HeadKind::Bce,
            other => panic!("unknown head {other}"),
        };
        let mut shapes = Vec::new();
        let mut at = 0;
        net.visit_layers(|info, _| {
            assert_eq!(info.params, info.inputs * info.outputs + info.outputs);
            shapes.push(Shape {
                inputs: info.inputs,
                outputs: info.outputs,
                at,
                activation: info.activation,
            });
            at += info.params;
        });
        assert_eq!(at, L::PARAMS);
        Self {
            visit: Box::new(move |f| net.visit_layers(|i, a| f(i, a))),
            shapes,
            head,
            params: at,
        }
    }

    /// The forward pass of one sample with parameters `p`.
    pub fn forward(&self, p: &[f64], x: &[f64]) -> Trace {
        assert_eq!(p.len(), self.params);
        let mut t = Trace {
            input: Vec::new(),
            z: Vec::new(),
            fprime: Vec::new(),
            out: x.to_vec(),
        };
        let mut l = 0;
        (self.visit)(&mut |info, act| {
            let s = self.shapes[l];
            assert_eq!((info.inputs, info.outputs), (s.inputs, s.outputs));
            let a = core::mem::take(&mut t.out);
            assert_eq!(a.len(), s.inputs);
            let w = &p[s.at..s.at + s.inputs * s.outputs];
            let b = &p[s.at + s.inputs * s.outputs..s.at + s.inputs * s.outputs + s.outputs];
            let z: Vec<f64> = (0..s.outputs)
                .map(|j| {
                    b[j] + (0..s.inputs)
                        .map(|k| w[j * s.inputs + k] * a[k])
                        .sum::<f64>()
                })
                .collect();
            t.fprime.push(z.iter().map(|&v| act.grad(v)).collect());
            t.out = z.iter().map(|&v| act.eval(v)).collect();
            t.z.push(z);
            t.input.push(a);
            l += 1;
        });
        t
    }

    /// One sample's loss (not divided by `N`) from the last layer's outputs `a`, and
    /// `dloss/da`.
    pub fn head_loss(&self, a: &[f64], y: &Target) -> (f64, Vec<f64>) {
        let o = a.len() as f64;
        match (self.head, y) {
            (HeadKind::Softmax, Target::Label(c)) => {
                let m = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = a.iter().map(|v| r::exp(v - m)).sum();
                let lse = m + r::ln(s);
                let mut g: Vec<f64> = a.iter().map(|v| r::exp(v - lse)).collect();
                g[*c as usize] -= 1.0;
                (lse - a[*c as usize], g)
            }
            (HeadKind::Mse, Target::Row(t)) => {
                let l = a.iter().zip(t).map(|(z, t)| (z - t) * (z - t)).sum::<f64>() / o;
                let g = a.iter().zip(t).map(|(z, t)| 2.0 * (z - t) / o).collect();
                (l, g)
            }
            (HeadKind::Bce, Target::Row(t)) => {
                let l = a
                    .iter()
                    .zip(t)
                    .map(|(z, t)| z.max(0.0) - z * t + r::ln(1.0 + r::exp(-z.abs())))
                    .sum::<f64>()
                    / o;
                let g = a
                    .iter()
                    .zip(t)
                    .map(|(z, t)| (r::sigmoid(*z) - t) / o)
                    .collect();
                (l, g)
            }
            (h, y) => panic!("target {y:?} does not fit head {h:?}"),
        }
    }

    /// The head's outputs of one sample (`predict_proba`): probabilities, or the values.
    pub fn head_outputs(&self, a: &[f64]) -> Vec<f64> {
        match self.head {
            HeadKind::Softmax => {
                let m = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = a.iter().map(|v| r::exp(v - m)).collect();
                let s: f64 = e.iter().sum();
                e.iter().map(|v| v / s).collect()
            }
            HeadKind::Mse => a.to_vec(),
            HeadKind::Bce => a.iter().map(|v| r::sigmoid(*v)).collect(),
        }
    }

    /// The mean loss over the batch.
    pub fn loss(&self, p: &[f64], x: &[Vec<f64>], y: &[Target]) -> f64 {
        assert_eq!(x.len(), y.len());
        let total: f64 = x
            .iter()
            .zip(y)
            .map(|(xs, ys)| self.head_loss(&self.forward(p, xs).out, ys).0)
            .sum();
        total / x.len() as f64
    }

    /// The mean loss and its gradient with respect to every parameter (`write_params`
    /// order), by backpropagation.
    pub fn gradients(&self, p: &[f64], x: &[Vec<f64>], y: &[Target]) -> (f64, Vec<f64>) {
        let n = x.len() as f64;
        let mut g = vec![0.0; self.params];
        let mut total = 0.0;
        for (xs, ys) in x.iter().zip(y) {
            let t = self.forward(p, xs);
            let (l, da) = self.head_loss(&t.out, ys);
            total += l;
            self.backward(p, &t, &da, n, None, &mut g);
        }
        (total / n, g)
    }

    /// Adds one sample's term of the mean loss's gradient to `g`: backpropagation from
    /// `da = dloss/da` of the last layer (not yet divided by `n`) through the trace `t`.
    /// `flip` names a unit `(layer, output)` of a kinked activation whose `f'` is taken from
    /// the other side of the kink (see `Scales::up`).
    fn backward(
        &self,
        p: &[f64],
        t: &Trace,
        da: &[f64],
        n: f64,
        flip: Option<(usize, usize)>,
        g: &mut [f64],
    ) {
        let mut d: Vec<f64> = da.iter().map(|v| v / n).collect();
        for (li, s) in self.shapes.iter().enumerate().rev() {
            // dL/dz from dL/da.
            for (j, (dv, fp)) in d.iter_mut().zip(&t.fprime[li]).enumerate() {
                *dv *= if flip == Some((li, j)) {
                    self.grad_across_kink(li, t.z[li][j])
                } else {
                    *fp
                };
            }
            let a = &t.input[li];
            let nw = s.inputs * s.outputs;
            for j in 0..s.outputs {
                for k in 0..s.inputs {
                    g[s.at + j * s.inputs + k] += d[j] * a[k];
                }
                g[s.at + nw + j] += d[j];
            }
            let prev: Vec<f64> = (0..s.inputs)
                .map(|k| {
                    (0..s.outputs)
                        .map(|j| p[s.at + j * s.inputs + k] * d[j])
                        .sum()
                })
                .collect();
            d = prev;
        }
    }

    /// `f'` of layer `li`'s activation on the other side of its kink from `z`.
    fn grad_across_kink(&self, li: usize, z: f64) -> f64 {
        let other = if z > 0.0 {
            -f64::MIN_POSITIVE
        } else {
            f64::MIN_POSITIVE
        };
        let mut at = 0;
        let mut out = f64::NAN;
        (self.visit)(&mut |_, act| {
            if at == li {
                out = act.grad(other);
            }
            at += 1;
        });
        out
    }

    /// The signs of every kinked activation's input over the batch: a finite difference is
    /// meaningless if a step changes them.
    pub fn kink_pattern(&self, p: &[f64], x: &[Vec<f64>]) -> Vec<bool> {
        let mut out = Vec::new();
        for xs in x {
            let t = self.forward(p, xs);
            for (s, z) in self.shapes.iter().zip(&t.z) {
                if s.kinked() {
                    out.extend(z.iter().map(|v| *v > 0.0));
                }
            }
        }
        out
    }

    /// The chain rule on magnitudes (see `Scales`).
    pub fn scales(&self, p: &[f64], x: &[Vec<f64>], y: &[Target]) -> Scales {
        let n = x.len() as f64;
        let mut grads = vec![0.0; self.params];
        let mut up = vec![0.0; self.params];
        let mut down = vec![0.0; self.params];
        // The forward error of a layer's `z`, per unit of its terms' size: the `MLP` row's
        // 4 u per term, counted over the layers up to it (`terms` without the batch and head).
        let near: Vec<f64> = self
            .shapes
            .iter()
            .scan(0, |terms, s| {
                *terms += s.inputs + 8;
                Some(super::MLP.abs_per_term * *terms as f64)
            })
            .collect();
        let mut loss = 1.0f64;
        let mut outputs = Vec::with_capacity(x.len());
        for (xs, ys) in x.iter().zip(y) {
            // Forward: the size of each activation's terms (not its value).
            let mut abar: Vec<Vec<f64>> = vec![xs.iter().map(|v| v.abs()).collect()];
            for s in &self.shapes {
                let a = abar.last().expect("input");
                let zbar: Vec<f64> = (0..s.outputs)
                    .map(|j| {
                        p[s.at + s.inputs * s.outputs + j].abs()
                            + (0..s.inputs)
                                .map(|k| p[s.at + j * s.inputs + k].abs() * a[k])
                                .sum::<f64>()
                    })
                    .collect();
                // A smooth activation adds its own error, a few ulp of 1 (tanh, sigmoid: values
                // below 1) or of `z` (SiLU, GELU: slopes up to 1.13).
                let next = if s.piecewise_linear() {
                    zbar
                } else {
                    zbar.iter().map(|v| 1.2 * v + 1.0).collect()
                };
                abar.push(next);
            }
            self.span_kinks(p, xs, ys, &abar, &near, n, &mut up, &mut down);
            let last = abar.last().expect("output").clone();
            let o = last.len() as f64;
            let top = last.iter().copied().fold(1.0, f64::max);
            // The size of dL/da of the last layer, and of the loss and the head's outputs.
            let da: Vec<f64> = match (self.head, ys) {
                (HeadKind::Softmax, _) => {
                    loss = loss.max(top);
                    outputs.push(vec![2.0 * top; last.len()]);
                    vec![top / n; last.len()]
                }
                (HeadKind::Mse, Target::Row(t)) => {
                    let e: Vec<f64> = last.iter().zip(t).map(|(a, t)| a + t.abs() + 1.0).collect();
                    loss = loss.max(e.iter().map(|v| v * v).fold(0.0, f64::max));
                    outputs.push(last.iter().map(|v| v.max(1.0)).collect());
                    e.iter().map(|v| 2.0 * v / (n * o)).collect()
                }
                (HeadKind::Bce, _) => {
                    loss = loss.max(top);
                    outputs.push(last.iter().map(|v| v.max(1.0)).collect());
                    last.iter().map(|v| v.max(1.0) / (n * o)).collect()
                }
                (h, y) => panic!("target {y:?} does not fit head {h:?}"),
            };
            // Backward.
            let mut d = da;
            for (li, s) in self.shapes.iter().enumerate().rev() {
                if !s.piecewise_linear() {
                    d.iter_mut().for_each(|v| *v *= 1.2);
                }
                let a = &abar[li];
                let nw = s.inputs * s.outputs;
                for j in 0..s.outputs {
                    for k in 0..s.inputs {
                        grads[s.at + j * s.inputs + k] += d[j] * a[k];
                    }
                    grads[s.at + nw + j] += d[j];
                }
                d = (0..s.inputs)
                    .map(|k| {
                        (0..s.outputs)
                            .map(|j| p[s.at + j * s.inputs + k].abs() * d[j])
                            .sum()
                    })
                    .collect();
            }
        }
        Scales {
            grads,
            loss,
            outputs,
            up,
            down,
        }
    }

    /// Widens `up`/`down` (see `Scales::up`) by one sample's undecided kinks: each unit of a
    /// kinked activation whose `z` is within its layer's forward tolerance `near[layer]` (per
    /// unit of its terms' size `zbar`, the layer's entry of `abar` one past its input) of 0,
    /// the difference that taking `f'` from the other side makes to the sample's gradient
    /// term.
    #[allow(clippy::too_many_arguments, reason = "one sample's whole context")]
    fn span_kinks(
        &self,
        p: &[f64],
        xs: &[f64],
        ys: &Target,
        abar: &[Vec<f64>],
        near: &[f64],
        n: f64,
        up: &mut [f64],
        down: &mut [f64],
    ) {
        if !self.shapes.iter().any(Shape::kinked) {
            return;
        }
        let trace = self.forward(p, xs);
        let mut base: Option<(Vec<f64>, Vec<f64>)> = None;
        for (li, s) in self.shapes.iter().enumerate() {
            if !s.kinked() {
                continue;
            }
            for (j, (z, zbar)) in trace.z[li].iter().zip(&abar[li + 1]).enumerate() {
                if z.abs() > near[li] * zbar + super::UNDERFLOW {
                    continue;
                }
                let (da, base) = base.get_or_insert_with(|| {
                    let da = self.head_loss(&trace.out, ys).1;
                    let mut base = vec![0.0; self.params];
                    self.backward(p, &trace, &da, n, None, &mut base);
                    (da, base)
                });
                let mut flipped = vec![0.0; self.params];
                self.backward(p, &trace, da, n, Some((li, j)), &mut flipped);
                for (i, (f, b)) in flipped.iter().zip(base.iter()).enumerate() {
                    let diff = f - b;
                    if diff > 0.0 {
                        up[i] += diff;
                    } else {
                        down[i] -= diff;
                    }
                }
            }
        }
    }

    /// The number of terms of the longest chain of sums for a batch of `n`: the batch sum,
    /// every layer's inputs, the head's sum over the outputs, and eight for `exp`/`ln` and
    /// upstream error per layer and for the head (the `MLP` row's accounting, per layer).
    pub fn terms(&self, n: usize) -> usize {
        let last = self.shapes.last().expect("a layer").outputs;
        n + self.shapes.iter().map(|s| s.inputs + 8).sum::<usize>() + last + 8
    }
}

/// What `f32` rounding can do to each result, relative to: the chain rule run on magnitudes
/// (as tests/model.rs does for the `Mlp`, per layer). Forward, an activation's error is
/// relative to the size of its terms `|b| + sum |W| abar` (smooth activations: `1.2 abar + 1`,
/// their own few-ulp error and slopes up to 1.13); backward, `dL/dz` of the last layer is
/// relative to `max(1, logit size) / N` (softmax), `2 (|a| + |t| + 1) / (N O)` (MSE) or
/// `max(1, |a|) / (N O)` (binary cross-entropy), and each layer's by `sum |W| d` (times 1.2
/// through a smooth activation's derivative).
#[derive(Debug, Clone)]
pub struct Scales {
    /// Per parameter, `write_params` order.
    pub grads: Vec<f64>,
    /// Of the mean loss.
    pub loss: f64,
    /// Of each sample's head outputs.
    pub outputs: Vec<Vec<f64>>,
    /// Per parameter, how far ReLU's and leaky ReLU's kinks leave the gradient undecided
    /// upwards, and `down` downwards: a unit whose `z` is within the tolerance of 0 may
    /// fall on either side in `f32`, whatever the oracle decides, and the sides differ by
    /// that sample's whole term through the unit, which no tolerance proportional to the
    /// terms' size covers. The `f32` gradient must be within the tolerance of
    /// `[want - down, want + up]`; both are 0 wherever no such unit is.
    pub up: Vec<f64>,
    /// See `up`.
    pub down: Vec<f64>,
}

/// The tolerance of a `Network` result against the oracle for a batch of `n`: the `MLP` row
/// of the table (4 u per term of the longest chain of sums, times the magnitude scale),
/// counted per layer by [`NetOracle::terms`].
pub fn net_tol(oracle: &NetOracle<'_>, n: usize) -> super::Tol {
    super::Tol {
        abs: super::MLP.abs_per_term * oracle.terms(n) as f64,
        rel: super::MLP.rel,
    }
}

/// Sets every parameter of `net` from `seed` as the `Mlp` strategies do: weights uniform in
/// twice the Glorot range (so ReLUs switch on and off), biases uniform in `±0.5`.
pub fn randomize<L: Layer, H: Head<L::Out>>(net: &mut Network<L, H>, seed: u64) {
    let mut rng = fusedprop::rng::SplitMix64::new(seed ^ 0x5eed_f00d);
    let mut shapes = Vec::new();
    net.visit_layers(|info, _| shapes.push((info.inputs, info.outputs)));
    let mut p = Vec::with_capacity(L::PARAMS);
    for (i, o) in shapes {
        let limit = 2.0 * (6.0 / (i + o) as f64).sqrt();
        p.extend((0..i * o).map(|_| rng.uniform(limit)));
        p.extend((0..o).map(|_| rng.uniform(0.5)));
    }
    net.read_params(&p).expect("finite");
}

/// `n` rows of `N` inputs from `seed`: uniform in `±range`, about one value in sixteen an edge
/// value (signed zeros, `±1`, `±1e-30`).
pub fn input_rows<const N: usize>(seed: u64, n: usize, range: f64) -> Vec<[f32; N]> {
    let mut rng = fusedprop::rng::SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            core::array::from_fn(|_| {
                if rng.next_u64().is_multiple_of(16) {
                    super::EDGE_VALUES[(rng.next_u64() % 6) as usize]
                } else {
                    rng.uniform(range)
                }
            })
        })
        .collect()
}

/// Targets of a head, drawn from a seed.
pub trait DrawTargets<S>: Head<S>
where
    S: fusedprop::Shape,
{
    /// `n` valid targets.
    fn draw(seed: u64, n: usize) -> Vec<Self::T>;
}

impl<const O: usize> DrawTargets<Dim<O>> for fusedprop::SoftmaxCrossEntropy {
    fn draw(seed: u64, n: usize) -> Vec<u32> {
        let mut rng = fusedprop::rng::SplitMix64::new(seed);
        (0..n).map(|_| (rng.next_u64() % O as u64) as u32).collect()
    }
}

impl<const O: usize> DrawTargets<Dim<O>> for fusedprop::MeanSquaredError {
    fn draw(seed: u64, n: usize) -> Vec<[f32; O]> {
        let mut rng = fusedprop::rng::SplitMix64::new(seed);
        (0..n)
            .map(|_| core::array::from_fn(|_| rng.uniform(2.0)))
            .collect()
    }
}

impl<const O: usize> DrawTargets<Dim<O>> for fusedprop::BinaryCrossEntropy {
    fn draw(seed: u64, n: usize) -> Vec<[f32; O]> {
        let mut rng = fusedprop::rng::SplitMix64::new(seed);
        (0..n)
            .map(|_| {
                core::array::from_fn(|_| match rng.next_u64() % 4 {
                    0 => 0.0,
                    1 => 1.0,
                    _ => rng.next_f64() as f32,
                })
            })
            .collect()
    }
}
