"""PyTorch (CPU, eager) timings for workloads A, B, C.

Idiomatic training loop: nn.Sequential(Linear, ReLU, Linear), nn.CrossEntropyLoss on the
logits (log-softmax + NLL, mean over the batch; same loss as Keras' softmax +
sparse_categorical_crossentropy), torch.optim.SGD(lr=0.01), zero_grad/backward/step.

Usage: python bench_torch.py --workload {A,B,C} --threads N [--repeats R]
Threads: torch.set_num_threads(N) (+ OMP/MKL env vars and CPU affinity set before import).
"""

import common

args = common.parse_args("torch")
common.pin_threads(args.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(args.threads)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass


def make_model(w1, b1, w2, b2):
    i, h = w1.shape
    o = w2.shape[1]
    model = nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))
    load_weights(model, w1, b1, w2, b2)
    return model


def load_weights(model, w1, b1, w2, b2):
    # Keras kernels are [in][out]; torch.nn.Linear.weight is [out][in].
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(np.ascontiguousarray(w1.T)))
        model[0].bias.copy_(torch.from_numpy(b1))
        model[2].weight.copy_(torch.from_numpy(np.ascontiguousarray(w2.T)))
        model[2].bias.copy_(torch.from_numpy(b2))


def main():
    wl = common.WORKLOADS[args.workload]
    i, h, o = wl["shape"]
    flop_sample = common.flop_per_sample(i, h, o)
    loss_fn = nn.CrossEntropyLoss()
    extra = {"flop_per_sample": flop_sample}

    if args.workload == "A":
        x_np, y_np = common.load_iris_train()
        x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
        init = common.iris_initial_weights()
        model = make_model(*init)
        opt = torch.optim.SGD(model.parameters(), lr=common.LEARNING_RATE)
        epochs = wl["epochs"]
        last = {}

        def run():
            load_weights(model, *init)  # every repeat starts from the fixture's weights
            losses = []
            for _ in range(epochs):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()
                losses.append(loss.detach())
            last["losses"] = torch.stack(losses).numpy()

        sec, _, cpu = common.median_time(run, repeats=max(3, args.repeats // 2), warmup=1)
        extra.update(common.iris_loss_check(last["losses"]))
        n = wl["batch"] * epochs
        return common.report("PyTorch", torch.__version__, "A", args.threads, sec,
                             "1000 epochs", n, n * flop_sample, cpu, extra)

    if args.workload == "B":
        x_np, y_np = common.load_digits()
        xs, ys = [torch.from_numpy(x_np)], [torch.from_numpy(y_np)]
    else:
        bx, by = common.synthetic_mnist_batches(wl["batch"])
        xs = [torch.from_numpy(b) for b in bx]
        ys = [torch.from_numpy(b) for b in by]
    model = make_model(*common.glorot_weights(i, h, o))
    opt = torch.optim.SGD(model.parameters(), lr=common.LEARNING_RATE)
    state = {"k": 0, "loss": None}

    def steps(k):
        for _ in range(k):
            j = state["k"] % len(xs)
            state["k"] += 1
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xs[j]), ys[j])
            loss.backward()
            opt.step()
        state["loss"] = float(loss.detach())  # CPU eager: already finished, just reads it

    steps(3)  # warm-up
    k = common.calibrate_steps(steps)
    sec, _, cpu = common.median_time(lambda: steps(k), repeats=args.repeats, warmup=1)
    extra.update(steps_per_repeat=k, last_loss=state["loss"])
    n = wl["batch"]
    return common.report("PyTorch", torch.__version__, args.workload, args.threads, sec / k,
                         "step", n, n * flop_sample, cpu, extra)


if __name__ == "__main__":
    main()
