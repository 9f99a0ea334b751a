"""The data of the proxy tasks: bundled scikit-learn sets and synthetic generators, as arrays.

Every function draws from the ``numpy.random.Generator`` it is given (nothing global), so a
task instance is a pure function of its seed, and returns float64 arrays ``(x, y, x_test,
y_test)`` ready for :mod:`fitness.kernels` (inputs standardised where the task says so,
classification targets one-hot). Nothing is downloaded: the real data ships with scikit-learn.
"""

from __future__ import annotations

from functools import cache

import numpy as np

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
BUNDLED = ("digits", "wine", "diabetes")  # diabetes is a regression target


@cache
def bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A dataset bundled with scikit-learn, read once per process (arrays are read-only)."""
    from sklearn import datasets

    if name not in BUNDLED:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(BUNDLED)}")
    bunch = getattr(datasets, f"load_{name}")()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.float64 if name == "diabetes" else np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def split(x: np.ndarray, y: np.ndarray, n_test: int, rng: np.random.Generator) -> Arrays:
    order = rng.permutation(x.shape[0])
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both with the training set's mean and standard deviation."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0.0] = 1.0
    return (x_train - mean) / std, (x_test - mean) / std


def one_hot(labels: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((labels.shape[0], n))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def feature_scales(rng: np.random.Generator, d: int) -> np.ndarray:
    """Scales over two decades: the ill-conditioning of raw features."""
    return 10.0 ** rng.uniform(-1.0, 1.0, d)


def real(name: str, n_test: int, rng: np.random.Generator) -> Arrays:
    """A bundled set, split and standardised; one-hot classes or a standardised target (n, 1)."""
    data, target = bundled(name)
    x, t, x_test, t_test = split(data, target, n_test, rng)
    x, x_test = standardise(x, x_test)
    if target.dtype.kind == "f":
        mean, std = t.mean(), t.std()
        return x, ((t - mean) / std)[:, None], x_test, ((t_test - mean) / std)[:, None]
    n_classes = int(target.max()) + 1
    return x, one_hot(t, n_classes), x_test, one_hot(t_test, n_classes)


def logistic(d: int, n: int, n_test: int, rng: np.random.Generator) -> Arrays:
    """Binary labels from a logistic model on features of mixed scales; targets (n, 1)."""
    scales = feature_scales(rng, d)
    w_true = rng.standard_normal(d) / np.sqrt(d)
    x_all = rng.standard_normal((n + n_test, d)) * scales
    logits = (x_all / scales) @ w_true * 3.0
    y_all = (rng.random(n + n_test) < 1.0 / (1.0 + np.exp(-logits))).astype(np.float64)
    return x_all[:n], y_all[:n, None], x_all[n:], y_all[n:, None]


def blobs(d: int, classes: int, informative: int, per_class: int, n: int, n_test: int,
          rng: np.random.Generator) -> Arrays:
    """Gaussian clusters (several per class) in ``informative`` of d directions, rotated so
    that no axis is special, features of mixed scales, 5% of labels redrawn at random."""
    centers = rng.standard_normal((classes * per_class, informative)) * 2.0
    cluster = rng.integers(0, classes * per_class, n + n_test)
    x_all = rng.standard_normal((n + n_test, d))
    x_all[:, :informative] += centers[cluster]
    rotation = np.linalg.qr(rng.standard_normal((d, d)))[0]
    x_all = (x_all @ rotation) * feature_scales(rng, d)
    flip = rng.random(n + n_test) < 0.05
    labels = np.where(flip, rng.integers(0, classes, n + n_test), cluster % classes)
    y_all = one_hot(labels, classes)
    return x_all[:n], y_all[:n], x_all[n:], y_all[n:]


def teacher(d: int, hidden: list[int], n: int, n_test: int, rng: np.random.Generator) -> Arrays:
    """Gaussian inputs labelled by a random ReLU teacher MLP (He-normal weights), unit-variance
    targets plus 5% noise; targets (n, 1)."""
    h = rng.standard_normal((n + n_test, d))
    x_all = h
    sizes = [d, *hidden, 1]
    for layer, (nin, nout) in enumerate(zip(sizes[:-1], sizes[1:])):
        h = h @ (rng.standard_normal((nin, nout)) * np.sqrt(2.0 / nin))
        if layer < len(sizes) - 2:
            h = np.maximum(h, 0.0)
    y_all = h / h.std() + 0.05 * rng.standard_normal(h.shape)
    return x_all[:n], y_all[:n], x_all[n:], y_all[n:]


def manifold(d: int, latent: int, n: int, n_test: int, rng: np.random.Generator) -> Arrays:
    """Points near a curved ``latent``-dimensional manifold in d dimensions (a random tanh map
    of Gaussian factors, plus noise), standardised; the targets are the inputs."""
    z = rng.standard_normal((n + n_test, latent))
    h = np.tanh(z @ rng.standard_normal((latent, 2 * d)) / np.sqrt(latent))
    x_all = h @ rng.standard_normal((2 * d, d)) / np.sqrt(2 * d)
    x_all += 0.05 * rng.standard_normal(x_all.shape)
    x, x_test = standardise(x_all[:n], x_all[n:])
    return x, x, x_test, x_test


def adding_sequences(length: int, n: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences of the adding problem (Hochreiter and Schmidhuber 1997): x (n, length, 2)
    holds (value ~ U(0, 1), marker) at each step, one marker in each half of the sequence; y
    (n, 1) is the sum of the two marked values plus 5% noise, not standardised. The proxy's
    recurrent task and tier 2's ``adding_gru`` both draw from it."""
    half = length // 2
    values = rng.random((n, length))
    marks = np.zeros((n, length))
    marks[np.arange(n), rng.integers(0, half, size=n)] = 1.0
    marks[np.arange(n), rng.integers(half, length, size=n)] = 1.0
    y = (values * marks).sum(1, keepdims=True) + 0.05 * rng.standard_normal((n, 1))
    return np.stack([values, marks], axis=-1), y


def adding(length: int, n: int, n_test: int, rng: np.random.Generator) -> Arrays:
    """The adding problem as flat rows (:func:`adding_sequences`): x (n, 2 * length), the
    targets standardised on the training rows."""
    x_all, y_all = adding_sequences(length, n + n_test, rng)
    x_all = x_all.reshape(n + n_test, 2 * length)
    y_all = (y_all - y_all[:n].mean()) / y_all[:n].std()
    return x_all[:n], y_all[:n], x_all[n:], y_all[n:]


__all__ = ["BUNDLED", "adding", "adding_sequences", "blobs", "bundled", "feature_scales", "logistic", "manifold", "one_hot",
           "real", "split", "standardise", "teacher"]
