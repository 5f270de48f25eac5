"""sympile: a Theano-style graph compiler for symbolic math.

>>> import sympile as sp
>>> import sympile.tensor as st
>>> x = st.dvector('x')
>>> f = sp.function([x], st.exp(-x ** 2) * st.sin(x))
>>> f([0.0]).tolist()
[0.0]
"""

from sympile.compiler.graph import register_internal_dir

register_internal_dir(__file__)

from . import gradient, printing, tensor  # noqa: E402
from .config import config  # noqa: E402
from .emit import emit  # noqa: E402
from .function import Function, function, shared  # noqa: E402
from .gradient import grad  # noqa: E402
from .variable import SharedVariable, TensorVariable  # noqa: E402

__version__ = "0.1.0"
__all__ = ["function", "shared", "grad", "emit", "gradient", "Function", "TensorVariable", "SharedVariable", "tensor",
           "printing", "config"]  # fmt: skip
