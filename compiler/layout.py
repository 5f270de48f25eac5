"""Memory layout for kernel launches: merging the dimensions every operand walks as one.

Shared by the CPU and CUDA backends, so both give a kernel the same (shortest) loop nest.
"""

from __future__ import annotations


def collapse_dims(shape: tuple, strides: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Merge dimensions that every operand (and the C-contiguous output) walks as one, drop size-1 ones, and
    pad back to the same rank with leading size-1 dimensions: the kernel's inner loop gets as long as it can.

    >>> collapse_dims((2, 3, 4), [[12, 4, 1], [0, 0, 1]])
    ([1, 6, 4], [[0, 4, 1], [0, 0, 1]])
    """
    nd = len(shape)
    out_strides, step = [0] * nd, 1
    for d in range(nd - 1, -1, -1):
        out_strides[d], step = step, step * shape[d]
    operands = [*strides, out_strides]
    dims: list[int] = []
    merged: list[list[int]] = [[] for _ in operands]
    for d in range(nd):
        if shape[d] == 1:
            continue
        if dims and all(m[-1] == st[d] * shape[d] for m, st in zip(merged, operands)):
            dims[-1] *= shape[d]
            for m, st in zip(merged, operands):
                m[-1] = st[d]
            continue
        dims.append(shape[d])
        for m, st in zip(merged, operands):
            m.append(st[d])
    pad = nd - len(dims)
    return [1] * pad + dims, [[0] * pad + m for m in merged[:-1]]
