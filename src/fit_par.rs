//! Many independent models at once (feature `rayon`): an ensemble, the folds of a
//! cross-validation, a sweep over learning rates or seeds, each trained by [`Network::fit`]
//! on one of rayon's threads.
//!
//! Each model is a task that touches only its own network, optimizer state, workspace and
//! buffers, and [`Network::fit`] is serial and deterministic, so every model's result is bit
//! for bit what training it alone gives, whatever the number of threads and whatever order
//! the tasks run in. Parallelism over models suits the small networks this crate trains
//! best: one small step is too short to split over threads (a fork-join costs about as much
//! as a 16-sample step of a 4-32-3 network), a whole training run is not.
//!
//! [`Network::fit`]: crate::Network::fit

use rayon::prelude::*;

/// Calls `train(i, &mut jobs[i])` for every job, spread over rayon's threads (the current
/// pool: run it inside `ThreadPool::install` to choose one), one job per task. A job is
/// whatever one model needs: typically its network, optimizer, optimizer state,
/// [`FitWorkspace`](crate::FitWorkspace), permutation buffer and a slot for its result.
/// Nothing is allocated beyond rayon's own bookkeeping.
///
/// # Examples
/// Four learning rates, trained at once; each result is that of training the model alone.
/// ```
/// use core::ops::ControlFlow;
/// use fusedprop::fit_par::fit_each;
/// use fusedprop::{chain, Dense, FitConfig, FitData, FitWorkspace, Network, OptimizerState,
///                 Relu, Sgd, SoftmaxCrossEntropy};
///
/// type L = chain![Dense<2, 8, Relu>, Dense<8, 2>];
/// struct Job {
///     lr: f32,
///     net: Network<L, SoftmaxCrossEntropy>,
///     loss: f32,
/// }
/// let x = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
/// let y = [0, 1, 1, 0];
/// let train = |job: &mut Job| {
///     let sgd = Sgd::new(job.lr).unwrap();
///     let (mut state, mut ws) = (OptimizerState::new(), FitWorkspace::<L, _, 1>::new());
///     let mut order = [0; 4];
///     let summary = job.net
///         .fit(FitData::new(&x, &y, &mut order), &sgd, &mut state, &mut ws,
///              &FitConfig::new(4, 50), |_| ControlFlow::Continue(()))
///         .unwrap();
///     job.loss = summary.last.unwrap().loss;
/// };
/// let mut jobs: Vec<Job> = [0.01, 0.03, 0.1, 0.3]
///     .iter()
///     .map(|&lr| Job { lr, net: Network::new(1), loss: 0.0 })
///     .collect();
/// fit_each(&mut jobs, |_, job| train(job));
///
/// let mut alone = Job { lr: 0.1, net: Network::new(1), loss: 0.0 };
/// train(&mut alone);
/// assert!(alone.net == jobs[2].net && alone.loss.to_bits() == jobs[2].loss.to_bits());
/// ```
pub fn fit_each<T: Send>(jobs: &mut [T], train: impl Fn(usize, &mut T) + Sync + Send) {
    jobs.par_iter_mut()
        .with_max_len(1)
        .enumerate()
        .for_each(|(i, job)| train(i, job));
}
