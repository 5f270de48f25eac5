"""Short infix text for expressions: used by the rewrite log and by fused nodes' inner expressions.

>>> op_text("add", [("x", 99), ("2", 99)])
('x+2', 4)
>>> op_text("mul", [("x+2", 4), ("y", 99)])
('(x+2)*y', 5)
"""

from __future__ import annotations

# op: (symbol, precedence); higher binds tighter. Arguments are parenthesized when they bind looser.
INFIX = {
    "add": ("+", 4),
    "sub": ("-", 4),
    "mul": ("*", 5),
    "true_div": ("/", 5),
    "floor_div": ("//", 5),
    "mod": ("%", 5),
    "pow": ("**", 7),
    "lt": ("<", 2),
    "le": ("<=", 2),
    "gt": (">", 2),
    "ge": (">=", 2),
    "eq": ("==", 2),
    "neq": ("!=", 2),
}
ATOM = 99  # precedence of names, numbers and calls


def op_text(op: str, args: list[tuple[str, int]], attrs: dict | None = None) -> tuple[str, int]:
    """``(text, precedence)`` of ``op`` applied to already formatted ``(text, precedence)`` arguments."""
    if op in INFIX and len(args) == 2:
        sym, prec = INFIX[op]
        # left-associative: the right operand needs parentheses at equal precedence (a-(b-c)); pow is the reverse
        left_min, right_min = (prec + 1, prec) if op == "pow" else (prec, prec + 1)
        left = _wrap(args[0], left_min)
        right = _wrap(args[1], right_min)
        return f"{left}{sym}{right}", prec
    if op == "neg" and len(args) == 1:
        return "-" + _wrap(args[0], 6), 6
    shown = [a for a, _ in args]
    if attrs:
        shown += [f"{k}={_attr(v)}" for k, v in attrs.items()]
    return f"{op}({', '.join(shown)})", ATOM


def _wrap(arg: tuple[str, int], min_prec: int) -> str:
    text, prec = arg
    return text if prec >= min_prec else f"({text})"


def _attr(value) -> str:
    if hasattr(value, "describe"):
        return value.describe()
    if isinstance(value, tuple):
        return "(" + ",".join(_attr(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)
