"""Indexing with numpy's rules: getitem (basic and advanced), set_subtensor and inc_subtensor.

The index is an attribute, a tuple of entries; symbolic parts (integer scalars, index arrays) are graph
inputs referred to as ``("in", j)``:

- ``("int", i)``: an integer (drops the axis);
- ``("slice", start, stop, step)``: each an int, ``None`` or a reference;
- ``("new",)``: ``None`` / ``np.newaxis``;
- ``("array", ref)``: an integer or boolean array (advanced indexing);
- ``("ellipsis",)``: an Ellipsis that stands for no dimension at all. numpy still counts it as separating
  advanced indices (``x[:, 0, ..., mask]`` puts the advanced dimensions first), so it is kept.

Ellipsis is otherwise expanded by the frontend, which knows the rank.
"""

from __future__ import annotations

import numpy as np

from .. import build as b_
from ..errors import GraphIndexError, GraphTypeError, GraphValueError
from ..graph import const_value
from ..optable import OPS, defop
from ..types import TensorType, broadcast_shapes, shape_str
from .inference import DtypeOverflowError, check_index_in_range, static_int


def is_ref(v) -> bool:
    return isinstance(v, tuple) and len(v) == 2 and v[0] == "in"


def _consumed(entry, idx_nodes) -> int:
    if entry[0] in ("new", "ellipsis"):
        return 0
    if entry[0] == "array":
        node = idx_nodes[entry[1][1]]
        return node.ndim if node.dtype == "bool" else 1
    return 1


def _literal(v, idx_nodes):
    return static_int(idx_nodes[v[1]]) if is_ref(v) else v


def indexed_shape(x_shape, spec, idx_nodes) -> tuple:
    """The static shape of ``x[spec]`` by numpy's rules, checking what is known at build time."""
    for entry in spec:
        for v in entry[1:]:
            if is_ref(v):
                node = idx_nodes[v[1]]
                if entry[0] == "array":
                    if node.type.np_dtype.kind not in "biu":
                        raise GraphTypeError(f"index arrays must be of integer or boolean type, got {node.dtype}")
                elif node.ndim != 0 or node.type.np_dtype.kind not in "iu":
                    raise GraphTypeError(f"an index or slice bound must be an integer scalar, got {node.type.short()}")
    used = sum(_consumed(e, idx_nodes) for e in spec)
    if used > len(x_shape):
        raise GraphIndexError(f"too many indices: {used} for a tensor of rank {len(x_shape)}")
    spec = tuple(spec) + (("slice", None, None, None),) * (len(x_shape) - used)
    has_array = any(e[0] == "array" for e in spec)
    axis = 0
    pieces = []  # (is_advanced, dims)
    adv_shapes = []
    for entry in spec:
        kind = entry[0]
        if kind == "new":
            pieces.append((False, (1,)))
            continue
        if kind == "ellipsis":
            pieces.append((False, ()))
            continue
        if kind == "int":
            dim = x_shape[axis]
            value = _literal(entry[1], idx_nodes)
            if value is not None:
                check_index_in_range(value, dim, axis)
            axis += 1
            if has_array:
                pieces.append((True, None))
                adv_shapes.append(())
            continue
        if kind == "slice":
            dim = x_shape[axis]
            start, stop, step = (_literal(v, idx_nodes) for v in entry[1:])
            if step == 0:
                raise GraphValueError("slice step cannot be zero")
            known = all(v is not None or not is_ref(r) for v, r in zip((start, stop, step), entry[1:]))
            length = len(range(*slice(start, stop, step).indices(dim))) if dim is not None and known else None
            pieces.append((False, (length,)))
            axis += 1
            continue
        node = idx_nodes[entry[1][1]]
        if node.dtype == "bool":
            dims = x_shape[axis : axis + node.ndim]
            for d, m in zip(dims, node.shape):
                if d is not None and m is not None and d != m:
                    raise GraphIndexError(
                        f"boolean index of shape {shape_str(node.shape)} does not match the indexed "
                        f"dimensions {shape_str(dims)}"
                    )
            mask = const_value(node)  # a constant mask selects a known number of elements
            adv_shapes.append((None,) if mask is None else (int(np.count_nonzero(mask)),))
            axis += node.ndim
        else:
            values = const_value(node)  # constant index arrays are checked against a known dimension now
            if values is not None and values.size:
                check_index_in_range(int(values.min()), x_shape[axis], axis)
                check_index_in_range(int(values.max()), x_shape[axis], axis)
            adv_shapes.append(node.shape)
            axis += 1
        pieces.append((True, None))
    if not has_array:
        return tuple(d for _, dims in pieces for d in dims)
    adv = broadcast_shapes(*adv_shapes, where=" as index arrays")
    flags = [p[0] for p in pieces]
    first = flags.index(True)
    last = len(flags) - 1 - flags[::-1].index(True)
    adjacent = all(flags[first : last + 1])
    basic = [(i, dims) for i, (is_adv, dims) in enumerate(pieces) if not is_adv]
    if adjacent:
        before = [d for i, dims in basic if i < first for d in dims]
        after = [d for i, dims in basic if i > last for d in dims]
        return tuple(before) + adv + tuple(after)
    return adv + tuple(d for _, dims in basic for d in dims)


def numpy_index(spec, values) -> tuple:
    """The numpy index tuple for ``spec`` given the index inputs' values."""

    def lit(v):
        return int(values[v[1]]) if is_ref(v) else v

    out = []
    for entry in spec:
        kind = entry[0]
        if kind == "int":
            out.append(lit(entry[1]))
        elif kind == "slice":
            out.append(slice(*(lit(v) for v in entry[1:])))
        elif kind == "new":
            out.append(None)
        elif kind == "ellipsis":
            out.append(Ellipsis)
        else:
            out.append(np.asarray(values[entry[1][1]]))
    return tuple(out)


def _normalize(offset):
    def normalize(inputs, attrs):
        spec = tuple(tuple(e) for e in attrs["index"])
        out = {"index": spec}
        if "mode" in attrs:
            if attrs["mode"] not in ("set", "inc"):
                raise GraphValueError(f"mode must be 'set' or 'inc', got {attrs['mode']!r}")
            out["mode"] = attrs["mode"]
        refs = sorted(v[1] for e in spec for v in e[1:] if is_ref(v))
        if refs != list(range(len(inputs) - offset)):
            raise GraphValueError("index references do not match the index inputs")
        return out

    return normalize


def _getitem_infer(inputs, attrs):
    x = inputs[0]
    return TensorType(x.dtype, indexed_shape(x.shape, attrs["index"], inputs[1:]))


def _getitem_impl(attrs, x, *idx):
    return np.asarray(x)[numpy_index(attrs["index"], idx)]


defop("getitem", (1, None), _getitem_infer, _getitem_impl, "index", normalize=_normalize(1))


def _setitem_infer(inputs, attrs):
    x, y = inputs[:2]
    target = indexed_shape(x.shape, attrs["index"], inputs[2:])
    if y.ndim > len(target):
        raise GraphValueError(
            f"cannot assign a value of shape {shape_str(y.shape)} to an indexed region of shape {shape_str(target)}"
        )
    broadcast_shapes(target, y.shape, where=" (indexed region and assigned value)")
    merged = broadcast_shapes(target, y.shape)
    # y may not grow the region (a region dim of 1 with a y dim > 1); an unknown y dim may be 1 at run time
    if any(t is not None and m is not None and m != t for t, m in zip(target, merged[len(merged) - len(target) :])):
        raise GraphValueError(
            f"value of shape {shape_str(y.shape)} does not fit the indexed region of shape {shape_str(target)}"
        )
    if y.op == "constant" and y.attrs.get("weak"):
        _check_weak_fits(y.attrs["value"].value.item(), x.type.np_dtype)
    elif not np.can_cast(y.type.np_dtype, x.type.np_dtype, "same_kind"):
        raise GraphTypeError(f"cannot assign {y.dtype} values into a {x.dtype} tensor (would lose data)")
    return x.type


def _check_weak_fits(value, dtype: np.dtype) -> None:
    """A Python scalar assigned into a tensor: any number into floats; into integers or bool only exactly."""
    if dtype.kind == "f":
        return
    if isinstance(value, float):
        raise GraphTypeError(f"cannot assign the Python float {value!r} into a {dtype.name} tensor (would lose data)")
    with np.errstate(all="ignore"):
        fits = np.array(value).astype(dtype) == value
    if not fits:
        raise DtypeOverflowError(f"Python integer {value!r} is out of bounds for {dtype.name}")


def _for_ufunc_at(index: tuple) -> tuple:
    """``np.add.at`` takes integer arrays; boolean masks become their nonzero() positions."""
    out = []
    for i in index:
        if isinstance(i, np.ndarray) and i.dtype == bool:
            out.extend(np.nonzero(i))
        else:
            out.append(i)
    return tuple(out)


def _setitem_impl(attrs, x, y, *idx):
    out = np.array(x, copy=True)
    index = numpy_index(attrs["index"], idx)
    if attrs["mode"] == "set":
        out[index] = y
    else:
        np.add.at(out, _for_ufunc_at(index), y)  # repeated indices accumulate
    return out


# setitem(x, y, *index_inputs, index=..., mode='set'|'inc'): a copy of x with x[index] set to (or
# incremented by) y. Backs set_subtensor and inc_subtensor.
defop("setitem", (2, None), _setitem_infer, _setitem_impl, "index", normalize=_normalize(2))


# --- gradients --------------------------------------------------------------------------------------------------
def _has_array(spec) -> bool:
    return any(e[0] == "array" for e in spec)


def _d_getitem(node, g):
    # scatter g into zeros; with index arrays, repeated indices accumulate (mode 'inc' is np.add.at)
    x, *idx = node.inputs
    spec = node.attrs["index"]
    mode = "inc" if _has_array(spec) else "set"
    return [b_.ap("setitem", b_.zeros_like(x, g.dtype), g, *idx, index=spec, mode=mode)] + [None] * len(idx)


def _d_setitem(node, g):
    # x's overwritten elements get nothing ('set'); y gets the cotangent of the region it lands in, summed
    # over the axes along which it was broadcast into that region
    x, y, *idx = node.inputs
    spec = node.attrs["index"]
    gx = g if node.attrs["mode"] == "inc" else b_.ap("setitem", g, 0.0, *idx, index=spec, mode="set")
    gy = b_.unbroadcast(b_.ap("getitem", g, *idx, index=spec), y)
    return [gx, gy] + [None] * len(idx)


OPS["getitem"].grad = _d_getitem
OPS["setitem"].grad = _d_setitem
