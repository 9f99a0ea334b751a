"""Functional-equivalence fingerprints: rules that act the same on fixed probes share a score.

As in AutoML-Zero (Real et al. 2020, the functional equivalence cache), a rule is run for a few
steps on fixed probe gradients (magnitudes from 1e-4 to 1e3, exact zeros, sign flips), with the
weights moving under its own updates; its update directions are rounded to ``DIGITS``
significant digits and hashed with sha256. ``add(g, g)`` and ``mul(g, 2.0)`` collide, as do
rules whose outputs agree to that precision on every probe; an exact zero among the probe
gradients keeps ``add(g, 1e-12)`` apart from ``g``. Fingerprints depend only on the rule, never
on the task suite.

:func:`behaviour_print` is looser: it divides the directions by their largest magnitude before
rounding, so rules that differ only by a positive constant factor (``div(g, 1.543)`` and
``div(g, 0.5628)``) share it. Under a learning-rate search such rules are the same optimizer
(the rate absorbs the factor), so the real-data tier and the hall of fame count them once; the
proxy cache keeps the exact :func:`fingerprint`, since on a fixed rate grid their scores differ.
"""

from __future__ import annotations

import hashlib

import numpy as np

from fitness.interpreter import StepRunner
from primitives.program import Program

PROBE_SIZE = 24
PROBE_STEPS = 6
PROBE_LR = 0.01
DIGITS = 6
BEHAVIOUR_DIGITS = 4


def _probes() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20240601)
    scales = rng.choice([1e-4, 1e-2, 1.0, 1e3], size=(PROBE_STEPS, PROBE_SIZE))
    grads = rng.standard_normal((PROBE_STEPS, PROBE_SIZE)) * scales
    grads[:, 0] = 0.0  # exact zeros exercise the protected operations
    grads[::2, 1] *= -1.0
    w0 = rng.standard_normal(PROBE_SIZE)
    return grads, w0


_GRADS, _W0 = _probes()


def fingerprint(program: Program) -> str:
    """sha256 (first 16 hex digits) of the rule's rounded directions on the probes."""
    return _exact(_directions(program))


def behaviour_print(program: Program) -> str:
    """Like :func:`fingerprint`, but blind to a positive constant factor of the directions."""
    return _scale_free(_directions(program))


def prints(program: Program) -> tuple[str, str]:
    """(:func:`fingerprint`, :func:`behaviour_print`) from one run on the probes."""
    d = _directions(program)
    return _exact(d), _scale_free(d)


def _exact(d: np.ndarray) -> str:
    return _digest(_rounded(d, DIGITS))


def _scale_free(d: np.ndarray) -> str:
    finite = np.isfinite(d)
    # the largest finite magnitude, not the root mean square: squares of 1e200 overflow
    scale = float(np.max(np.abs(d[finite]))) if finite.any() else 0.0
    if scale > 0.0:
        d = d / scale
    return "b" + _digest(_rounded(d, BEHAVIOUR_DIGITS))[1:]


def _digest(values: np.ndarray) -> str:
    return hashlib.sha256(values.tobytes()).hexdigest()[:16]


def _directions(program: Program) -> np.ndarray:
    """The rule's directions on the probes, all steps in one vector."""
    runner = StepRunner(program, _W0, total_steps=PROBE_STEPS)
    rows = []
    for t in range(PROBE_STEPS):
        d = runner.direction(_GRADS[t])
        rows.append(d)
        # move the weights with this direction, so rules that read w are told apart
        with np.errstate(all="ignore"):  # inf - inf in a diverging rule is expected here
            runner.weights[:] -= PROBE_LR * d
    return np.concatenate(rows)


def _rounded(values: np.ndarray, digits: int) -> np.ndarray:
    """Values rounded to ``digits`` significant digits, vectorised; -0.0 becomes 0.0, every NaN
    the same NaN, inf stays inf (so the bytes of equal-looking outputs are equal)."""
    finite = np.isfinite(values) & (values != 0.0)
    safe = np.where(finite, np.abs(values), 1.0)
    with np.errstate(all="ignore"):  # subnormals: the scale underflows, NaN is still equal bytes
        scale = 10.0 ** (np.floor(np.log10(safe)) - (digits - 1))
        out = np.where(finite, np.round(values / scale) * scale, values) + 0.0
    out[np.isnan(out)] = np.nan
    return out


__all__ = ["behaviour_print", "fingerprint", "prints"]
