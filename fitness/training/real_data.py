"""Datasets of the real-data tier: bundled real data and synthetic tasks no benchmark task uses.

* diabetes (scikit-learn, real): regression of disease progression from 10 measurements;
* a mixture classification: 20-dimensional inputs labelled by a random MLP teacher (5% noise);
* a random tanh teacher regression (16 inputs);
* a 32-dimensional point cloud on a 4-dimensional curved manifold, for an autoencoder;
* associative recall of key-value pairs (10% label noise);
* noisy 8x8 images of bars in four orientations;
* the adding problem (Hochreiter and Schmidhuber 1997) for a recurrent network: a sequence of
  numbers, two of them marked, and the sum of the marked two.

Each is drawn from a fixed seed and split into train / validation / test
(:func:`fitness.training.data.split`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from fitness.datasets import adding_sequences
from fitness.training.data import Splits, split, to_splits


@lru_cache(maxsize=1)
def mixture_data() -> Splits:
    """x ~ N(0, I_20) labelled with the argmax of a random two-layer MLP teacher (6 classes),
    5% of the labels redrawn at random; 3000/500/500."""
    rng = np.random.default_rng(16)
    n, d, classes = 4000, 20, 6
    x = rng.standard_normal((n, d))
    w1 = rng.standard_normal((d, 48)) / math.sqrt(d)
    w2 = rng.standard_normal((48, classes)) / math.sqrt(48)
    label = np.argmax(np.maximum(x @ w1, 0.0) @ w2, axis=1)
    noisy = rng.random(n) < 0.05
    label[noisy] = rng.integers(0, classes, size=int(noisy.sum()))
    return to_splits(split(x, label, 500, 500, seed=16), y_float=False, standardise_x=False)


@lru_cache(maxsize=1)
def manifold_data() -> Splits:
    """Points of a curved 4-dimensional manifold in 32 dimensions (a random tanh map of a
    4-dimensional Gaussian) plus small noise: input and target of an autoencoder; 3000/500/500."""
    rng = np.random.default_rng(17)
    n = 4000
    z = rng.standard_normal((n, 4))
    w1 = rng.standard_normal((4, 24))
    w2 = rng.standard_normal((24, 32)) / math.sqrt(24)
    x = np.tanh(z @ w1) @ w2 + 0.05 * rng.standard_normal((n, 32))
    x = (x - x.mean(0)) / x.std(0)
    return to_splits(split(x, x, 500, 500, seed=17), y_float=True, standardise_x=False)


@lru_cache(maxsize=1)
def diabetes_data() -> Splits:
    """scikit-learn diabetes: 292 train / 60 validation / 90 test; x and y standardised."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    return to_splits(split(bunch.data, bunch.target.reshape(-1, 1), 90, 60, seed=12),
                     y_float=True, standardise_y=True)


@lru_cache(maxsize=1)
def teacher_data() -> Splits:
    """x ~ N(0, I_16); y = a random two-layer tanh teacher + 10% noise; 3000/500/500."""
    rng = np.random.default_rng(13)
    n, d = 4000, 16
    x = rng.standard_normal((n, d))
    w1 = rng.standard_normal((d, 32)) / math.sqrt(d)
    w2 = rng.standard_normal((32, 1)) / math.sqrt(32)
    y = np.tanh(x @ w1 * 1.5) @ w2
    y = y / y.std() + 0.1 * rng.standard_normal(y.shape)
    return to_splits(split(x, y, 500, 500, seed=13), y_float=True, standardise_x=False)


RECALL_PAIRS, RECALL_KEYS = 4, 8  # tokens 0..7 are keys, 8..15 values


@lru_cache(maxsize=1)
def recall_data() -> Splits:
    """Associative recall: k1 v1 ... k4 v4 q -> the value that followed key q (8 classes, 10%
    of the labels redrawn at random)."""
    rng = np.random.default_rng(14)
    n = 5000
    keys = np.stack([rng.permutation(RECALL_KEYS)[:RECALL_PAIRS] for _ in range(n)])
    values = rng.integers(0, RECALL_KEYS, size=(n, RECALL_PAIRS))
    pick = rng.integers(0, RECALL_PAIRS, size=n)
    seq = np.empty((n, 2 * RECALL_PAIRS + 1), dtype=np.int64)
    seq[:, 0:-1:2], seq[:, 1:-1:2] = keys, values + RECALL_KEYS
    seq[:, -1] = keys[np.arange(n), pick]
    label = values[np.arange(n), pick]
    # 10% of the labels are redrawn at random: a floor under the test loss, as real data has,
    # so a rule cannot win by driving an easy task's loss to zero
    noisy = rng.random(n) < 0.1
    label[noisy] = rng.integers(0, RECALL_KEYS, size=int(noisy.sum()))
    return to_splits(split(seq, label, 500, 500, seed=14), y_float=False, standardise_x=False,
                     x_tokens=True)


@lru_cache(maxsize=1)
def bars_data() -> Splits:
    """Noisy 8x8 images of a bar (horizontal, vertical, two diagonals) at a random offset."""
    rng = np.random.default_rng(15)
    n, side = 2800, 8
    labels = rng.integers(0, 4, size=n)
    offsets = rng.integers(1, side - 1, size=n)
    images = 0.6 * rng.standard_normal((n, 1, side, side))
    idx = np.arange(side)
    for i, (lab, off) in enumerate(zip(labels, offsets)):
        if lab == 0:
            images[i, 0, off, :] += 1.0
        elif lab == 1:
            images[i, 0, :, off] += 1.0
        elif lab == 2:
            images[i, 0, idx, (idx + off) % side] += 1.0
        else:
            images[i, 0, idx, (off - idx) % side] += 1.0
    return to_splits(split(images, labels, 400, 400, seed=15), y_float=False,
                     standardise_x=False)


__all__ = ["RECALL_KEYS", "RECALL_PAIRS", "bars_data", "diabetes_data", "manifold_data",
           "mixture_data", "recall_data", "teacher_data"]


ADDING_LEN = 12


@lru_cache(maxsize=1)
def adding_data() -> Splits:
    """The adding problem (:func:`fitness.datasets.adding_sequences`): 12 steps, the target
    standardised; 3000/500/500."""
    x, y = adding_sequences(ADDING_LEN, 4000, np.random.default_rng(18))
    return to_splits(split(x, y, 500, 500, seed=18), y_float=True, standardise_x=False,
                     standardise_y=True)
