"""The op declarations, one module per family; importing this package fills ``optable.OPS``."""

from . import elementwise, indexing, linalg, nn, reductions, shapes  # noqa: F401
