"""Packaging: the wheel holds all three packages (and their subpackages); the editable install imports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# source folder -> the package it becomes (pyproject.toml's [tool.setuptools.package-dir])
PACKAGE_DIRS = {"frontend": "sympile", "compiler": "sympile.compiler", "runtime": "sympile.runtime"}
SMOKE = (
    "import sympile as sp, sympile.tensor as st, sympile.compiler.ops, sympile.runtime.interpreter\n"
    "x = st.dvector('x')\n"
    "assert sp.function([x], (x * 2).sum())([1.0, 2.0]) == 6.0\n"
    "print(sp.__file__)\n"
)


def _expected_modules() -> set[str]:
    """Every .py file under the three source folders, as its path inside the wheel."""
    out = set()
    for folder, package in PACKAGE_DIRS.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(base).as_posix()
            out.add(package.replace(".", "/") + "/" + rel)
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the sources, so the build leaves nothing in the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    for folder in PACKAGE_DIRS:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"wheel build failed (is the 'test' extra installed?):\n{proc.stdout}\n{proc.stderr}"
    wheels = list(out.glob("sympile-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_contains_all_packages_and_modules(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg in ("sympile", "sympile/compiler", "sympile/compiler/ops", "sympile/runtime"):
        assert f"{pkg}/__init__.py" in names, f"{pkg} is missing from the wheel; list it in pyproject.toml"
    missing = _expected_modules() - names
    assert not missing, f"modules missing from the wheel (add their package to pyproject.toml): {sorted(missing)}"
    assert not [n for n in names if n.startswith(("frontend/", "compiler/", "runtime/", "tests/"))]


def test_wheel_metadata(wheel):
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = zf.read(meta_name).decode()
    assert "Name: sympile" in meta
    assert "Requires-Python: >=3.10" in meta
    for dep in ("numpy", "llvmlite", "networkx"):
        assert f"Requires-Dist: {dep}" in meta


def test_wheel_imports_and_runs(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # PYTHONPATH comes before site-packages, so the unpacked wheel wins over the editable install
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", SMOKE], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).resolve() == (site / "sympile" / "__init__.py").resolve()


def test_editable_install_imports_from_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", SMOKE], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).resolve() == (ROOT / "frontend" / "__init__.py").resolve()
