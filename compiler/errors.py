"""Exceptions raised while building, checking and running graphs.

They subclass the builtin TypeError/ValueError so callers can catch the usual types; the message names the
op or input, the expected and actual dtype/shape, and the user's source line where the node was created.
"""

from __future__ import annotations


class GraphTypeError(TypeError):
    """Wrong dtype, rank or arity: found while building a node or checking an argument."""


class GraphValueError(ValueError):
    """Wrong value or shape: shapes that do not broadcast, bad axes, out-of-range indices."""


class GraphIndexError(IndexError, GraphValueError):
    """An index out of range for a known dimension."""


def with_context(exc: Exception, context: str) -> Exception:
    """A copy of ``exc`` (same class when possible) whose message is prefixed by ``context``."""
    msg = f"{context}: {exc}"
    for cls in (type(exc), GraphTypeError if isinstance(exc, TypeError) else GraphValueError):
        try:
            return cls(msg)
        except Exception:  # noqa: BLE001 - some exception classes need other constructor arguments
            continue
    return GraphValueError(msg)
