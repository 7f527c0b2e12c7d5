"""TensorFlow / Keras (CPU) timings for workloads A, B, C.

The model is the Keras tutorial's: Sequential([Input(I), Dense(H, relu),
Dense(O, softmax)]), loss SparseCategoricalCrossentropy() on the softmax output (mean over
the batch), keras.optimizers.SGD(0.01).

Variants (--variant):
  A  fit     model.fit(x, y, epochs=1000, batch_size=120, verbose=0) as the tutorial runs it
             (Keras wraps its train step in a tf.function itself; the per-epoch Python
             callback/history machinery is included, as the tutorial pays it). The first
             fit call (tracing) is the warm-up and is not timed.
  A  eager   a plain eager GradientTape loop, 1000 iterations, no tf.function.
  B,C tf.function (default)  one @tf.function GradientTape step (graph mode, no XLA).
  B,C xla    the same step with @tf.function(jit_compile=True).

Usage: python bench_tf.py --workload {A,B,C} --threads N [--variant V] [--repeats R]
Threads: tf.config.threading.set_intra_op_parallelism_threads(N) and
set_inter_op_parallelism_threads(N) before any op (+ env vars and CPU affinity set
before import).
"""

import os

import common

args = common.parse_args("tensorflow")
common.pin_threads(args.threads)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(args.threads)

import keras  # noqa: E402
import numpy as np  # noqa: E402

LR = common.LEARNING_RATE


def version():
    return f"tensorflow {tf.__version__} / keras {keras.__version__}"


def make_model(weights):
    i = weights[0].shape[0]
    h = weights[0].shape[1]
    o = weights[2].shape[1]
    model = keras.Sequential([
        keras.Input(shape=(i,)),
        keras.layers.Dense(h, activation="relu"),
        keras.layers.Dense(o, activation="softmax"),
    ])
    model.set_weights(list(weights))  # Keras layout: kernels [in][out]
    return model


def main():
    wl = common.WORKLOADS[args.workload]
    i, h, o = wl["shape"]
    flop_sample = common.flop_per_sample(i, h, o)
    extra = {"flop_per_sample": flop_sample}
    loss_obj = keras.losses.SparseCategoricalCrossentropy()

    if args.workload == "A":
        variant = args.variant or "fit"
        x, y = common.load_iris_train()
        init = common.iris_initial_weights()
        epochs = wl["epochs"]
        model = make_model(init)
        last = {}

        if variant == "fit":
            model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR),
                          loss="sparse_categorical_crossentropy")

            def run(n_epochs=epochs):
                model.set_weights(list(init))
                hist = model.fit(x, y, epochs=n_epochs, batch_size=len(x), verbose=0,
                                 shuffle=False)
                last["losses"] = hist.history["loss"]

            run(1)  # trace/compile the train function (untimed)
        elif variant == "eager":
            opt = keras.optimizers.SGD(learning_rate=LR)
            xt, yt = tf.constant(x), tf.constant(y)

            def run():
                model.set_weights(list(init))
                losses = []
                for _ in range(epochs):
                    with tf.GradientTape() as tape:
                        loss = loss_obj(yt, model(xt, training=True))
                    grads = tape.gradient(loss, model.trainable_variables)
                    opt.apply_gradients(zip(grads, model.trainable_variables))
                    losses.append(loss)
                last["losses"] = [float(v) for v in losses]
        else:
            raise SystemExit(f"unknown variant {variant!r} for A (fit, eager)")

        # model.fit of 1000 epochs takes tens of seconds: 3 repeats, and its warm-up is
        # the 1-epoch fit above; the eager loop gets one full untimed warm-up run.
        if variant == "fit":
            sec, _, cpu = common.median_time(run, repeats=3, warmup=0)
        else:
            sec, _, cpu = common.median_time(run, repeats=max(3, args.repeats // 2), warmup=1)
        extra.update(common.iris_loss_check(last["losses"]))
        n = wl["batch"] * epochs
        return common.report("TensorFlow", version(), "A", args.threads, sec, "1000 epochs",
                             n, n * flop_sample, cpu, extra, variant=variant)

    variant = args.variant or "tf.function"
    if variant not in ("tf.function", "xla"):
        raise SystemExit(f"unknown variant {variant!r} for B/C (tf.function, xla)")
    if args.workload == "B":
        x_np, y_np = common.load_digits()
        xs, ys = [tf.constant(x_np)], [tf.constant(y_np)]
    else:
        bx, by = common.synthetic_mnist_batches(wl["batch"])
        xs = [tf.constant(b) for b in bx]
        ys = [tf.constant(b) for b in by]
    model = make_model(common.glorot_weights(i, h, o))
    opt = keras.optimizers.SGD(learning_rate=LR)
    opt.build(model.trainable_variables)

    @tf.function(jit_compile=(variant == "xla"))
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_obj(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    state = {"k": 0, "loss": None}

    def steps(k):
        loss = None
        for _ in range(k):
            j = state["k"] % len(xs)
            state["k"] += 1
            loss = step(xs[j], ys[j])
        state["loss"] = float(loss)  # waits for the last step

    steps(3)  # trace + warm-up
    k = common.calibrate_steps(steps)
    sec, _, cpu = common.median_time(lambda: steps(k), repeats=args.repeats, warmup=1)
    extra.update(steps_per_repeat=k, last_loss=state["loss"])
    n = wl["batch"]
    return common.report("TensorFlow", version(), args.workload, args.threads, sec / k,
                         "step", n, n * flop_sample, cpu, extra, variant=variant)


if __name__ == "__main__":
    main()
