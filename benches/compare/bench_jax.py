"""JAX (CPU, XLA-compiled) timings for workloads A, B, C.

A: the whole 1000-epoch training loop is one jitted function (jax.lax.scan over epochs,
   which also returns the per-epoch losses); the compile happens in the warm-up call and
   is not timed.
B, C: one jitted SGD step (value_and_grad + update, parameters donated), called from a
   Python loop; the timed block ends with block_until_ready().

Usage: python bench_jax.py --workload {A,B,C} --threads N [--repeats R]
Threads: for N=1 the process runs with
   XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
and is pinned to one core (sched_setaffinity) before jax is imported; XLA has no public
per-process thread-count knob on CPU, so the affinity is what guarantees one core. For
N=2 nothing is set (2 is every core of the benchmark machine).
"""

import os

import common

args = common.parse_args("jax")
common.pin_threads(args.threads)
if args.threads == 1:
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                               "intra_op_parallelism_threads=1").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jaxlib  # noqa: E402

LR = common.LEARNING_RATE


def loss_fn(params, x, y):
    w1, b1, w2, b2 = params
    hid = jax.nn.relu(x @ w1 + b1)
    logits = hid @ w2 + b2
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def sgd(params, grads):
    return tuple(p - LR * g for p, g in zip(params, grads))


def version():
    return f"jax {jax.__version__} / jaxlib {jaxlib.__version__}"


def main():
    wl = common.WORKLOADS[args.workload]
    i, h, o = wl["shape"]
    flop_sample = common.flop_per_sample(i, h, o)
    extra = {"flop_per_sample": flop_sample, "xla_flags": os.environ.get("XLA_FLAGS", "")}

    if args.workload == "A":
        x_np, y_np = common.load_iris_train()
        x, y = jnp.asarray(x_np), jnp.asarray(y_np.astype("int32"))
        init = tuple(jnp.asarray(a) for a in common.iris_initial_weights())
        epochs = wl["epochs"]

        @jax.jit
        def train(params, x, y):
            def body(p, _):
                loss, g = jax.value_and_grad(loss_fn)(p, x, y)
                return sgd(p, g), loss
            return jax.lax.scan(body, params, None, length=epochs)

        last = {}

        def run():
            params, losses = train(init, x, y)
            jax.block_until_ready((params, losses))
            last["losses"] = losses

        run()  # compile (untimed)
        sec, _, cpu = common.median_time(run, repeats=args.repeats, warmup=1)
        extra.update(common.iris_loss_check(jax.device_get(last["losses"])))
        n = wl["batch"] * epochs
        return common.report("JAX", version(), "A", args.threads, sec, "1000 epochs", n,
                             n * flop_sample, cpu, extra)

    if args.workload == "B":
        x_np, y_np = common.load_digits()
        xs, ys = [jnp.asarray(x_np)], [jnp.asarray(y_np.astype("int32"))]
    else:
        bx, by = common.synthetic_mnist_batches(wl["batch"])
        xs = [jnp.asarray(b) for b in bx]
        ys = [jnp.asarray(b.astype("int32")) for b in by]

    def step_fn(params, x, y):
        loss, g = jax.value_and_grad(loss_fn)(params, x, y)
        return sgd(params, g), loss

    step = jax.jit(step_fn, donate_argnums=0)  # parameters updated in place
    state = {"p": tuple(jnp.asarray(a) for a in common.glorot_weights(i, h, o)), "k": 0,
             "loss": None}

    def steps(k):
        p = state["p"]
        loss = None
        for _ in range(k):
            j = state["k"] % len(xs)
            state["k"] += 1
            p, loss = step(p, xs[j], ys[j])
        jax.block_until_ready((p, loss))
        state["p"], state["loss"] = p, loss

    steps(3)  # compile + warm-up
    k = common.calibrate_steps(steps)
    sec, _, cpu = common.median_time(lambda: steps(k), repeats=args.repeats, warmup=1)
    extra.update(steps_per_repeat=k, last_loss=float(state["loss"]))
    n = wl["batch"]
    return common.report("JAX", version(), args.workload, args.threads, sec / k, "step", n,
                         n * flop_sample, cpu, extra)


if __name__ == "__main__":
    main()
