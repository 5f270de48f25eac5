"""Where numpy keeps an array's data pointer, and reading it fast (:func:`data_pointer`).

>>> import numpy as np
>>> a = np.arange(4.0)
>>> data_pointer(a) == a.__array_interface__["data"][0]
True
"""

from __future__ import annotations

import ctypes

import numpy as np


def _find_data_offset() -> int | None:
    """Where ndarray objects keep their data pointer (numpy's public PyArrayObject_fields: after the object
    header), checked on live arrays and views; ``None`` if not found (then the slower documented way is used)."""
    base = np.arange(16.0)
    probes = [base, base[3:], base[::-2], np.empty((2, 3), np.int8)[1:]]
    for offset in range(8, 65, 8):
        if all(ctypes.c_int64.from_address(id(p) + offset).value == p.__array_interface__["data"][0] for p in probes):
            return offset
    return None


DATA_OFFSET = _find_data_offset()
_word_at = ctypes.c_int64.from_address


def data_pointer(a: np.ndarray) -> int:
    """The address of ``a``'s first element: 5x cheaper than ``a.__array_interface__`` (0.3 vs 1.4 us), which
    matters for the per-call cost of small arrays.

    >>> a = np.zeros(4)
    >>> data_pointer(a[1:]) - data_pointer(a)
    8
    """
    if DATA_OFFSET is None:
        return a.__array_interface__["data"][0]
    return _word_at(id(a) + DATA_OFFSET).value
