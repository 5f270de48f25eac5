"""The cpu backend under concurrency: one function called from many threads, SYMPILE_NUM_THREADS, and processes
compiling the same graph at once into one empty disk cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import sympile as sp
import sympile.tensor as st
from sympile.runtime import cpu_backend

BIG = 3 * cpu_backend.PARALLEL_MIN_ELEMENTS + 17  # large enough to be split across threads, odd-sized tail


def _expr():
    x, y = st.dvectors("x", "y")
    return [x, y], [st.exp(-x * x / 2) * st.sin(y) + st.log1p(y * y), (x * y).sum()]


def _numpy(x, y):
    return [np.exp(-x * x / 2) * np.sin(y) + np.log1p(y * y), (x * y).sum()]


def test_one_function_called_from_many_threads():
    inputs, outs = _expr()
    f = sp.function(inputs, outs)
    g = sp.function(inputs[:1], st.exp(inputs[0]) * 2)  # a one-kernel function: the short call path
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(seed: int) -> None:
        try:
            rng = np.random.default_rng(seed)
            start.wait()
            for k in range(30):
                n = BIG if k % 10 == 0 else int(rng.integers(1, 200))
                x, y = rng.normal(size=n), rng.normal(size=n)
                got, want = f(x, y), _numpy(x, y)
                np.testing.assert_allclose(got[0], want[0], rtol=1e-13, atol=1e-15)
                np.testing.assert_allclose(got[1], want[1], rtol=1e-10)
                np.testing.assert_allclose(g(x), np.exp(x) * 2, rtol=1e-14)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_num_threads_setting_is_honoured(monkeypatch):
    inputs, outs = _expr()
    f = sp.function(inputs, outs)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=BIG), rng.normal(size=BIG)
    pools_used: list[int] = []
    real_pool = cpu_backend._pool
    monkeypatch.setattr(cpu_backend, "_pool", lambda n: pools_used.append(n) or real_pool(n))
    monkeypatch.setenv("SYMPILE_NUM_THREADS", "1")
    assert cpu_backend.num_threads() == 1
    one = f(x, y)
    assert pools_used == [], "one thread: every kernel runs on the calling thread"
    monkeypatch.setenv("SYMPILE_NUM_THREADS", "2")
    assert cpu_backend.num_threads() == 2
    two = f(x, y)
    assert pools_used and set(pools_used) == {2}, "two threads: large kernels go to a pool of 2 workers"
    np.testing.assert_array_equal(one[0], two[0])  # elementwise: the split changes no value
    want = _numpy(x, y)
    np.testing.assert_allclose(one[0], want[0], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose([one[1], two[1]], [want[1]] * 2, rtol=1e-10)
    monkeypatch.setenv("SYMPILE_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="SYMPILE_NUM_THREADS"):
        f(x, y)


_CHILD = textwrap.dedent(
    """
    import sys, numpy as np, sympile as sp, sympile.tensor as st
    x, y = st.dvectors("x", "y")
    f = sp.function([x, y], st.exp(-x * x / 2) * st.cos(y) + st.arctan(x * y))
    a, b = np.linspace(-5, 5, 1001), np.linspace(3, -2, 1001)
    want = np.exp(-a * a / 2) * np.cos(b) + np.arctan(a * b)
    np.testing.assert_allclose(f(a, b), want, rtol=1e-13, atol=1e-15)
    print("ok")
    """
)


def test_two_processes_compile_into_one_empty_cache(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, SYMPILE_CACHE_DIR=str(cache))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        assert out.strip() == "ok"
        assert "Warning" not in err, err[-2000:]
    assert any(files for _, _, files in os.walk(cache)), "the compiled object is written to the shared cache"
    # a third process loads what the two wrote
    third = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0 and third.stdout.strip() == "ok", third.stderr[-2000:]
