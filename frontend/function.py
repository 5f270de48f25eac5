"""``sympile.function``: compile symbolic inputs -> outputs (+ shared-variable updates) into a callable.

>>> import sympile
>>> import sympile.tensor as st
>>> a, b = st.dscalars('a', 'b')
>>> f = sympile.function([a, b], a + b)
>>> float(f(2, 3))
5.0
"""

from __future__ import annotations

import warnings

import numpy as np

from sympile.compiler.errors import GraphTypeError, GraphValueError
from sympile.compiler.graph import Node, leaves, substitute
from sympile.compiler.pipeline import optimize as optimize_graph
from sympile.compiler.types import TensorType
from sympile.runtime import backends
from sympile.runtime.backends import get_backend

from .arguments import convert_argument
from .variable import SHARED_STORAGE, SharedVariable, TensorVariable, as_tensor_variable, wrap


def _pairs(mapping, what: str) -> list:
    if mapping is None:
        return []
    items = list(mapping.items()) if isinstance(mapping, dict) else list(mapping)
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError(f"{what} must be a dict or a list of (variable, expression) pairs, got {item!r}")
    return items


def _input_label(i: int, node: Node) -> str:
    return f"input {i} ({node.name!r})" if node.name else f"input {i}"


class Function:
    """A compiled function. Call it with positional arguments or by input name.

    Attributes: ``inputs``, ``outputs`` (the user's variables), ``graph`` (the optimized output nodes, update
    expressions last), ``backend``, ``rewrites`` (what the optimizer did), ``kernels`` (the compiled kernels).
    """

    def __init__(self, inputs, outputs, updates=None, givens=None, backend=None, optimize=True,
                 on_unused_input="raise", name=None, dump_dir=None):  # fmt: skip
        if on_unused_input not in ("raise", "warn", "ignore"):
            raise ValueError(f"on_unused_input must be 'raise', 'warn' or 'ignore', got {on_unused_input!r}")
        self.name = name
        self.single = not isinstance(outputs, (list, tuple))
        out_vars = [as_tensor_variable(o) for o in ([outputs] if self.single else outputs)]
        self.inputs = self._check_inputs(inputs)
        self.outputs = out_vars
        update_pairs = self._check_updates(_pairs(updates, "updates"))
        exprs = [o.node for o in out_vars] + [e for _, e in update_pairs]
        exprs = self._apply_givens(exprs, _pairs(givens, "givens"))
        self._check_graph(exprs, on_unused_input)
        self.n_outputs = len(out_vars)
        self.update_targets = [s.node for s, _ in update_pairs]
        self.unoptimized = exprs
        on_pass = _dot_writer(dump_dir) if dump_dir is not None else None
        self.graph, self.rewrites = optimize_graph(
            [i.node for i in self.inputs], exprs, enabled=optimize, on_pass=on_pass
        )
        self.backend = backend or backends.DEFAULT_BACKEND  # the registry owns the default
        self.program = get_backend(backend)([i.node for i in self.inputs], self.graph)
        self._shared = [SHARED_STORAGE[n] for n in self.program.shared_nodes]
        self._update_storage = [SHARED_STORAGE[n] for n in self.update_targets]
        # a backend with memory of its own (CUDA) keeps shared values there between calls: place_shared moves a
        # stored value (once), and the program returns the updates (the last outputs) in its memory
        self._place = getattr(self.program, "place_shared", None)
        if self._place is not None:
            self.program.device_outputs = len(self.update_targets)
        self._names = {}
        for i, v in enumerate(self.inputs):
            if v.name:
                self._names.setdefault(v.name, []).append(i)
        self._n_inputs = len(self.inputs)
        # per input, the (dtype, rank) an ndarray must have to be taken as it is (None: static dimensions to check)
        types = [v.node.type for v in self.inputs]
        self._exact = [None if any(d is not None for d in t.shape) else (t.np_dtype, t.ndim) for t in types]
        # the program's direct entry (one kernel, see CpuProgram.fast), where calls need no other work
        fast = getattr(self.program, "fast", None)
        self._fast = fast if not self.update_targets and None not in self._exact else None
        self._fast_exact = getattr(self.program, "fast_exact", None) if self._fast is not None else None

    # --- building -------------------------------------------------------------------------------------------
    @staticmethod
    def _check_inputs(inputs) -> list:
        if isinstance(inputs, TensorVariable):
            raise TypeError("inputs must be a list of variables, e.g. function([x], ...), not a single variable")
        out = []
        for i, v in enumerate(inputs):
            if not isinstance(v, TensorVariable):
                raise TypeError(f"input {i} is not a symbolic variable: {v!r}")
            if v.node.op != "input":
                kind = (
                    "a shared variable (it is an implicit input)"
                    if v.node.op == "shared"
                    else (f"a computed expression ({v.node.describe()}); use givens to replace it")
                )
                raise TypeError(f"input {i} must be a symbolic input, not {kind}")
            if any(v.node is o.node for o in out):
                raise ValueError(f"input {i} ({v.name!r}) is given twice")
            out.append(v)
        return out

    @staticmethod
    def _check_updates(pairs) -> list:
        seen, out = set(), []
        for target, expr in pairs:
            if not (isinstance(target, TensorVariable) and target.node.op == "shared"):
                raise TypeError(f"update targets must be shared variables, got {target!r}")
            if target.node in seen:
                raise ValueError(f"shared variable {target.name!r} is updated twice")
            seen.add(target.node)
            label = f"update of shared variable {target.name!r}" if target.name else "update of a shared variable"
            expr = _as_variable_like(expr, target, label)
            if expr.dtype != target.dtype:
                raise GraphTypeError(
                    f"{label}: expected dtype {target.dtype}, got {expr.dtype} from {expr.node.describe()}; "
                    f"cast it, e.g. (expr).astype('{target.dtype}')"
                )
            if expr.ndim != target.ndim:
                raise GraphTypeError(
                    f"{label}: expected rank {target.ndim}, got rank {expr.ndim} ({expr.node.describe()})"
                )
            out.append((target, expr.node))
        return out

    @staticmethod
    def _apply_givens(exprs, pairs) -> list:
        if not pairs:
            return exprs
        replace = {}
        for old, new in pairs:
            if not isinstance(old, TensorVariable):
                raise TypeError(f"givens keys must be symbolic variables, got {old!r}")
            new = _as_variable_like(new, old, f"givens for {old.node.describe()}")
            if new.dtype != old.dtype or new.ndim != old.ndim:
                raise GraphTypeError(
                    f"givens: cannot replace {old.node.describe()} by {new.node.describe()} (dtype and rank must match)"
                )
            replace[old.node] = new.node
        return substitute(exprs, replace)

    def _check_graph(self, exprs, on_unused_input) -> None:
        free = leaves(exprs, "input")
        given = {id(v.node) for v in self.inputs}
        missing = [n for n in free if id(n) not in given]
        if missing:
            shown = ", ".join(n.describe() for n in missing)
            raise GraphValueError(
                f"missing input(s) needed to compute the outputs: {shown}; pass them in inputs or givens"
            )
        used = {id(n) for n in free}
        for i, v in enumerate(self.inputs):
            if id(v.node) not in used and on_unused_input != "ignore":
                msg = (f"{_input_label(i, v.node)} is not used to compute the outputs; "
                       "pass on_unused_input='warn' or 'ignore' to allow it")  # fmt: skip
                if on_unused_input == "raise":
                    raise ValueError(msg)
                warnings.warn(msg, stacklevel=4)

    # --- calling --------------------------------------------------------------------------------------------
    def _bind(self, args, kwargs) -> list:
        n = len(self.inputs)
        if len(args) > n:
            raise TypeError(f"function takes {n} argument{'s' if n != 1 else ''}, got {len(args)}")
        values = list(args) + [_MISSING] * (n - len(args))
        for key, value in kwargs.items():
            slots = self._names.get(key)
            if not slots:
                names = ", ".join(repr(v.name) for v in self.inputs if v.name) or "none"
                raise TypeError(f"unknown keyword argument {key!r} (input names: {names})")
            if len(slots) > 1:
                raise TypeError(f"keyword {key!r} is ambiguous: several inputs are named so; pass it by position")
            if values[slots[0]] is not _MISSING:
                raise TypeError(f"input {slots[0]} ({key!r}) is given twice")
            values[slots[0]] = value
        out = []
        for i, (value, var, exact) in enumerate(zip(values, self.inputs, self._exact)):
            if exact is not None and type(value) is np.ndarray and value.dtype is exact[0] and value.ndim == exact[1]:
                out.append(value)  # already what convert_argument would return
                continue
            label = _input_label(i, var.node)
            if value is _MISSING:
                raise TypeError(f"missing argument for {label} of type {var.type.short()}")
            out.append(convert_argument(value, var.node.type, label))
        return out

    def __call__(self, *args, **kwargs):
        fast = self._fast
        if fast is not None and not kwargs and len(args) == self._n_inputs:
            # arrays of exactly the input types need no conversion, and the fresh result no aliasing check
            exact = self._fast_exact
            if exact is not None:  # the program checks the arguments itself
                out = exact(args)
                if out is not None:
                    return out if self.single else [out]
            for a, (dtype, ndim) in zip(args, self._exact):
                if type(a) is not np.ndarray or a.dtype is not dtype or a.ndim != ndim:
                    break
            else:
                out = fast(args)
                return out if self.single else [out]
        values = self._bind(args, kwargs)
        if fast is not None:  # converted values are of exactly the input types too
            out = fast(values)
            return out if self.single else [out]
        place = self._place
        if place is None:
            shared_values = [s.value for s in self._shared]
            guard = values + shared_values
        else:
            for s in self._shared:
                s.raw = place(s.raw)
            shared_values = [s.raw for s in self._shared]
            guard = list(values)
        raw = self.program.run(values, shared_values)
        results = []
        for r in raw:
            if isinstance(r, (np.ndarray, np.generic)):  # (a device array is fresh: never an argument's memory)
                r = _unaliased(r, guard)
                guard.append(r)  # two outputs (or an output and an update) of one merged node must not share memory
            results.append(r)
        for storage, new in zip(self._update_storage, results[self.n_outputs :]):
            storage.value = new  # all computed before any is applied: a failed call changes nothing
        outs = results[: self.n_outputs]
        return outs[0] if self.single else outs

    @property
    def kernels(self) -> list:
        """The compiled kernels, each with ``.name``, ``.llvm_ir`` (optimized IR) and ``.asm``; empty where the
        backend compiles none (the numpy backend, or a graph whose ops all run through numpy)."""
        return list(getattr(self.program, "kernels", []))

    def __repr__(self):
        ins = ", ".join(v.name or "?" for v in self.inputs)
        return f"<sympile.Function ({ins}) -> {self.n_outputs} output(s), backend={self.backend!r}>"


_MISSING = object()


def _dot_writer(dump_dir):
    """An ``on_pass`` callback writing the graph after each optimizer pass: ``00-input.dot``, ``01-merge.dot``..."""
    import os

    from .printing import to_dot  # printing imports this module

    os.makedirs(dump_dir, exist_ok=True)
    count = iter(range(1000))

    def write(pass_name: str, outputs: list) -> None:
        path = os.path.join(dump_dir, f"{next(count):02d}-{pass_name}.dot")
        with open(path, "w") as fh:
            fh.write(to_dot(outputs, name=pass_name))

    return write


def _as_variable_like(value, like: TensorVariable, label: str) -> TensorVariable:
    """``value`` as a variable; a plain Python number takes ``like``'s dtype when the cast keeps its value
    (``updates=[(count, 0)]`` works for a float ``count``), as Theano filters update and givens values."""
    if type(value) in (bool, int, float):
        return as_tensor_variable(convert_argument(value, TensorType(like.dtype, ()), label))
    return as_tensor_variable(value)


def _unaliased(result: np.ndarray, guard: list) -> np.ndarray:
    """Results never share memory with arguments or shared values: later writes must not leak through.
    Read-only results (a constant's own array) are copied too, so callers always get arrays they own."""
    if not result.flags.writeable:
        return result.copy()
    if result.base is None and not any(result is g for g in guard):
        return result
    if any(np.may_share_memory(result, g) for g in guard):
        return result.copy()
    return result


def function(inputs, outputs, updates=None, givens=None, backend=None, optimize=True, on_unused_input="raise",
             name=None, dump_dir=None) -> Function:  # fmt: skip
    """Compile ``inputs -> outputs``; ``updates`` (shared -> new value) apply after the outputs are computed.

    ``optimize=False`` skips the optimizer; ``dump_dir=PATH`` writes the graph after each optimizer pass as DOT
    (``00-input.dot``, ``01-merge.dot``, ...); ``f.rewrites`` lists the rewrites applied.

    >>> import sympile
    >>> import sympile.tensor as st
    >>> x = st.dvector('x')
    >>> acc = sympile.shared(0.0, name='acc')
    >>> f = sympile.function([x], acc, updates=[(acc, acc + x.sum())])
    >>> _ = f([1.0, 2.0]); float(acc.get_value())
    3.0
    """
    return Function(inputs, outputs, updates, givens, backend, optimize, on_unused_input, name, dump_dir)


def shared(value, name=None, borrow=False, shape=None) -> SharedVariable:
    """A shared variable holding ``value`` (copied unless ``borrow``); its dimensions are not static so
    ``set_value`` may change its shape, unless ``shape`` pins them.

    >>> import sympile
    >>> w = sympile.shared([1.0, 2.0], name='w')
    >>> w.get_value()
    array([1., 2.])
    """
    from sympile.compiler.graph import shared_node

    if isinstance(value, TensorVariable):
        raise TypeError("shared() takes a concrete value (array, number), not a symbolic variable")
    try:
        # a subclass (np.matrix) becomes a plain view: the numpy reference ops must see ndarray semantics
        arr = value if type(value) is np.ndarray else np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:  # ragged lists and the like
        raise GraphTypeError(f"shared(): cannot make an array from {type(value).__name__}: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise GraphTypeError(f"shared(): expected numeric data, got dtype {arr.dtype}")
    if not arr.dtype.isnative:
        # the kernels (CPU, and the GPU after a byte-for-byte upload) read native byte order, as set_value stores
        arr = arr.astype(arr.dtype.newbyteorder("="))
    static = tuple(shape) if shape is not None else (None,) * arr.ndim
    node = shared_node(arr.dtype, static, name)
    from .variable import SharedStorage

    SHARED_STORAGE[node] = SharedStorage(arr if borrow else np.array(arr, copy=True))
    var = wrap(node)
    if shape is not None:
        convert_argument(arr, node.type, f"shared variable {name!r}" if name else "shared variable")
    return var


def eval_variable(var: TensorVariable, inputs_to_values: dict):
    """Compile (once per variable and set of inputs) and run ``var`` on the given input values.

    The compiled functions are kept on ``var`` itself (not in a global table, where the function's reference
    to the graph would keep it alive forever), so they go when the user drops the variable.
    """
    keys = []
    for k in inputs_to_values:
        if isinstance(k, str):
            raise TypeError("eval() keys must be variables, not names")
        keys.append(as_tensor_variable(k))
    try:
        per_var = var._eval_cache
    except AttributeError:
        per_var = var._eval_cache = {}
    cache_key = tuple(id(k.node) for k in keys)  # the cached function holds the keys, so ids stay unique
    fn = per_var.get(cache_key)
    if fn is None:
        fn = function(keys, var, on_unused_input="ignore")
        per_var[cache_key] = fn
    return fn(*inputs_to_values.values())
