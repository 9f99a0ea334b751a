"""Torch benchmark tasks on bundled real data, and the training loop that runs one optimizer.

Tasks (data ships inside scikit-learn or is generated from a fixed seed; nothing is downloaded):

* ``digits_mlp``    a 64-64-10 MLP on scikit-learn's 8x8 digits (1,797 images);
* ``digits_cnn``    a two-layer conv net on the same digits as 1x8x8 images;
* ``cancer_logreg`` logistic regression on the Wisconsin breast-cancer set (569 x 30);
* ``seq_gru``       a GRU reads 24 tokens of a 4-letter alphabet and names the most frequent one.

Every task splits train / validation / test with a fixed seed; learning rates are chosen on the
validation loss and the test numbers are reported. A run that produces NaN or inf, whose loss
climbs above ``EXPLODE`` times its first loss, or whose optimizer raises, stops at once and is
marked diverged: a bad rule is a result, never a crash.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

# A run whose training loss climbs above this multiple of its first loss counts as diverged
# (as the proxy tasks' ascent check): finite but useless numbers would otherwise win nothing and
# clutter the tables with 1e17 losses.
EXPLODE = 100.0

# make_optimizer(params, lr, total_steps) -> optimizer; the benchmark binds the rest.
MakeOptimizer = Callable[[Iterable[Tensor], float, int], torch.optim.Optimizer]


@dataclass(frozen=True)
class TaskData:
    """Tensors of one task: inputs float32, targets int64 (class) or float32 (binary)."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor


@dataclass(frozen=True)
class TorchTask:
    """A model, its data and a step budget. ``binary`` tasks use one logit and BCE."""

    name: str
    description: str
    steps: int
    batch_size: int
    data: Callable[[], TaskData]
    model: Callable[[], nn.Module]
    binary: bool = False

    def loss_fn(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.binary:
            return nn.functional.binary_cross_entropy_with_logits(logits.squeeze(-1), target)
        return nn.functional.cross_entropy(logits, target)

    def correct(self, logits: Tensor, target: Tensor) -> int:
        if self.binary:
            return int(((logits.squeeze(-1) > 0).float() == target).sum())
        return int((logits.argmax(-1) == target).sum())


@dataclass
class RunResult:
    """One training run: one optimizer, one learning rate, one seed."""

    lr: float
    seed: int
    diverged: bool
    reason: str = ""
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, mean train loss)
    val_loss: float = math.inf
    test_loss: float = math.inf
    test_acc: float = 0.0
    seconds: float = 0.0
    step_seconds: float = 0.0  # time inside optimizer.step()


# ----------------------------------------------------------------------------------------------
# data


def _split(x: np.ndarray, y: np.ndarray, n_test: int, n_val: int, seed: int = 0):
    order = np.random.default_rng(seed).permutation(len(x))
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    return (x[train], y[train]), (x[val], y[val]), (x[test], y[test])


def _as_task_data(parts, y_dtype: torch.dtype) -> TaskData:
    tensors = []
    for x, y in parts:
        tensors.append(torch.as_tensor(x, dtype=torch.float32))
        tensors.append(torch.as_tensor(y, dtype=y_dtype))
    return TaskData(*tensors)


@lru_cache(maxsize=2)
def digits_data(image: bool = False) -> TaskData:
    """scikit-learn digits scaled to [0, 1]: 1,797 = 1,077 train / 180 val / 540 test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    if image:
        x = x.reshape(-1, 1, 8, 8)
    return _as_task_data(_split(x, bunch.target, 540, 180), torch.int64)


@lru_cache(maxsize=1)
def cancer_data() -> TaskData:
    """Breast cancer, standardised with training statistics: 369 train / 60 val / 140 test."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    (xtr, ytr), (xva, yva), (xte, yte) = _split(bunch.data, bunch.target, 140, 60)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-8
    parts = [((x - mean) / std, y) for x, y in ((xtr, ytr), (xva, yva), (xte, yte))]
    return _as_task_data(parts, torch.float32)


SEQ_LEN = 24
SEQ_VOCAB = 4


@lru_cache(maxsize=1)
def sequence_data() -> TaskData:
    """Synthetic majority task: 24 one-hot tokens of 4 letters -> the most frequent letter.

    Ties go to the lowest letter. 3,000 train / 500 val / 1,000 test, from a fixed seed.
    """
    rng = np.random.default_rng(12345)
    n = 4500
    tokens = rng.integers(0, SEQ_VOCAB, size=(n, SEQ_LEN))
    counts = np.stack([(tokens == k).sum(1) for k in range(SEQ_VOCAB)], axis=1)
    labels = counts.argmax(1)
    x = np.eye(SEQ_VOCAB, dtype=np.float32)[tokens]  # (n, L, V)
    return _as_task_data(_split(x, labels, 1000, 500, seed=1), torch.int64)


# ----------------------------------------------------------------------------------------------
# models


class _GRUClassifier(nn.Module):
    def __init__(self, vocab: int = SEQ_VOCAB, hidden: int = 32) -> None:
        super().__init__()
        self.gru = nn.GRU(vocab, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: Tensor) -> Tensor:
        _, h = self.gru(x)
        return self.head(h[-1])


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    )


def _logreg() -> nn.Module:
    return nn.Linear(30, 1)


def make_tasks(quick: bool = False) -> dict[str, TorchTask]:
    """The benchmark's torch tasks; ``quick`` cuts the step budgets for smoke tests."""
    s = (lambda full, small: small if quick else full)  # noqa: E731
    tasks = [
        TorchTask("digits_mlp", "MLP 64-64-10 on sklearn digits", s(400, 60), 64,
                  lambda: digits_data(False), _mlp),
        TorchTask("digits_cnn", "2-layer CNN on sklearn digits (1x8x8)", s(300, 40), 64,
                  lambda: digits_data(True), _cnn),
        TorchTask("cancer_logreg", "logistic regression on sklearn breast cancer", s(300, 60),
                  32, cancer_data, _logreg, binary=True),
        TorchTask("seq_gru", "GRU(32) names the majority token of 24 (synthetic)", s(300, 40),
                  64, sequence_data, _GRUClassifier),
    ]
    return {t.name: t for t in tasks}


TASK_NAMES = tuple(make_tasks())


# ----------------------------------------------------------------------------------------------
# training


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads, then restore. These models are tiny: one thread avoids
    OpenMP spin-waits that make them tens of times slower on a busy 2-core machine."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seeded_model(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a model with its initial weights drawn from ``seed`` (global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@torch.no_grad()
def evaluate(task: TorchTask, model: nn.Module, x: Tensor, y: Tensor,
             batch: int = 2048) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` on (x, y)."""
    model.eval()
    total, correct = 0.0, 0
    for i in range(0, len(x), batch):
        logits = model(x[i:i + batch])
        total += float(task.loss_fn(logits, y[i:i + batch])) * len(logits)
        correct += task.correct(logits, y[i:i + batch])
    model.train()
    return total / len(x), correct / len(x)


def train_task(task: TorchTask, make_optimizer: MakeOptimizer, lr: float, seed: int,
               steps: int | None = None, curve_points: int = 40) -> RunResult:
    """Train ``task`` with one optimizer at one learning rate; never raises on divergence."""
    steps = steps or task.steps
    data = task.data()
    model = seeded_model(task.model, seed)
    result = RunResult(lr=lr, seed=seed, diverged=False)
    gen = torch.Generator().manual_seed(seed)
    n = len(data.x_train)
    every = max(1, steps // curve_points)
    window = first = 0.0
    start = time.perf_counter()
    try:
        opt = make_optimizer(model.parameters(), lr, steps)
        order = torch.randperm(n, generator=gen)
        pos = 0
        for step in range(1, steps + 1):
            if pos + task.batch_size > n:
                order, pos = torch.randperm(n, generator=gen), 0
            idx = order[pos:pos + task.batch_size]
            pos += task.batch_size
            loss = task.loss_fn(model(data.x_train[idx]), data.y_train[idx])
            value = float(loss.detach())
            if not math.isfinite(value):
                result.diverged, result.reason = True, f"loss {value} at step {step}"
                break
            first = value if step == 1 else first
            if value > EXPLODE * first:
                result.diverged, result.reason = True, f"loss {value:.3g} > {EXPLODE:g}x start"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t0 = time.perf_counter()
            opt.step()
            result.step_seconds += time.perf_counter() - t0
            window += value
            if step % every == 0:
                result.curve.append((step, window / every))
                window = 0.0
    except (RuntimeError, ValueError, ArithmeticError) as err:
        # an exported rule or a baseline that fails mid-run is a diverged run, with the reason
        result.diverged, result.reason = True, f"{type(err).__name__}: {err}".splitlines()[0]
    if not result.diverged:
        result.val_loss, _ = evaluate(task, model, data.x_val, data.y_val)
        result.test_loss, result.test_acc = evaluate(task, model, data.x_test, data.y_test)
        if not (math.isfinite(result.val_loss) and math.isfinite(result.test_loss)):
            result.diverged, result.reason = True, "non-finite evaluation loss"
            result.val_loss = result.test_loss = math.inf
            result.test_acc = 0.0
    result.seconds = time.perf_counter() - start
    return result


__all__ = ["MakeOptimizer", "RunResult", "TASK_NAMES", "TaskData", "TorchTask", "cancer_data",
           "digits_data", "evaluate", "make_tasks", "seeded_model", "sequence_data",
           "torch_threads", "train_task"]
