"""Shared data loading, workload definitions and timing helpers for the peer-framework
comparison scripts (bench_torch.py, bench_jax.py, bench_tf.py).

Everything is read relative to this file's own location, so the scripts work from any
current directory:

    ../../data/iris.csv               150 rows, 4 float features, class 0..2 (last column)
    ../../data/iris_split_order.txt   "train i0 i1 ..." (120 indices) / "test ..." (30 indices)
    ../../data/digits.csv             1797 rows, 64 features 0..16, class 0..9 (last column)
    ../../tests/tf_iris_seed7.json    TensorFlow reference: initial weights + 1000 losses

Only numpy and the standard library are used here, so that importing this module never
starts a framework (thread counts must be fixed before a framework is imported).
"""

import argparse
import csv
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
DATA = os.path.join(REPO, "data")
FIXTURE = os.path.join(REPO, "tests", "tf_iris_seed7.json")

LEARNING_RATE = 0.01

# ---------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------
# name: (inputs, hidden, outputs, samples per step)
WORKLOADS = {
    "A": dict(title="iris 4-32-3, full batch 120, 1000 epochs", shape=(4, 32, 3), batch=120, epochs=1000),
    "B": dict(title="digits 64-128-10, full batch 1797", shape=(64, 128, 10), batch=1797),
    "C": dict(title="synthetic MNIST 784-256-10, batch 256", shape=(784, 256, 10), batch=256),
}

FLOP_FORMULA = (
    "FLOP per sample = 2*(I*H + H*O) forward + 2*(I*H + H*O) weight gradients "
    "+ 2*(H*O) input gradient of the output layer = 4*(I*H + H*O) + 2*H*O "
    "(biases, activations, softmax and the SGD update are not counted; the first layer's "
    "input gradient is not computed)"
)


def flop_per_sample(i, h, o):
    """4*(I*H + H*O) + 2*H*O, see FLOP_FORMULA."""
    return 2 * (i * h + h * o) * 2 + 2 * (h * o)


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------
def _read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    body = np.array(rows[1:], dtype=np.float64)
    x = body[:, :-1].astype(np.float32)
    y = body[:, -1].astype(np.int64)
    return x, y


def read_split_order():
    """Returns (train_indices, test_indices) from iris_split_order.txt.

    The file holds two lines, "train <120 indices>" and "test <30 indices>"; a plain list of
    150 numbers (first 120 train, next 30 test) is accepted as well."""
    with open(os.path.join(DATA, "iris_split_order.txt")) as f:
        text = f.read()
    nums = [int(t) for t in text.split() if t.lstrip("-").isdigit()]
    if len(nums) != 150:
        raise ValueError(f"iris_split_order.txt: expected 150 indices, got {len(nums)}")
    return nums[:120], nums[120:]


def load_iris_train():
    """Workload A data: the 120 training rows (raw, unscaled features), in split order."""
    x, y = _read_csv(os.path.join(DATA, "iris.csv"))
    train, _ = read_split_order()
    fixture = load_fixture()
    if fixture.get("train_indices") and list(fixture["train_indices"]) != list(train):
        raise ValueError("iris_split_order.txt disagrees with the fixture's train_indices")
    return np.ascontiguousarray(x[train]), np.ascontiguousarray(y[train])


def load_fixture():
    with open(FIXTURE) as f:
        return json.load(f)


def iris_initial_weights():
    """Initial weights from the TF fixture, Keras layout: kernels are [in][out]."""
    init = load_fixture()["initial"]
    w1 = np.array(init["dense_kernel"], dtype=np.float32)      # 4 x 32
    b1 = np.array(init["dense_bias"], dtype=np.float32)        # 32
    w2 = np.array(init["dense_1_kernel"], dtype=np.float32)    # 32 x 3
    b2 = np.array(init["dense_1_bias"], dtype=np.float32)      # 3
    assert w1.shape == (4, 32) and w2.shape == (32, 3)
    return w1, b1, w2, b2


def iris_reference_losses():
    return np.array(load_fixture()["loss"], dtype=np.float64)


def load_digits():
    """Workload B data: all 1797 rows, pixels / 16."""
    x, y = _read_csv(os.path.join(DATA, "digits.csv"))
    assert x.shape == (1797, 64)
    return np.ascontiguousarray(x / np.float32(16.0), dtype=np.float32), y


SYNTH_SEED = 20240607
SYNTH_BATCHES = 8


def synthetic_mnist_batches(batch=256, n_batches=SYNTH_BATCHES, seed=SYNTH_SEED):
    """Workload C data: n_batches pre-made mini-batches of `batch` samples, features uniform
    in [0, 1), labels uniform in 0..9 (numpy PCG64, fixed seed). Steps cycle over them."""
    rng = np.random.default_rng(seed)
    xs = [rng.random((batch, 784), dtype=np.float32) for _ in range(n_batches)]
    ys = [rng.integers(0, 10, size=batch).astype(np.int64) for _ in range(n_batches)]
    return xs, ys


def glorot_weights(i, h, o, seed=7):
    """Deterministic Glorot-uniform kernels ([in][out], Keras layout) and zero biases, for
    workloads B and C (timing does not depend on the values)."""
    rng = np.random.default_rng(seed)

    def glorot(a, b):
        lim = np.sqrt(6.0 / (a + b))
        return rng.uniform(-lim, lim, size=(a, b)).astype(np.float32)

    return glorot(i, h), np.zeros(h, np.float32), glorot(h, o), np.zeros(o, np.float32)


# ---------------------------------------------------------------------------------------
# Threads (call before importing the framework)
# ---------------------------------------------------------------------------------------
def pin_threads(n):
    """Fix the thread count for the process before a framework is imported: the usual
    OpenMP/BLAS environment variables, plus CPU affinity to the first n cores (Linux), so
    that a framework that sizes its pools from the visible cores cannot use more."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = str(n)
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if n < len(cpus):
            os.sched_setaffinity(0, set(cpus[:n]))


# ---------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------
def median_time(fn, repeats, warmup=1):
    """Run fn() `warmup` times untimed, then `repeats` times timed; returns
    (median wall seconds per call, all wall times, CPU seconds / wall seconds over the
    timed calls). fn must block until its work is finished."""
    for _ in range(warmup):
        fn()
    walls = []
    cpu0 = time.process_time()
    w0 = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    wall_total = time.perf_counter() - w0
    cpu_total = time.process_time() - cpu0
    return statistics.median(walls), walls, cpu_total / wall_total


def calibrate_steps(step_block, target_seconds=0.25, max_steps=100000):
    """Number of steps per timed repeat so that one repeat takes about target_seconds.
    step_block(k) runs k steps and blocks."""
    k = 1
    while True:
        t0 = time.perf_counter()
        step_block(k)
        dt = time.perf_counter() - t0
        if dt >= target_seconds / 4 or k >= max_steps:
            return max(1, min(max_steps, int(k * target_seconds / max(dt, 1e-9))))
        k *= 4


def parse_args(framework):
    p = argparse.ArgumentParser(description=f"{framework} CPU training benchmark")
    p.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--variant", default=None, help="framework-specific variant")
    return p.parse_args()


def report(framework, version, workload, threads, seconds_per_unit, unit, samples_per_unit,
           flop_per_unit, cpu_per_wall, extra=None, variant=None):
    """Print one RESULT line (JSON) that run_all.py collects."""
    out = dict(
        framework=framework,
        variant=variant,
        version=version,
        workload=workload,
        threads=threads,
        unit=unit,
        seconds=seconds_per_unit,
        samples_per_s=samples_per_unit / seconds_per_unit,
        gflops=flop_per_unit / seconds_per_unit / 1e9,
        cpu_per_wall=cpu_per_wall,
        python=sys.version.split()[0],
    )
    if extra:
        out.update(extra)
    print("RESULT " + json.dumps(out), flush=True)
    return out


def iris_loss_check(losses):
    """Compares a run's 1000 per-epoch losses (loss[e] computed in epoch e+1 before that
    epoch's update) against the fixture."""
    ref = iris_reference_losses()
    losses = np.asarray(losses, dtype=np.float64)
    return dict(
        final_loss=float(losses[-1]),
        ref_final_loss=float(ref[-1]),
        max_abs_loss_diff=float(np.max(np.abs(losses - ref[: len(losses)]))),
        first_loss=float(losses[0]),
        ref_first_loss=float(ref[0]),
    )
