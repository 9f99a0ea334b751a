"""Datasets of the benchmark's torch tasks, the split helpers, and the minibatch order of every
torch task.

Everything ships inside scikit-learn or is generated from a fixed seed; nothing is downloaded.
Every loader returns :class:`Splits` (train for steps, validation to choose the learning rate,
test to report) from a fixed split seed, and is cached per process.

The benchmark (:mod:`fitness.training.torch_tasks`) uses digits, breast cancer, Friedman #1
regression, and the majority-token and pointer sequences; no search tier uses them, so the
benchmark stays a test the search never saw (the real-data tier's data is in
:mod:`fitness.training.real_data`).

:class:`BatchOrder` gives the minibatch rows of one seed (a fresh permutation each epoch); the
per-run training loop and the ensemble loop both draw from it, so an optimizer sees the same
minibatches at every learning rate and every optimizer sees the same ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Splits:
    """Tensors of a task: inputs, and class indices (long) or regression targets (float)."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor

    def checksum(self) -> str:
        digest = hashlib.sha256()
        for t in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            digest.update(str(tuple(t.shape)).encode())
            digest.update(t.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


class BatchOrder:
    """Minibatch rows for one seed: a fresh permutation of the training rows each epoch."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, batch_size
        self.gen = torch.Generator().manual_seed(10_000 + int(seed))
        self.order = torch.randperm(n, generator=self.gen)
        self.pos = 0

    def next(self) -> Tensor:
        if self.pos + self.batch_size > self.n:
            self.order, self.pos = torch.randperm(self.n, generator=self.gen), 0
        rows = self.order[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return rows


def split(x: np.ndarray, y: np.ndarray, n_test: int, n_val: int, seed: int) -> list:
    """[(x, y) train, validation, test] from one permutation drawn with ``seed``."""
    order = np.random.default_rng(seed).permutation(len(x))
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    return [(x[i], y[i]) for i in (train, val, test)]


def to_splits(parts: list, y_float: bool, standardise_x: bool = True,
              standardise_y: bool = False, x_tokens: bool = False) -> Splits:
    """Tensors from :func:`split`'s parts, standardised with training statistics if asked."""
    (xtr, ytr), (xva, yva), (xte, yte) = parts
    if standardise_x:
        mean, std = xtr.mean(0), xtr.std(0) + 1e-8
        xtr, xva, xte = ((a - mean) / std for a in (xtr, xva, xte))
    if standardise_y:
        mean, std = ytr.mean(0), ytr.std(0) + 1e-8
        ytr, yva, yte = ((a - mean) / std for a in (ytr, yva, yte))
    xdt = torch.long if x_tokens else torch.float32
    ydt = torch.float32 if y_float else torch.long

    def t(a, dtype):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)

    return Splits(t(xtr, xdt), t(ytr, ydt), t(xva, xdt), t(yva, ydt), t(xte, xdt), t(yte, ydt))


# ------------------------------------------------------------------------------- benchmark


@lru_cache(maxsize=2)
def digits_data(image: bool = False) -> Splits:
    """scikit-learn digits scaled to [0, 1]: 897 train / 360 val / 540 test (as images
    1x8x8 when ``image``).

    The validation split chooses every optimizer's learning rate. At 180 images it let a handful
    of images decide (per-image losses are heavy-tailed at high rates): on ``digits_resmlp`` the
    baselines' rate chosen on validation tested 13.7% above the best rate they tried, 2.4% with
    360 images (9 seeds; docs/results/benchmark-repeats/README.md, ``--rate-cost``).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    if image:
        x = x.reshape(-1, 1, 8, 8)
    return to_splits(split(x, bunch.target, 540, 360, seed=0), y_float=False,
                     standardise_x=False)


@lru_cache(maxsize=1)
def autoencoder_data() -> Splits:
    """Digits pixels in [0, 1] as both input and target (reconstruction)."""
    d = digits_data(False)
    return Splits(d.x_train, d.x_train, d.x_val, d.x_val, d.x_test, d.x_test)


@lru_cache(maxsize=1)
def cancer_data() -> Splits:
    """Breast cancer, standardised with training statistics: 369 train / 60 val / 140 test."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return to_splits(split(bunch.data, bunch.target.astype(np.float32), 140, 60, seed=0),
                     y_float=True)


@lru_cache(maxsize=1)
def friedman_data() -> Splits:
    """Friedman #1 regression (10 features, 5 informative, noise 1.0): 1,400/300/300."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=2000, n_features=10, noise=1.0, random_state=7)
    return to_splits(split(x, y.reshape(-1, 1), 300, 300, seed=7), y_float=True,
                     standardise_y=True)


SEQ_LEN = 16
SEQ_VOCAB = 4


@lru_cache(maxsize=1)
def sequence_data() -> Splits:
    """Majority task: 16 one-hot tokens of 4 letters -> the most frequent letter (ties to the
    lowest). 3,000 train / 500 val / 1,000 test."""
    rng = np.random.default_rng(12345)
    n = 4500
    tokens = rng.integers(0, SEQ_VOCAB, size=(n, SEQ_LEN))
    counts = np.stack([(tokens == k).sum(1) for k in range(SEQ_VOCAB)], axis=1)
    x = np.eye(SEQ_VOCAB, dtype=np.float32)[tokens]  # (n, L, V)
    return to_splits(split(x, counts.argmax(1), 1000, 500, seed=1), y_float=False,
                     standardise_x=False)


POINTER_LEN, POINTER_VOCAB = 10, 8


@lru_cache(maxsize=1)
def pointer_data() -> Splits:
    """Pointer task: 10 tokens of 8 letters, then a position 0..9 -> the token there.
    Inputs are token ids (the position as id 8 + position); 3,000 / 500 / 500."""
    rng = np.random.default_rng(4321)
    n = 4000
    tokens = rng.integers(0, POINTER_VOCAB, size=(n, POINTER_LEN))
    where = rng.integers(0, POINTER_LEN, size=n)
    x = np.concatenate([tokens, (POINTER_VOCAB + where)[:, None]], axis=1)
    return to_splits(split(x, tokens[np.arange(n), where], 500, 500, seed=2), y_float=False,
                     standardise_x=False, x_tokens=True)


__all__ = ["BatchOrder", "POINTER_LEN", "POINTER_VOCAB", "SEQ_LEN", "SEQ_VOCAB", "Splits",
           "autoencoder_data", "cancer_data", "digits_data", "friedman_data", "pointer_data",
           "sequence_data", "split", "to_splits"]
