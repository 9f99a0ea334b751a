"""The real-data tier's tasks: small networks on bundled real data and synthetic sequences,
and a user's own model and data (``evolve run --task FILE.py:make_task``).

Built-in tasks (tier 2 of the search; none of them uses the data of ``evolve benchmark``, which
stays a test no tier has seen; the data is in :mod:`fitness.training.real_data`):

* ``mixture_mlp``          20-64-64-64-6 ReLU MLP classifying a random teacher's labels;
* ``diabetes_mlp``         10-64-64-1 ReLU MLP regression on scikit-learn's diabetes (real data);
* ``teacher_resmlp``       a residual MLP with LayerNorm (two blocks) learning a tanh teacher;
* ``manifold_autoencoder`` a 32-16-4-16-32 autoencoder of points on a curved 4-D manifold;
* ``recall_attention``     one attention head on associative recall: four key-value pairs,
                           then a key; name its value;
* ``bars_cnn``             a two-layer CNN on noisy 8x8 images of bars in four orientations;
* ``adding_gru``           a GRU (width 16) on the adding problem: sum the two marked numbers of
                           a sequence of 12.

Each task gives its data splits (train for steps, validation to choose the learning rate, test
to score), a parameter :class:`~fitness.training.ensemble.Layout`, a seeded initialisation
and a batched forward pass (many models at once). Everything is drawn from fixed seeds.

A user task is a Python file with a function returning :class:`UserTask` (see the README,
"Bring your own task"); its ``nn.Module`` is batched over models with ``torch.func.vmap``.
Loading it runs the user's file, which is what the user asked for; a file that does not define
the function, raises, or returns the wrong thing is a :class:`TaskError` with one line.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from fitness.training import REAL_TASK_NAMES
from fitness.training import ensemble as E
from fitness.training.data import Splits
from fitness.training.real_data import (
    ADDING_LEN,
    RECALL_KEYS,
    RECALL_PAIRS,
    adding_data,
    bars_data,
    diabetes_data,
    manifold_data,
    mixture_data,
    recall_data,
    teacher_data,
)
from fitness.training.torch_tasks import TorchTask, seeded_model

Forward = Callable[[dict[str, Tensor], Tensor], Tensor]


class TaskError(ValueError):
    """A user task that cannot be used; the message is one line saying what to fix."""


@dataclass
class RealTask:
    """One task of the real-data tier (see the module docstring)."""

    name: str
    description: str
    layout: E.Layout
    init: Callable[[int], Tensor]  # seed -> (P,) row of initial parameters
    forward: Forward  # ({name: (M, *shape)}, x (M, B, ...)) -> output (M, B, ...)
    loss: str | Callable[[Tensor, Tensor], Tensor]  # ensemble.losses kind, or per-model losses
    data: Callable[[], Splits]
    steps: int
    batch_size: int
    source: str = "built-in"

    def losses(self, output: Tensor, target: Tensor) -> Tensor:
        """Mean loss of each model, (M,)."""
        if isinstance(self.loss, str):
            return E.losses(self.loss, output, target)
        return self.loss(output, target)

    def config(self) -> dict:
        """What determines the task's results: the baseline cache is keyed by it."""
        return {"name": self.name, "steps": self.steps, "batch_size": self.batch_size,
                "layout": [[n, list(s)] for n, s in self.layout.shapes],
                "loss": self.loss if isinstance(self.loss, str) else "custom",
                "data": self.data().checksum(), "source": self.source,
                "code": code_digest(self.source)}


# Files whose code decides a task's numbers: the models, data, ensemble training and scoring
# here, and the rule's torch math. Cached results (tuned Adam's above all) are keyed by them,
# so an edit to any of them recomputes instead of comparing with numbers of older code.
_CODE_FILES = ("fitness/training/ensemble.py", "fitness/training/data.py",
               "fitness/training/real_data.py", "fitness/training/real_tasks.py",
               "fitness/training/real_tier.py", "fitness/training/torch_tasks.py",
               "fitness/schedule.py", "fitness/lr_grid.py", "fitness/score.py",
               "primitives/torch_backend.py", "primitives/table.py", "fitness/datasets.py")


@functools.cache
def code_digest(source: str = "built-in") -> str:
    """A digest of the code that decides a task's results (and of a user's task file)."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for name in _CODE_FILES:
        h.update((root / name).read_bytes())
    if source.startswith("user:"):  # "user:FILE.py:FUNCTION"
        user_file = Path(source[len("user:"):].rsplit(":", 1)[0])
        if user_file.is_file():
            h.update(user_file.read_bytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------- models


def _mlp_layout(sizes: list[int]) -> E.Layout:
    shapes = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes += [(f"w{i}", (a, b)), (f"b{i}", (b,))]
    return E.Layout(tuple(shapes))


def _mlp_forward(n_layers: int) -> Forward:
    def forward(p: dict[str, Tensor], x: Tensor) -> Tensor:
        h = x
        for i in range(n_layers):
            h = E.linear(h, p[f"w{i}"], p[f"b{i}"])
            if i < n_layers - 1:
                h = torch.relu(h)
        return h

    return forward


def _mlp_task(name: str, description: str, sizes: list[int], loss: str, data, steps: int,
              batch: int) -> RealTask:
    layout = _mlp_layout(sizes)
    return RealTask(name, description, layout, lambda seed: E.he_init(layout, seed),
                    _mlp_forward(len(sizes) - 1), loss, data, steps, batch)


RES_WIDTH, RES_HIDDEN, RES_BLOCKS = 32, 64, 2


def _resmlp_task() -> RealTask:
    shapes = [("w_in", (16, RES_WIDTH)), ("b_in", (RES_WIDTH,))]
    for k in range(RES_BLOCKS):
        shapes += [(f"ln{k}_gain", (RES_WIDTH,)), (f"ln{k}_shift", (RES_WIDTH,)),
                   (f"w{k}a", (RES_WIDTH, RES_HIDDEN)), (f"b{k}a", (RES_HIDDEN,)),
                   (f"w{k}b", (RES_HIDDEN, RES_WIDTH)), (f"b{k}b", (RES_WIDTH,))]
    shapes += [("w_out", (RES_WIDTH, 1)), ("b_out", (1,))]
    layout = E.Layout(tuple(shapes))

    def forward(p: dict[str, Tensor], x: Tensor) -> Tensor:
        h = E.linear(x, p["w_in"], p["b_in"])
        for k in range(RES_BLOCKS):
            u = E.layer_norm(h, p[f"ln{k}_gain"], p[f"ln{k}_shift"])
            u = torch.relu(E.linear(u, p[f"w{k}a"], p[f"b{k}a"]))
            h = h + E.linear(u, p[f"w{k}b"], p[f"b{k}b"])
        return E.linear(h, p["w_out"], p["b_out"])

    return RealTask("teacher_resmlp", "residual MLP with LayerNorm (2 blocks, width 32) "
                    "regressing a random tanh teacher", layout,
                    lambda seed: E.he_init(layout, seed), forward, "mse", teacher_data, 250, 32)


ATT_DIM = 16


def _attention_task() -> RealTask:
    """Each (key, value) pair is one position (key and value embeddings added), the query key
    the last position; one attention layer reads the value whose key matches the query."""
    d, slots = ATT_DIM, RECALL_PAIRS + 1
    layout = E.Layout((("key_embed", (RECALL_KEYS, d)), ("value_embed", (RECALL_KEYS, d)),
                       ("pos", (slots, d)), ("wq", (d, d)), ("wk", (d, d)), ("wv", (d, d)),
                       ("ln_gain", (d,)), ("ln_shift", (d,)),
                       ("w_out", (d, RECALL_KEYS)), ("b_out", (RECALL_KEYS,))))
    std = {"key_embed": 1.0, "value_embed": 1.0, "pos": 0.5}

    def embed(table: Tensor, ids: Tensor) -> Tensor:
        m, b, n = ids.shape
        return torch.gather(table.unsqueeze(1).expand(m, b, table.shape[1], d), 2,
                            ids.unsqueeze(-1).expand(m, b, n, d))

    def forward(p: dict[str, Tensor], tokens: Tensor) -> Tensor:
        keys = torch.cat([tokens[..., 0:-1:2], tokens[..., -1:]], dim=-1)
        values = tokens[..., 1:-1:2] - RECALL_KEYS
        h = embed(p["key_embed"], keys) + p["pos"].unsqueeze(1)
        h = torch.cat([h[:, :, :-1] + embed(p["value_embed"], values), h[:, :, -1:]], dim=2)
        q = E.linear(h[:, :, -1:], p["wq"])
        k, v = E.linear(h, p["wk"]), E.linear(h, p["wv"])
        att = torch.softmax(torch.einsum("mbqd,mbkd->mbqk", q, k) / math.sqrt(d), dim=-1)
        out = torch.einsum("mbqk,mbkd->mbqd", att, v)[:, :, 0]
        out = E.layer_norm(out, p["ln_gain"], p["ln_shift"])
        return E.linear(out, p["w_out"], p["b_out"])

    return RealTask("recall_attention", "one attention head (width 16) on associative recall "
                    "of 4 key-value pairs", layout,
                    lambda seed: E.he_init(layout, seed, std), forward, "ce", recall_data, 250,
                    32)


def _cnn_task() -> RealTask:
    layout = E.Layout((("c1", (4, 1, 3, 3)), ("c1b", (4,)), ("c2", (8, 4, 3, 3)), ("c2b", (8,)),
                       ("w_out", (8, 4)), ("b_out", (4,))))

    def forward(p: dict[str, Tensor], x: Tensor) -> Tensor:
        h = torch.relu(E.conv2d(x, p["c1"], p["c1b"]))
        m, b = h.shape[:2]
        h = nn.functional.max_pool2d(h.reshape(m * b, *h.shape[2:]), 2)
        h = torch.relu(E.conv2d(h.reshape(m, b, *h.shape[1:]), p["c2"], p["c2b"]))
        return E.linear(h.mean(dim=(-1, -2)), p["w_out"], p["b_out"])

    return RealTask("bars_cnn", "two-layer CNN on noisy 8x8 images of bars (4 orientations)",
                    layout, lambda seed: E.he_init(layout, seed), forward, "ce", bars_data, 200,
                    32)


GRU_WIDTH = 16


def _gru_task() -> RealTask:
    """A GRU cell (torch.nn.GRU's gate equations) unrolled over the sequence, then a linear read
    of the last state; weights drawn as torch draws them, U(-1/sqrt(width), 1/sqrt(width))."""
    h_dim = GRU_WIDTH
    layout = E.Layout((("wx", (2, 3 * h_dim)), ("wh", (h_dim, 3 * h_dim)), ("bx", (3 * h_dim,)),
                       ("bh", (3 * h_dim,)), ("w_out", (h_dim, 1)), ("b_out", (1,))))

    def init(seed: int) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        bound = 1.0 / math.sqrt(h_dim)
        return (torch.rand(layout.size, generator=gen) * 2.0 - 1.0) * bound

    def forward(p: dict[str, Tensor], x: Tensor) -> Tensor:
        gates_x = E.linear(x, p["wx"], p["bx"])  # (M, B, L, 3H): the inputs' part, all steps
        h = x.new_zeros(*x.shape[:2], h_dim)
        for t in range(x.shape[2]):
            gx, gh = gates_x[:, :, t], E.linear(h, p["wh"], p["bh"])
            r = torch.sigmoid(gx[..., :h_dim] + gh[..., :h_dim])
            z = torch.sigmoid(gx[..., h_dim:2 * h_dim] + gh[..., h_dim:2 * h_dim])
            n = torch.tanh(gx[..., 2 * h_dim:] + r * gh[..., 2 * h_dim:])
            h = (1.0 - z) * n + z * h
        return E.linear(h, p["w_out"], p["b_out"])

    return RealTask("adding_gru", f"GRU (width {h_dim}) on the adding problem: the sum of the "
                    f"two marked numbers of {ADDING_LEN}", layout, init, forward, "mse",
                    adding_data, 250, 32)


def as_real_task(task: TorchTask) -> RealTask:
    """A benchmark task (an ``nn.Module`` trained model by model) as an ensemble task: the same
    model, data, seeds, minibatches and loss, trained many at once (for measurements such as
    ``scripts/fidelity.py``; the search tiers never use benchmark tasks)."""
    layout, init, forward = E.module_ensemble(lambda seed: seeded_model(task.model, seed))
    return RealTask(task.name, task.description, layout, init, forward, task.loss, task.data,
                    task.steps, task.batch_size, source="benchmark")


def builtin_tasks() -> dict[str, RealTask]:
    """The built-in tasks of the real-data tier, by name."""
    tasks = [
        _mlp_task("mixture_mlp", "20-64-64-64-6 ReLU MLP on a random teacher's classes",
                  [20, 64, 64, 64, 6], "ce", mixture_data, 250, 32),
        _mlp_task("diabetes_mlp", "10-64-64-1 ReLU MLP regression on scikit-learn diabetes",
                  [10, 64, 64, 1], "mse", diabetes_data, 250, 32),
        _resmlp_task(),
        _mlp_task("manifold_autoencoder", "32-16-4-16-32 autoencoder of a curved 4-D manifold",
                  [32, 16, 4, 16, 32], "mse", manifold_data, 250, 32),
        _attention_task(),
        _cnn_task(),
        _gru_task(),
    ]
    return {t.name: t for t in tasks}


BUILTIN_NAMES = REAL_TASK_NAMES  # the package names them so configs need not import torch


# -------------------------------------------------------------------------------- user tasks


@dataclass
class UserTask:
    """What a user's ``make_task()`` returns: a model, its data and a training budget.

    ``model`` builds a fresh ``nn.Module`` (called once per seed, under ``torch.manual_seed``);
    ``train``/``val``/``test`` are (inputs, targets) pairs of tensors with as many rows each;
    ``loss`` is ``"cross_entropy"`` (class targets), ``"mse"``, ``"bce"`` (one logit per
    example) or a function ``(output, target) -> mean loss`` of one model's batch. The
    validation split chooses each optimizer's learning rate; the test split is scored.
    """

    name: str
    model: Callable[[], nn.Module]
    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    loss: str | Callable[[Tensor, Tensor], Tensor] = "cross_entropy"
    steps: int = 300
    batch_size: int = 64
    description: str = field(default="")


_LOSS_NAMES = {"cross_entropy": "ce", "ce": "ce", "mse": "mse", "bce": "bce"}


def load_user_task(spec: str) -> RealTask:
    """``path/to/file.py:function`` -> a :class:`RealTask` (TaskError, one line, if unusable)."""
    path_text, sep, func = spec.rpartition(":")
    if not sep or not path_text or not func.isidentifier():
        raise TaskError(f"--task {spec!r}: expected FILE.py:FUNCTION, e.g. my_task.py:make_task")
    path = Path(path_text)
    if not path.is_file():
        raise TaskError(f"--task {spec!r}: no file {path}")
    module_name = "evolve_user_task_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    try:
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
        module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as err:  # noqa: BLE001 - the user's file: any failure is their error
        raise TaskError(f"--task {spec!r}: importing {path} raised {_one_line(err)}") from None
    make = getattr(module, func, None)
    if not callable(make):
        raise TaskError(f"--task {spec!r}: {path} defines no function {func}()")
    try:
        task = make()
    except Exception as err:  # noqa: BLE001
        raise TaskError(f"--task {spec!r}: {func}() raised {_one_line(err)}") from None
    if not isinstance(task, UserTask):
        raise TaskError(f"--task {spec!r}: {func}() must return fitness.training.real_tasks."
                        f"UserTask (also importable as evolve.UserTask), got "
                        f"{type(task).__name__}")
    return _from_user(task, spec)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _from_user(task: UserTask, spec: str) -> RealTask:
    where = f"--task {spec!r}"
    if not (isinstance(task.name, str) and task.name.isidentifier()):
        raise TaskError(f"{where}: name {task.name!r} must be an identifier such as my_task")
    splits = []
    for part in ("train", "val", "test"):
        pair = getattr(task, part)
        if not (isinstance(pair, tuple) and len(pair) == 2
                and all(isinstance(t, Tensor) for t in pair)):
            raise TaskError(f"{where}: {part} must be a tuple (inputs, targets) of tensors")
        if len(pair[0]) != len(pair[1]) or len(pair[0]) == 0:
            raise TaskError(f"{where}: {part} has {len(pair[0])} inputs and {len(pair[1])} "
                            "targets; they must be equal and non-zero")
        splits += [pair[0].detach().float() if pair[0].is_floating_point() else pair[0].detach(),
                   pair[1].detach()]
    data = Splits(*splits)
    if not (isinstance(task.steps, int) and task.steps >= 1):
        raise TaskError(f"{where}: steps must be a positive integer, got {task.steps!r}")
    if not (isinstance(task.batch_size, int) and 1 <= task.batch_size <= len(data.x_train)):
        raise TaskError(f"{where}: batch_size must be in 1..{len(data.x_train)} (the training "
                        f"rows), got {task.batch_size!r}")
    loss = task.loss
    if isinstance(loss, str):
        if loss not in _LOSS_NAMES:
            raise TaskError(f"{where}: loss {loss!r} unknown; use cross_entropy, mse, bce or a "
                            "function (output, target) -> mean loss")
        kind = _LOSS_NAMES[loss]
    elif callable(loss):
        kind = None
    else:
        raise TaskError(f"{where}: loss must be a name or a function")
    try:
        real = _vmap_task(task, data, kind, spec)
        _check_runs(real)
    except TaskError:
        raise
    except Exception as err:  # noqa: BLE001 - the user's model: its failure is a usage error
        raise TaskError(f"{where}: the model does not run on its data ({_one_line(err)})") from None
    return real


def _vmap_task(task: UserTask, data: Splits, kind: str | None, spec: str) -> RealTask:
    def build(seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = task.model()
        if not isinstance(model, nn.Module):
            raise TaskError(f"--task {spec!r}: model() must return a torch.nn.Module, got "
                            f"{type(model).__name__}")
        return model

    try:
        layout, init, forward = E.module_ensemble(build)
    except ValueError as err:
        raise TaskError(f"--task {spec!r}: {err}") from None
    loss: str | Callable = kind if kind is not None else _per_model(task.loss)
    return RealTask(task.name, task.description or f"user task from {spec}", layout, init,
                    forward, loss, lambda: data, task.steps, task.batch_size,
                    source=f"user:{spec}")


def _per_model(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """A loss of one model's batch -> the (M,) losses of an ensemble (model by model, so any
    function the user wrote works)."""
    def losses(output: Tensor, target: Tensor) -> Tensor:
        return torch.stack([fn(o, t).reshape(()) for o, t in zip(output, target)])

    return losses


def _check_runs(task: RealTask) -> None:
    """A forward and backward pass of two copies on one batch gives two finite losses."""
    data = task.data()
    theta = torch.stack([task.init(0), task.init(1)]).requires_grad_(True)
    x = data.x_train[:task.batch_size].unsqueeze(0).expand(2, *data.x_train[:task.batch_size].shape)
    y = data.y_train[:task.batch_size].unsqueeze(0).expand(2, *data.y_train[:task.batch_size].shape)
    losses = task.losses(task.forward(task.layout.views(theta), x), y)
    if losses.shape != (2,):
        raise TaskError(f"task {task.name}: the loss must be one number per batch, got shape "
                        f"{tuple(losses.shape[1:])}")
    if not bool(torch.isfinite(losses).all()):
        raise TaskError(f"task {task.name}: the loss at the start is not finite")
    losses.sum().backward()


__all__ = ["BUILTIN_NAMES", "RealTask", "TaskError", "as_real_task", "UserTask", "builtin_tasks",
           "load_user_task"]
