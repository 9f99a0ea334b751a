"""The benchmark's torch tasks, and the training loop that runs one optimizer on one of them.

Tasks (``evolve benchmark``; their data is used by no search tier, so the benchmark is a test
the search never saw; see :mod:`fitness.training.data`):

* ``digits_mlp``          a 64-64-10 MLP on scikit-learn's 8x8 digits (1,797 images);
* ``digits_cnn``          a two-layer conv net on the same digits as 1x8x8 images;
* ``digits_resmlp``       a residual MLP with LayerNorm (two blocks, width 64) on the digits;
* ``digits_autoencoder``  a 64-32-8-32-64 autoencoder reconstructing the digits (MSE);
* ``cancer_logreg``       logistic regression on the Wisconsin breast-cancer set (569 x 30);
* ``friedman_mlp``        a 10-64-64-1 MLP on Friedman #1 regression (MSE);
* ``seq_gru``             a GRU reads 16 tokens of a 4-letter alphabet and names the most frequent;
* ``seq_attention``       one attention layer reads 10 tokens and a position, names the token there.

Every task splits train / validation / test with a fixed seed; the learning rate is chosen on the
validation loss and the test numbers are reported. Every optimizer runs under the same
learning-rate schedule (cosine decay by default) with the same seeds and minibatches
(:class:`fitness.training.data.BatchOrder`). A run that produces NaN or inf, whose loss climbs
above ``ASCEND`` times its first loss, or whose optimizer raises, stops at once and is marked
diverged: a bad rule is a result, never a crash.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from fitness import schedule as lr_schedule
from fitness.training import data as D

# A run whose training loss climbs above this multiple of its first loss counts as diverged
# (as the proxy tasks' ascent check): finite but useless numbers would otherwise win nothing and
# clutter the tables with 1e17 losses.
ASCEND = 20.0
SCHEDULES = lr_schedule.SCHEDULES

# make_optimizer(params, lr, total_steps) -> optimizer; the benchmark binds the rest.
MakeOptimizer = Callable[[Iterable[Tensor], float, int], torch.optim.Optimizer]
TaskData = D.Splits


def task_loss(kind: str, output: Tensor, target: Tensor) -> Tensor:
    """Mean loss of one model's batch: ``ce`` (logits, classes), ``bce`` (one logit), ``mse``
    (halved mean squared error, as the proxy tasks)."""
    if kind == "ce":
        return nn.functional.cross_entropy(output, target)
    if kind == "bce":
        return nn.functional.binary_cross_entropy_with_logits(output.reshape(target.shape),
                                                              target)
    if kind == "mse":
        return 0.5 * (output - target).pow(2).mean()
    raise ValueError(f"unknown loss kind {kind!r}; use ce, bce or mse")


@dataclass(frozen=True)
class TorchTask:
    """A model, its data, its loss and a step budget."""

    name: str
    description: str
    steps: int
    batch_size: int
    data: Callable[[], D.Splits]
    model: Callable[[], nn.Module]
    loss: str = "ce"  # ce | bce | mse

    @property
    def classification(self) -> bool:
        return self.loss in ("ce", "bce")

    def loss_fn(self, output: Tensor, target: Tensor) -> Tensor:
        return task_loss(self.loss, output, target)

    def correct(self, output: Tensor, target: Tensor) -> int:
        if self.loss == "bce":
            return int(((output.reshape(target.shape) > 0).float() == target).sum())
        return int((output.argmax(-1) == target).sum())


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
    test_acc: float | None = None  # None for regression tasks
    seconds: float = 0.0
    step_seconds: float = 0.0  # time inside optimizer.step()


# ----------------------------------------------------------------------------------------------
# models


class _GRUClassifier(nn.Module):
    def __init__(self, vocab: int = D.SEQ_VOCAB, hidden: int = 24) -> None:
        super().__init__()
        self.gru = nn.GRU(vocab, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: Tensor) -> Tensor:
        _, h = self.gru(x)
        return self.head(h[-1])


class _ResidualMLP(nn.Module):
    """Linear in, blocks of x + W2 relu(W1 LayerNorm(x)), linear out."""

    def __init__(self, d_in: int = 64, width: int = 64, hidden: int = 128, blocks: int = 2,
                 d_out: int = 10) -> None:
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.ReLU(),
                          nn.Linear(hidden, width)) for _ in range(blocks))
        self.out = nn.Linear(width, d_out)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


class _PointerAttention(nn.Module):
    """Token and position embeddings, one attention head, read out at the query position."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.tokens = nn.Embedding(D.POINTER_VOCAB + D.POINTER_LEN, width)
        self.position = nn.Parameter(torch.randn(D.POINTER_LEN + 1, width) * 0.5)
        self.norm = nn.LayerNorm(width)
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.head = nn.Linear(width, D.POINTER_VOCAB)

    def forward(self, ids: Tensor) -> Tensor:
        h = self.tokens(ids) + self.position
        u = self.norm(h)
        q = self.q(u[..., -1:, :])
        att = torch.softmax(q @ self.k(u).transpose(-1, -2) / math.sqrt(u.shape[-1]), dim=-1)
        return self.head((att @ self.v(u))[..., 0, :] + h[..., -1, :])


def _mlp(*sizes: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    return build


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    )


def make_tasks(quick: bool = False) -> dict[str, TorchTask]:
    """The benchmark's torch tasks; ``quick`` cuts the step budgets for smoke tests."""
    s = (lambda full, small: small if quick else full)  # noqa: E731
    tasks = [
        TorchTask("digits_mlp", "MLP 64-64-10 on sklearn digits", s(400, 60), 64,
                  lambda: D.digits_data(False), _mlp(64, 64, 10)),
        TorchTask("digits_cnn", "2-layer CNN on sklearn digits (1x8x8)", s(300, 40), 64,
                  lambda: D.digits_data(True), _cnn),
        TorchTask("digits_resmlp", "residual MLP with LayerNorm (2 blocks) on sklearn digits",
                  s(400, 60), 64, lambda: D.digits_data(False), _ResidualMLP),
        TorchTask("digits_autoencoder", "64-32-8-32-64 autoencoder on sklearn digits (MSE)",
                  s(400, 60), 64, D.autoencoder_data, _mlp(64, 32, 8, 32, 64), "mse"),
        TorchTask("cancer_logreg", "logistic regression on sklearn breast cancer", s(300, 60),
                  32, D.cancer_data, _mlp(30, 1), "bce"),
        TorchTask("friedman_mlp", "MLP 10-64-64-1 on Friedman #1 regression (MSE)", s(400, 60),
                  64, D.friedman_data, _mlp(10, 64, 64, 1), "mse"),
        TorchTask("seq_gru", "GRU(24) names the majority token of 16 (synthetic)", s(300, 40),
                  32, D.sequence_data, _GRUClassifier),
        TorchTask("seq_attention", "one attention head names the token at a queried position "
                  "(synthetic)", s(400, 60), 64, D.pointer_data, _PointerAttention),
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
             batch: int = 2048) -> tuple[float, float | None]:
    """(mean loss, accuracy; None for regression) of ``model`` on (x, y)."""
    model.eval()
    total, correct = 0.0, 0
    for i in range(0, len(x), batch):
        logits = model(x[i:i + batch])
        total += float(task.loss_fn(logits, y[i:i + batch])) * len(logits)
        if task.classification:
            correct += task.correct(logits, y[i:i + batch])
    model.train()
    return total / len(x), correct / len(x) if task.classification else None


def train_task(task: TorchTask, make_optimizer: MakeOptimizer, lr: float, seed: int,
               steps: int | None = None, curve_points: int = 40,
               schedule: str = "cosine") -> RunResult:
    """Train ``task`` with one optimizer at one learning rate under ``schedule``; never raises
    on divergence. An optimizer with ``train()``/``eval()`` modes (schedule-free ones) is put in
    train mode for the steps and in eval mode for the evaluation."""
    steps = steps or task.steps
    data = task.data()
    model = seeded_model(task.model, seed)
    result = RunResult(lr=lr, seed=seed, diverged=False)
    batches = D.BatchOrder(len(data.x_train), task.batch_size, seed)
    every = max(1, steps // curve_points)
    window = first = 0.0
    start = time.perf_counter()
    opt = None
    try:
        opt = make_optimizer(model.parameters(), lr, steps)
        base = [group["lr"] for group in opt.param_groups]
        set_mode(opt, "train")
        for step in range(1, steps + 1):
            factor = lr_schedule.factor(schedule, step, steps)
            for group, lr0 in zip(opt.param_groups, base):
                group["lr"] = lr0 * factor
            idx = batches.next()
            loss = task.loss_fn(model(data.x_train[idx]), data.y_train[idx])
            value = float(loss.detach())
            if not math.isfinite(value):
                result.diverged, result.reason = True, f"loss {value} at step {step}"
                break
            first = value if step == 1 else first
            if value > ASCEND * first:
                result.diverged, result.reason = True, f"loss {value:.3g} > {ASCEND:g}x start"
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
    if opt is not None:
        set_mode(opt, "eval")
    if not result.diverged:
        result.val_loss, _ = evaluate(task, model, data.x_val, data.y_val)
        result.test_loss, result.test_acc = evaluate(task, model, data.x_test, data.y_test)
        if not (math.isfinite(result.val_loss) and math.isfinite(result.test_loss)):
            result.diverged, result.reason = True, "non-finite evaluation loss"
            result.val_loss = result.test_loss = math.inf
            result.test_acc = None
    result.seconds = time.perf_counter() - start
    return result


def set_mode(opt: torch.optim.Optimizer, mode: str) -> None:
    """Put an optimizer with ``train()``/``eval()`` modes (schedule-free ones) in ``mode``."""
    switch = getattr(opt, mode, None)
    if callable(switch):
        switch()


__all__ = ["ASCEND", "MakeOptimizer", "RunResult", "SCHEDULES", "TASK_NAMES", "TaskData",
           "TorchTask", "evaluate", "make_tasks", "seeded_model", "set_mode", "task_loss",
           "torch_threads", "train_task"]
