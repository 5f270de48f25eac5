"""The sympile implementation of a workload, on the backend the command line chose.

>>> import sympile.tensor as st
>>> impl = sympile_impl("numpy", lambda: ([x := st.dvector("x")], x + 1), [np.zeros(2)])
>>> impl.build()().tolist()
[1.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from harness import Impl
from peers import Unavailable


def default_backend() -> str:
    """'cpu' once the LLVM backend is registered, else the numpy reference interpreter."""
    from sympile.runtime.backends import BACKENDS

    return "cpu" if "cpu" in BACKENDS else "numpy"


def impl_name(backend: str) -> str:
    return f"sympile[{backend}]"


def sympile_impl(backend: str, graph: Callable[[], tuple[list, object]], args: list[np.ndarray],
                 needs: tuple[str, ...] = ()) -> Impl:  # fmt: skip
    """An Impl that compiles ``graph()`` -> (inputs, outputs) with ``sympile.function`` and calls it on ``args``.

    ``needs`` names sympile attributes the graph uses (e.g. 'grad'); a missing one makes the row 'n/a'.
    """

    def build():
        import sympile

        for attr in needs:
            if not hasattr(sympile, attr):
                raise Unavailable(f"needs sympile.{attr}")
        inputs, outputs = graph()
        f = sympile.function(inputs, outputs, backend=backend)
        return lambda: f(*args)

    return Impl(impl_name(backend), build)
