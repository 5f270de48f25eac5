"""Rewrite rule sets grouped by purpose, each a list of rows ``Rule(name, pattern, callback)``.

- :mod:`.fold`: constant folding through the op table's numpy references, static shapes.
- :mod:`.canonicalize`: algebraic simplifications that never change results (x*1, neg(neg(x)), ...).
- :mod:`.stabilize`: numerically stable forms (log1p, expm1, logsumexp, softmax, softplus).
- :mod:`.specialize`: cheaper forms of the same computation (x**2 -> sqr(x), x**0.5 -> sqrt(x)).
"""
