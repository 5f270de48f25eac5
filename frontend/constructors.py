"""Symbolic input constructors with Theano/PyTensor names: ``dvector('x')``, ``fmatrices('a', 'b')``, ...

Prefixes: b int8, w int16, i int32, l int64, f float32, d float64; unprefixed forms use ``config.floatX``.

>>> x = tensor("float32", shape=(None, 3), name="x")
>>> x.type
TensorType(float32, (?, 3))
"""

from __future__ import annotations

from sympile.compiler.graph import input_node

from .config import config
from .variable import TensorVariable

PREFIXES = {"b": "int8", "w": "int16", "i": "int32", "l": "int64", "f": "float32", "d": "float64"}
RANKS = {"scalar": 0, "vector": 1, "matrix": 2, "tensor3": 3, "tensor4": 4, "tensor5": 5}
PLURALS = {"scalar": "scalars", "vector": "vectors", "matrix": "matrices", "tensor3": "tensor3s",
           "tensor4": "tensor4s", "tensor5": "tensor5s"}  # fmt: skip


def tensor(dtype=None, shape=None, name=None, ndim=None) -> TensorVariable:
    """A symbolic input of ``dtype`` and static ``shape`` (``None`` entries are unknown dimensions).

    Give ``shape`` or ``ndim`` (all dimensions unknown). Two inputs are distinct even with equal names.
    """
    if shape is None:
        shape = (None,) * (ndim or 0)
    elif ndim is not None and ndim != len(shape):
        raise ValueError(f"ndim={ndim} does not match shape {shape}")
    return TensorVariable(input_node(dtype or config.floatX, tuple(shape), name))


def _maker(rank: int, dtype: str | None):
    def make(name=None, dtype=dtype, shape=None):
        if shape is not None and len(shape) != rank:
            raise ValueError(f"shape {shape} must have {rank} entries")
        return tensor(dtype, shape if shape is not None else (None,) * rank, name)

    return make


def _plural(single):
    def make(*names):
        """One variable per name, or ``n`` unnamed ones when given an int."""
        if len(names) == 1 and isinstance(names[0], int):
            return [single() for _ in range(names[0])]
        return [single(n) for n in names]

    return make


def _define_all(namespace: dict) -> list[str]:
    made = []
    for kind, rank in RANKS.items():
        for prefix, dtype in [("", None), *PREFIXES.items()]:
            single = _maker(rank, dtype)
            single.__name__ = prefix + kind
            single.__doc__ = f"A symbolic {dtype or 'floatX'} input of rank {rank}."
            plural = _plural(single)
            plural.__name__ = prefix + PLURALS[kind]
            namespace[single.__name__] = single
            namespace[plural.__name__] = plural
            made += [single.__name__, plural.__name__]
    return made


CONSTRUCTORS = _define_all(globals())
