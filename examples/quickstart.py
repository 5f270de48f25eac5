"""sympile in one minute: build a symbolic expression, compile it, call it, look at its graph.

Run it with ``make demo`` (or ``.venv/bin/python examples/quickstart.py [graph.dot]``).
"""

from __future__ import annotations

import os
import sys

import numpy as np

import sympile as sp
import sympile.tensor as st
from sympile.printing import debugprint, pydotprint


def main(dot_path: str = "quickstart_graph.dot") -> None:
    # 1. Symbolic inputs: a float64 matrix and vector. Nothing is computed yet.
    x = st.dmatrix("x")
    w = st.dvector("w")

    # 2. An expression graph: the logistic function of x @ w, and its mean.
    p = 1 / (1 + st.exp(-(x @ w)))
    mean_p = p.mean()

    # 3. Compile to a callable with two outputs, then call it with plain Python or numpy data.
    f = sp.function([x, w], [p, mean_p])
    data = np.array([[0.0, 1.0], [2.0, -1.0], [-3.0, 0.5]])
    probs, avg = f(data, [0.5, -0.25])
    print("probabilities:", np.round(probs, 4))
    print("mean:", float(avg))
    assert np.allclose(probs, 1 / (1 + np.exp(-(data @ [0.5, -0.25]))))  # same as numpy

    # 4. Shared variables keep state between calls; updates apply after the outputs are computed.
    total = sp.shared(0.0, name="total")
    accumulate = sp.function([w], total, updates=[(total, total + w.sum())])
    accumulate([1.0, 2.0])
    accumulate([3.0, 4.0])
    print("accumulated total:", float(total.get_value()))

    # 5. Look at what was compiled: the optimized graph as text, and as a Graphviz DOT file.
    print("\ndebugprint(f):")
    debugprint(f)
    written = pydotprint(f, outfile=dot_path, format="dot")
    print(f"\nwrote the graph as DOT to {os.path.abspath(written)}")
    print(f"render it with Graphviz: dot -Tsvg {written} -o quickstart_graph.svg")


if __name__ == "__main__":
    main(*sys.argv[1:2])
