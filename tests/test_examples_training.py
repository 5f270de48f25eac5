"""The training examples run as users run them (subprocesses) and reach their accuracy."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def accuracy(output: str, label: str) -> float:
    found = re.findall(rf"^{label}: ([0-9.]+)%$", output, flags=re.M)
    assert found, f"no '{label}' line in:\n{output}"
    return float(found[-1])


def test_logistic_regression_fits_its_training_set():
    out = run_example("logistic_regression.py", "--steps", "300")
    assert accuracy(out, "training accuracy") >= 95.0
    losses = [float(v) for v in re.findall(r"cross-entropy ([0-9.]+)", out)]
    assert losses[-1] < losses[0] / 2  # training lowered the loss


def test_mlp_reaches_95_percent_on_digits():
    pytest.importorskip("sklearn")
    out = run_example("mlp_digits.py")
    assert len(re.findall(r"^epoch +\d+ ", out, flags=re.M)) == 20  # progress per epoch
    assert accuracy(out, "test accuracy") >= 95.0
