"""Every docstring example in the package runs and shows what it says (the modules imported as users import
them: ``sympile.*``)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest


def _modules() -> list[str]:
    # the three folders are mapped onto sympile, sympile.compiler and sympile.runtime: walk each
    names = set()
    for package in ("sympile", "sympile.compiler", "sympile.runtime"):
        mod = importlib.import_module(package)
        names.add(package)
        names.update(info.name for info in pkgutil.walk_packages(mod.__path__, package + "."))
    return sorted(n for n in names if n != "sympile.__main__")


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
