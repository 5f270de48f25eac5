"""The op declarations, one module per family; importing this package fills ``optable.OPS``."""

from . import elementwise, fused, gradient_ops, indexing, linalg, nn, reductions, shapes  # noqa: F401
