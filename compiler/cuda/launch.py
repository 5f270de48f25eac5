"""Launch configurations: grid and block sizes for the GPU kernels (pure arithmetic, no driver).

Elementwise kernels are grid-stride loops: enough blocks to fill the GPU (``BLOCKS_PER_SM`` per
multiprocessor), never more than there are elements. Reductions put outputs along ``grid.y`` (each block
walks outputs ``by, by + nctaid_y, ...``) and split each output's elements across ``grid.x`` blocks when there
are few outputs, so a full reduction still fills the GPU; the second pass combines the ``grid.x`` partials.

>>> elementwise_launch(1000, sm_count=4)
((4, 1), (256, 1, 1))
>>> reduction_launch(1, 1 << 20, sm_count=4)
((32, 1), (256, 1, 1))
"""

from __future__ import annotations

BLOCK = 256
BLOCKS_PER_SM = 32
#: CUDA's limit on grid.y
MAX_GRID_Y = 65535
#: each thread of a reduction takes at least this many elements before the grid is split further
MIN_PER_THREAD = 8
#: the second pass combines at most this many partials per output, serially
MAX_PARTS = 1024
#: a matmul thread computes TILE x TILE outputs; TX threads of a block span the columns (blockDim.x / TX the rows)
TILE = 4
TX = 16


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def elementwise_launch(n: int, sm_count: int = 108, block: int = BLOCK) -> tuple[tuple, tuple]:
    """``(grid, block)`` for an elementwise kernel over ``n`` elements.

    >>> elementwise_launch(10, sm_count=1)
    ((1, 1), (256, 1, 1))
    """
    blocks = max(1, min(_ceil_div(n, block), sm_count * BLOCKS_PER_SM))
    return (blocks, 1), (block, 1, 1)


def reduction_block(n_red: int) -> int:
    """Threads per block for rows of ``n_red`` elements: a multiple of the warp size, at most BLOCK.

    >>> reduction_block(5), reduction_block(100), reduction_block(10**6)
    (32, 128, 256)
    """
    block = 32
    while block < BLOCK and block < n_red:
        block *= 2
    return block


def reduction_launch(n_out: int, n_red: int, sm_count: int = 108) -> tuple[tuple, tuple]:
    """``((grid_x, grid_y), block)`` for the partial pass of a reduction of ``n_out`` outputs of ``n_red``
    elements each; ``grid_x`` partials per output go to the second pass.

    >>> reduction_launch(4096, 1024, sm_count=108)
    ((1, 4096), (256, 1, 1))
    """
    block = reduction_block(n_red)
    grid_y = max(1, min(n_out, MAX_GRID_Y))
    wanted = _ceil_div(sm_count * BLOCKS_PER_SM // 4, grid_y)  # blocks per output to fill the GPU
    useful = _ceil_div(n_red, block * MIN_PER_THREAD)  # beyond this a thread would have too little to do
    grid_x = max(1, min(wanted, useful, MAX_PARTS))
    return (grid_x, grid_y), (block, 1, 1)


def matmul_launch(m: int, n: int, layout: tuple = (TILE, TILE, TX), block: int = BLOCK) -> tuple[tuple, tuple]:
    """``(grid, block)`` for the matmul kernel of an ``m x n`` result with the thread layout ``(tm, tn, tx)``:
    one block per ``(block/tx*tm) x (tx*tn)`` tile (64 x 64 for the default layout with 256 threads), at most
    65535 along each axis (blocks then take several).

    >>> matmul_launch(1000, 100)
    ((2, 16), (256, 1, 1))
    >>> matmul_launch(1, 5000, (1, 4, 256))
    ((5, 1), (256, 1, 1))
    """
    tm, tn, tx = layout
    rows, cols = block // tx * tm, tx * tn
    return (max(1, min(_ceil_div(n, cols), MAX_GRID_Y)), max(1, min(_ceil_div(m, rows), MAX_GRID_Y))), (block, 1, 1)


def final_launch(n_out: int, sm_count: int = 108) -> tuple[tuple, tuple]:
    """``(grid, block)`` for the second pass: one thread per output.

    >>> final_launch(1)
    ((1, 1), (128, 1, 1))
    """
    block = 128
    return (max(1, min(_ceil_div(n_out, block), sm_count * BLOCKS_PER_SM)), 1), (block, 1, 1)


__all__ = ["elementwise_launch", "final_launch", "matmul_launch", "reduction_block", "reduction_launch"]
