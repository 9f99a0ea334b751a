"""How tests compare two floating-point libraries: NaN/inf exactly, finite values within a tolerance.

Bit equality between torch and numpy/Numba is not guaranteed: torch 2.13's float64 ``sqrt(0.5)``
is ``0.7071067811865475`` on the development CPU where numpy, Numba and ``math.sqrt`` give
``...476`` (0.67% of random inputs differ in the last bit), and torch's vectorised ``lerp`` uses
fused multiply-adds where the interpreter rounds twice. So finite values are compared within a
stated tolerance, and NaN and inf positions (and the sign of inf) exactly, which is guaranteed.
"""

from __future__ import annotations

import numpy as np

# float64 machine epsilon: a few of these is "a few ulps"
EPS = float(np.finfo(np.float64).eps)


def mismatches(actual, expected, *, rtol: float, atol: float = 0.0, scale=None) -> np.ndarray:
    """Boolean mask of positions that disagree.

    Finite values agree when |a - e| <= atol + rtol * max(|a|, |e|, scale); ``scale`` (per
    element, optional) is the magnitude of the operands, so a result that cancels to near zero
    is judged at the scale it was computed at. NaN must meet NaN, inf the same inf.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    a, e = np.broadcast_arrays(a, e)
    bad = np.isnan(a) != np.isnan(e)
    inf = np.isinf(a) | np.isinf(e)
    bad |= inf & (a != e)
    finite = np.isfinite(a) & np.isfinite(e)
    bound = np.maximum(np.abs(a), np.abs(e))
    if scale is not None:
        bound = np.maximum(bound, np.broadcast_to(np.abs(np.asarray(scale, dtype=np.float64)),
                                                  bound.shape))
    with np.errstate(invalid="ignore", over="ignore"):
        bad |= finite & (np.abs(a - e) > atol + rtol * bound)
    return bad


def assert_agree(actual, expected, *, rtol: float, atol: float = 0.0, scale=None,
                 label: str = "") -> None:
    bad = mismatches(actual, expected, rtol=rtol, atol=atol, scale=scale)
    if bad.any():
        a = np.broadcast_to(np.asarray(actual, dtype=np.float64), bad.shape)
        e = np.broadcast_to(np.asarray(expected, dtype=np.float64), bad.shape)
        where = np.flatnonzero(bad)[:5]
        shown = ", ".join(f"[{i}] {a.flat[i]!r} vs {e.flat[i]!r}" for i in where)
        raise AssertionError(f"{label}: {bad.sum()} of {bad.size} disagree "
                             f"(rtol {rtol:g}, atol {atol:g}): {shown}")
