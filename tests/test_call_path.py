"""The call path of a compiled function: the short path for one-kernel functions keeps every behaviour of the
general one (conversions, errors naming inputs, results that alias nothing)."""

from __future__ import annotations

import numpy as np
import pytest

import sympile as sp
import sympile.tensor as st


@pytest.fixture(scope="module")
def f():
    x, y = st.dvectors("x", "y")
    return sp.function([x, y], x * 2 + y)


def test_takes_the_short_path(f):
    assert f._fast is not None, "one elementwise kernel over the inputs: calls go straight to it"


def test_results_are_new_arrays_each_call(f):
    a, b = np.ones(3), np.zeros(3)
    r1 = f(a, b)
    r2 = f(a, b)
    assert r1 is not r2 and not np.shares_memory(r1, r2)
    r1[:] = 99  # writing into a result changes neither the next result nor the arguments
    np.testing.assert_array_equal(f(a, b), [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(a, 1.0)
    assert r2.flags.writeable and r2.flags.owndata


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a[::-2],  # negative strides
        lambda a: np.asfortranarray(a),
        lambda a: a.astype(">f8"),  # byte-swapped
        lambda a: a.astype(np.float32),  # cast
        lambda a: a.astype(np.int64),  # cast
        lambda a: a.tolist(),
    ],
)
def test_any_layout_or_convertible_value(f, make):
    a = np.arange(7.0)
    arg = make(a)
    want = np.asarray(arg, dtype=np.float64) * 2 + 1
    np.testing.assert_array_equal(f(arg, np.ones(len(want))), want)


def test_read_only_and_misaligned_inputs(f):
    a = np.arange(5.0)
    a.setflags(write=False)
    np.testing.assert_array_equal(f(a, a), a * 3)
    raw = np.zeros(5 * 8 + 1, np.uint8)[1:].view(np.float64)  # misaligned float64 data
    raw[:] = np.arange(5.0)
    assert not raw.flags.aligned
    np.testing.assert_array_equal(f(raw, raw), np.arange(5.0) * 3)


def test_keywords_broadcast_and_zero_size(f):
    np.testing.assert_array_equal(f(y=np.ones(2), x=np.ones(2)), [3.0, 3.0])
    assert f(np.ones(0), np.ones(0)).shape == (0,)
    np.testing.assert_array_equal(f(np.ones(3), np.ones(1)), [3.0, 3.0, 3.0])  # broadcast along a size-1 dim


def test_errors_name_the_input(f):
    with pytest.raises(TypeError, match=r"input 1 \('y'\).*rank 1"):
        f(np.ones(2), np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"input 0 \('x'\).*float64"):
        f(np.ones(2, dtype=np.complex128), np.ones(2))
    with pytest.raises(TypeError, match="missing argument"):
        f(np.ones(2))
    with pytest.raises(ValueError, match="broadcast"):
        f(np.ones(2), np.ones(3))


def test_inputs_in_another_order_than_the_kernel_reads_them():
    x, y, unused = st.dvector("x"), st.dscalar("y"), st.lvector("n")
    g = sp.function([unused, y, x], x - y, on_unused_input="ignore")
    np.testing.assert_array_equal(g(np.arange(2), np.float64(1.5), np.arange(3.0)), np.arange(3.0) - 1.5)
    single_list = sp.function([x], [x + 1])
    assert isinstance(single_list(np.ones(2)), list)


def test_integer_error_from_the_kernel_is_raised():
    i, j = st.lvectors("i", "j")
    g = sp.function([i, j], i**j)
    np.testing.assert_array_equal(g(np.array([2, 3]), np.array([3, 2])), [8, 9])
    with pytest.raises(ValueError, match="negative integer powers"):
        g(np.array([2]), np.array([-1]))


@pytest.mark.parametrize("n", [0, 1, 7, 5000, 20000, 70000])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_a_one_reduction_function_takes_the_short_path_and_gives_numpys_values(n, axis):
    x, y = st.fmatrices("x", "y")
    g = sp.function([x, y], (x * y).sum(axis=axis))
    assert g._fast is not None  # one reduction kernel over the inputs
    rng = np.random.default_rng(n)
    a, b = (rng.standard_normal((n, 3)).astype(np.float32) for _ in range(2))
    layouts = [(a, b), (a[::-1], b), (np.asfortranarray(a), b.astype(np.float16))] + [(a.tolist(), b)] * (n > 0)
    for args in layouts:
        got, want = g(*args), (np.asarray(args[0], np.float32) * np.asarray(args[1], np.float32)).sum(axis=axis)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)  # float32 sums in another order
        assert not any(np.shares_memory(got, v) for v in args if isinstance(v, np.ndarray))
    with pytest.raises(TypeError, match="'y'"):
        g(a, "text")
