"""Logistic regression trained by gradient descent: the classic Theano tutorial program, on sympile.

Random inputs with random 0/1 labels (400 samples, 784 features: more features than samples, so the training
set can be fitted exactly). ``sympile.grad`` gives the gradient of the regularised cross-entropy with respect to
the shared weights, and the compiled ``train`` function applies one descent step per call through ``updates``.

Run it with ``.venv/bin/python examples/logistic_regression.py [--steps N]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import sympile as sp
import sympile.tensor as st


def main(steps: int = 1000, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    n, feats = 400, 784
    data = (rng.standard_normal((n, feats)), rng.integers(0, 2, size=n).astype(np.float64))

    # symbolic inputs and the model's parameters, kept between calls in shared variables
    x = st.dmatrix("x")
    y = st.dvector("y")
    w = sp.shared(rng.standard_normal(feats) * 0.01, name="w")
    b = sp.shared(0.0, name="b")

    # the model: probability of class 1, the prediction, the cross-entropy and the cost to minimise
    p_1 = 1 / (1 + st.exp(-st.dot(x, w) - b))
    prediction = p_1 > 0.5
    xent = -y * st.log(p_1) - (1 - y) * st.log(1 - p_1)
    cost = xent.mean() + 0.01 * (w**2).sum()
    gw, gb = sp.grad(cost, [w, b])

    train = sp.function([x, y], [prediction, xent.mean()], updates=[(w, w - 0.1 * gw), (b, b - 0.1 * gb)])
    predict = sp.function([x], prediction)

    start = time.perf_counter()
    for step in range(1, steps + 1):
        _, err = train(*data)
        if step == 1 or step % max(steps // 5, 1) == 0:
            print(f"step {step:5d}  cross-entropy {float(err):.4f}")
    accuracy = float(np.mean(predict(data[0]) == data[1]))
    print(f"trained {steps} steps in {time.perf_counter() - start:.2f} s")
    print("target values for D:", data[1][:20].astype(int), "...")
    print("prediction on D:    ", predict(data[0])[:20].astype(int), "...")
    print(f"training accuracy: {100 * accuracy:.1f}%")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="gradient steps (default 1000)")
    main(parser.parse_args().steps)
