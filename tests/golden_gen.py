#!/usr/bin/env python3
"""Generates the literal expected values of tests/golden.rs, independently of the crate.

Run: python3 tests/golden_gen.py   (written with numpy 2.4.6; any numpy >= 1.20 works)

The network is Dense(2 -> 3, ReLU) -> Dense(3 -> 2, softmax) with literal weights, in the
crate's layout (W[out][in], as PyTorch). The batch has three samples, so that a sum where a
mean belongs would be off by a factor of three, and one hidden unit is inactive (negative
pre-activation) for some samples, so that the ReLU mask matters. Everything is computed in
float64 from the formulas written out below (no autodiff, no shared code with the crate);
the weights are exactly representable in float32, so the crate sees the same network.
"""

import numpy as np

W1 = np.array([[0.5, -0.25], [-0.75, 1.0], [0.25, 0.5]])
b1 = np.array([0.125, -0.5, -0.25])
W2 = np.array([[1.0, -0.5, 0.75], [-0.25, 0.5, -1.0]])
b2 = np.array([0.0, 0.25])
X = np.array([[1.0, 2.0], [-1.5, 0.5], [2.0, -1.0]])
Y = np.array([1, 0, 1])
LR = 0.5

# Forward.
U = X @ W1.T + b1  # pre-activations, one row per sample
A = np.maximum(U, 0.0)  # ReLU
Z = A @ W2.T + b2  # logits
E = np.exp(Z - Z.max(axis=1, keepdims=True))
P = E / E.sum(axis=1, keepdims=True)
N = X.shape[0]
loss = -np.mean(np.log(P[np.arange(N), Y]))

# Backward, by hand.
onehot = np.eye(2)[Y]
dZ = (P - onehot) / N  # gradient of the MEAN loss
dW2 = dZ.T @ A
db2 = dZ.sum(axis=0)
dA = dZ @ W2
dU = dA * (U > 0)  # ReLU derivative 0 at and below 0
dW1 = dU.T @ X
db1 = dU.sum(axis=0)

# A numerical cross-check of the hand derivation, so the literals are not just the same
# mistake written twice: central differences of the loss in float64.
def loss_of(w1, bb1, w2, bb2):
    a = np.maximum(X @ w1.T + bb1, 0.0)
    z = a @ w2.T + bb2
    z = z - z.max(axis=1, keepdims=True)
    return -np.mean(z[np.arange(N), Y] - np.log(np.exp(z).sum(axis=1)))

params = [W1, b1, W2, b2]
grads = [dW1, db1, dW2, db2]
for which, (p, g) in enumerate(zip(params, grads)):
    for idx in np.ndindex(p.shape):
        h = 1e-6
        plus = [q.copy() for q in params]
        minus = [q.copy() for q in params]
        plus[which][idx] += h
        minus[which][idx] -= h
        fd = (loss_of(*plus) - loss_of(*minus)) / (2 * h)
        assert abs(fd - g[idx]) < 1e-8, (which, idx, fd, g[idx])

assert (U <= 0).any() and (U > 0).any(), "the ReLU mask must matter"


def lit(a):
    a = np.asarray(a)
    if a.ndim == 0:
        return repr(float(a))
    return "[" + ", ".join(lit(v) for v in a) + "]"


print("numpy", np.__version__)
print(f"const LOSS: f64 = {lit(loss)};")
print(f"const PROBS: [[f64; 2]; 3] = {lit(P)};")
print(f"const DW1: [[f64; 2]; 3] = {lit(dW1)};")
print(f"const DB1: [f64; 3] = {lit(db1)};")
print(f"const DW2: [[f64; 3]; 2] = {lit(dW2)};")
print(f"const DB2: [f64; 2] = {lit(db2)};")
print(f"const W1_AFTER: [[f64; 2]; 3] = {lit(W1 - LR * dW1)};")
print(f"const B1_AFTER: [f64; 3] = {lit(b1 - LR * db1)};")
print(f"const W2_AFTER: [[f64; 3]; 2] = {lit(W2 - LR * dW2)};")
print(f"const B2_AFTER: [f64; 2] = {lit(b2 - LR * db2)};")
print(f"const LOSS_AFTER: f64 = {lit(loss_of(W1 - LR * dW1, b1 - LR * db1, W2 - LR * dW2, b2 - LR * db2))};")
