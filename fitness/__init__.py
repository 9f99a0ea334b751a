"""Fitness: the Numba interpreter, proxy tasks, scores, baselines and the torch training tasks.

Importing the package first points Numba's cache at a folder keyed by the compiled sources
(:mod:`fitness.numba_cache`), before any cached function is defined.
"""

from fitness.numba_cache import configure as _configure_numba_cache

_configure_numba_cache()
