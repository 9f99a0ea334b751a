"""Proxy tasks: task families, the instances a seed draws from them, and the named suites.

A :class:`TaskSpec` names a family and its options; :func:`build` turns a spec and a seed into a
:class:`TaskInstance` (arrays only, drawn with an explicit ``numpy.random.default_rng``; a new
seed is a new instance in milliseconds), whose :meth:`TaskInstance.run` runs a Program at a
batch of learning rates through the compiled loop of its family (:mod:`fitness.kernels`).
Families:

* ``quadratic``   diagonal ill-conditioned quadratic, condition number drawn log-uniformly from
  ``cond``, optionally with Gaussian gradient noise;
* ``rosenbrock``  the n-dimensional Rosenbrock function from a perturbed (-1.2, 1, ...) start;
* ``logreg``      logistic regression with minibatches on synthetic data whose features have
  very different scales;
* ``mlp``         MLP (ReLU or tanh) with minibatches on data bundled with scikit-learn (no
  download): classifiers on ``digits`` and ``wine``, a regressor on ``diabetes``; scored on
  held-out loss;
* ``blobs``       deep MLP classifier on synthetic Gaussian clusters (several per class, in a
  few informative directions among noise features of mixed scales, 5% label noise);
* ``teacher``     teacher-student regression (a random teacher MLP labels Gaussian inputs);
* ``autoencoder`` bottleneck MLP autoencoder (targets = inputs, MSE) on ``digits`` or on a
  synthetic ``manifold`` (a random 2-layer map of a few latent factors, plus noise);
* ``rnn``         Elman recurrent network (tanh) on the adding problem: sequences of (value,
  marker), the target the sum of the two marked values (a memory across the sequence).

The data come from :mod:`fitness.datasets`. Suites: ``search`` (what evolution scores on;
alias ``default``; ``search1`` is one draw of its tasks), ``heldout`` (the funnel's proxy check: every task differs from every search
task in family or data) and ``hurdle`` (one short quadratic). docs/scoring.md says which data
the torch benchmark also uses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fitness import datasets, kernels
from fitness import schedule as lr_schedule
from fitness.interpreter import runs_per_call
from primitives.files import json_digest
from primitives.program import Program

# Bump when a family's data, model or loss changes, so cached baselines are recomputed.
TASKS_VERSION = 4
# A run stops as "ascended" once its training loss exceeds this multiple of the start loss.
ASCEND_FACTOR = 20.0

# The compiled loop each family runs on, and the names of its task arguments in the order of
# TaskInstance.arrays: the one spelling of that layout (TaskInstance.fields reads it).
LOOPS = {"quadratic": "quadratic", "rosenbrock": "rosenbrock", "rnn": "rnn"}  # others: "mlp"
ARRAY_FIELDS = {
    "quadratic": ("curvature", "center", "w0", "noise"),
    "rosenbrock": ("shift", "w0"),
    "mlp": ("sizes", "w_off", "b_off", "act", "w0", "x", "y", "batches", "x_test", "y_test",
            "loss"),
    "rnn": ("dims", "w0", "x", "y", "batches", "x_test", "y_test"),
}


@dataclass(frozen=True)
class TaskSpec:
    """A task family with its options; with a seed it gives one :class:`TaskInstance`."""

    name: str
    family: str
    steps: int
    options: dict[str, Any] = field(default_factory=dict)

    def config(self, seed: int) -> dict[str, Any]:
        """Everything that determines the instance: what the baseline cache is keyed by."""
        return {
            "name": self.name,
            "family": self.family,
            "steps": self.steps,
            "options": self.options,
            "seed": int(seed),
            "version": TASKS_VERSION,
        }


@dataclass
class RunOutcome:
    """One Program on one instance at each lr: final (scored) losses and how each run ended."""

    loss0: float
    final: np.ndarray  # NaN where the run failed
    status: np.ndarray  # kernels.STATUS_*
    steps_done: np.ndarray


@dataclass
class TaskInstance:
    spec: TaskSpec
    seed: int
    n_params: int
    loss_min: float  # a lower bound of the scored loss (0 for every family here)
    arrays: tuple  # the kernel's task arguments, in order
    w0: np.ndarray

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def steps(self) -> int:
        return self.spec.steps

    def config(self) -> dict[str, Any]:
        return self.spec.config(self.seed)

    @property
    def loop(self) -> str:
        """The compiled loop that runs this instance: quadratic, rosenbrock or mlp."""
        return LOOPS.get(self.spec.family, "mlp")

    def fields(self) -> dict[str, Any]:
        """The task arguments by name (:data:`ARRAY_FIELDS` of :attr:`loop`)."""
        return dict(zip(ARRAY_FIELDS[self.loop], self.arrays))

    def run(self, program: Program, lrs, steps: int | None = None,
            schedule: str = lr_schedule.DEFAULT) -> RunOutcome:
        """Run ``program`` for ``steps`` (default: the spec's) at each lr of ``lrs``, side by
        side in compiled calls (:func:`fitness.interpreter.runs_per_call` runs a call), with
        the learning-rate schedule ``schedule``."""
        steps = self.spec.steps if steps is None else int(steps)
        lrs = np.ascontiguousarray(lrs, dtype=np.float64)
        per_call = runs_per_call(self.n_params)
        if len(lrs) > per_call:
            parts = [self.run(program, lrs[i:i + per_call], steps, schedule)
                     for i in range(0, len(lrs), per_call)]
            return RunOutcome(parts[0].loss0, *(np.concatenate([getattr(o, f) for o in parts])
                                                for f in ("final", "status", "steps_done")))
        factors = lr_schedule.factors(schedule, steps)
        f = self.fields()
        if self.loop == "quadratic":
            out = kernels.run_quadratic_task(*program.arrays(), f["curvature"], f["center"],
                                             f["w0"], f["noise"][:steps], lrs, factors, steps,
                                             ASCEND_FACTOR)
        elif self.loop == "rosenbrock":
            out = kernels.run_rosenbrock_task(*program.arrays(), f["shift"], f["w0"], lrs,
                                              factors, steps, ASCEND_FACTOR)
        elif self.loop == "rnn":
            out = kernels.run_rnn_task(*program.arrays(), f["dims"], f["w0"], f["x"], f["y"],
                                       f["batches"][:steps], f["x_test"], f["y_test"], lrs,
                                       factors, steps, ASCEND_FACTOR)
        else:
            out = kernels.run_mlp_task(*program.arrays(), f["sizes"], f["w_off"], f["b_off"],
                                       f["act"], f["w0"], f["x"], f["y"], f["batches"][:steps],
                                       f["x_test"], f["y_test"], f["loss"], lrs, factors, steps,
                                       ASCEND_FACTOR)
        loss0, final, status, done = out
        return RunOutcome(float(loss0), final, status, done)

    def loss_and_grad(self, w: np.ndarray, step: int = 0) -> tuple[float, np.ndarray]:
        """Training loss and hand-written gradient at ``w`` (step ``step``'s minibatch).

        For tests (gradient checks against autograd) and the torch reimplementation.
        """
        w = np.ascontiguousarray(w, dtype=np.float64)
        grad = np.zeros_like(w)
        f = self.fields()
        if self.loop == "quadratic":
            grad[:] = f["curvature"] * (w - f["center"])
            return float(kernels.quadratic_loss(f["curvature"], f["center"], w)), grad
        if self.loop == "rosenbrock":
            return float(kernels.rosenbrock_loss_grad(w, f["shift"], grad)), grad
        if self.loop == "rnn":
            loss = kernels.rnn_loss_grad(w, f["dims"], f["x"], f["y"], f["batches"][step], grad)
            return float(loss), grad
        loss = kernels.mlp_loss_grad(w, f["sizes"], f["w_off"], f["b_off"], f["act"], f["x"],
                                     f["y"], f["batches"][step], f["loss"], grad)
        return float(loss), grad

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "family": self.spec.family, "params": self.n_params,
                "steps": self.steps, **self.spec.options}


def instance_seed(seed: int, name: str) -> int:
    """Per-task seed from the suite seed and the task name (hashlib, stable across runs)."""
    digest = hashlib.sha256(f"{int(seed)}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def config_hash(config: dict[str, Any]) -> str:
    return json_digest(config)


# --------------------------------------------------------------------------------------------
# Builders, one per family.


def _quadratic(spec: TaskSpec, rng: np.random.Generator) -> TaskInstance:
    o = spec.options
    p = int(o["dim"])
    lo, hi = o.get("cond", (1e2, 1e4))
    cond = 10.0 ** rng.uniform(np.log10(lo), np.log10(hi))
    curvature = np.ascontiguousarray(rng.permutation(np.logspace(0.0, -np.log10(cond), p)))
    center = rng.standard_normal(p)
    w0 = center + rng.standard_normal(p)
    noise_scale = float(o.get("noise", 0.0))
    if noise_scale > 0.0:
        # noise relative to the gradient's size at the start, so it matters at every lr
        sigma = noise_scale * float(np.sqrt(np.mean((curvature * (w0 - center)) ** 2)))
        noise = sigma * rng.standard_normal((spec.steps, p))
    else:
        noise = np.zeros((0, p))
    return TaskInstance(spec, 0, p, 0.0, (curvature, center, w0, noise), w0)


def _rosenbrock(spec: TaskSpec, rng: np.random.Generator) -> TaskInstance:
    p = int(spec.options["dim"])
    u0 = np.tile([-1.2, 1.0], (p + 1) // 2)[:p] + 0.1 * rng.standard_normal(p)
    # the shift puts w = 0 on a steep slope, so weight decay alone (the rule ``w``) gains nothing
    shift = np.full(p, -2.0)
    w0 = np.ascontiguousarray(u0 - shift)
    return TaskInstance(spec, 0, p, 0.0, (shift, w0), w0)


def _layout(sizes: list[int]) -> tuple[np.ndarray, np.ndarray, int]:
    w_off, b_off = [], []
    pos = 0
    for nin, nout in zip(sizes[:-1], sizes[1:]):
        w_off.append(pos)
        pos += nin * nout
        b_off.append(pos)
        pos += nout
    return np.array(w_off, dtype=np.int64), np.array(b_off, dtype=np.int64), pos


def _init_mlp(sizes: list[int], rng: np.random.Generator, gain: float = 2.0) -> np.ndarray:
    """He-normal (gain 2, ReLU) or Glorot-like (gain 1, tanh) weights, zero biases."""
    parts = []
    for nin, nout in zip(sizes[:-1], sizes[1:]):
        parts.append(rng.standard_normal(nin * nout) * np.sqrt(gain / nin))
        parts.append(np.zeros(nout))
    return np.concatenate(parts)


_ACTS = {"relu": kernels.ACT_RELU, "tanh": kernels.ACT_TANH}


def _mlp_instance(spec: TaskSpec, rng: np.random.Generator, data: datasets.Arrays,
                  hidden: list[int], loss_kind: int) -> TaskInstance:
    """An MLP from x's width through ``hidden`` to y's width, trained on minibatches of x."""
    x, y, x_test, y_test = data
    act = spec.options.get("act", "relu")
    sizes = [x.shape[1], *hidden, y.shape[1]]
    w_off, b_off, p = _layout(sizes)
    w0 = _init_mlp(sizes, rng, 2.0 if act == "relu" else 1.0) if hidden else np.zeros(p)
    batches = rng.integers(0, x.shape[0], size=(spec.steps, int(spec.options["batch"])))
    arrays = (
        np.array(sizes, dtype=np.int64), w_off, b_off, _ACTS[act], w0,
        np.ascontiguousarray(x), np.ascontiguousarray(y), batches.astype(np.int64),
        np.ascontiguousarray(x_test), np.ascontiguousarray(y_test), loss_kind,
    )
    return TaskInstance(spec, 0, p, 0.0, arrays, w0)


def _mlp(spec: TaskSpec, rng: np.random.Generator) -> TaskInstance:
    o = spec.options
    data = datasets.real(o["data"], int(o["test"]), rng)
    loss = kernels.LOSS_MSE if data[1].shape[1] == 1 else kernels.LOSS_SOFTMAX_CE
    return _mlp_instance(spec, rng, data, list(o["hidden"]), loss)


def _logreg(spec: TaskSpec, rng: np.random.Generator) -> TaskInstance:
    o = spec.options
    data = datasets.logistic(int(o["dim"]), int(o["train"]), int(o["test"]), rng)
    return _mlp_instance(spec, rng, data, [], kernels.LOSS_LOGISTIC)


def _blobs(spec: TaskSpec, rng: np.random.Generator) -> TaskInstance:
    o = spec.options
    data = datasets.blobs(int(o["dim"]), int(o["classes"]), int(o.get("informative", 4)),
                          int(o.get("clusters", 2)), int(o["train"]), int(o["test"]), rng)
    return _mlp_instance(spec, rng, data, list(o["hidden"]), kernels.LOSS_SOFTMAX_CE)


def _teacher(spec: TaskSpec, rng: np.random.Generator) -> TaskInstance:
    o = spec.options
    data = datasets.teacher(int(o["dim"]), list(o["teacher"]), int(o["train"]), int(o["test"]),
                            rng)
    return _mlp_instance(spec, rng, data, list(o["hidden"]), kernels.LOSS_MSE)


def _autoencoder(spec: TaskSpec, rng: np.random.Generator) -> TaskInstance:
    o = spec.options
    if o["data"] == "manifold":
        data = datasets.manifold(int(o["dim"]), int(o["latent"]), int(o["train"]),
                                 int(o["test"]), rng)
    else:
        x, _, x_test, _ = datasets.real(o["data"], int(o["test"]), rng)
        data = (x, x, x_test, x_test)
    return _mlp_instance(spec, rng, data, list(o["hidden"]), kernels.LOSS_MSE)


def _rnn(spec: TaskSpec, rng: np.random.Generator) -> TaskInstance:
    """An Elman network (tanh, ``hidden`` units) reading ``length`` steps of the adding
    problem (``data``: the one sequence data set here), trained on minibatches."""
    o = spec.options
    length, hidden = int(o["length"]), int(o["hidden"])
    x, y, x_test, y_test = datasets.adding(length, int(o["train"]), int(o["test"]), rng)
    din = x.shape[1] // length
    # Wx, Wh and the read-out Glorot-like (the recurrence starts near unit gain), biases zero
    w0 = np.concatenate([rng.standard_normal(din * hidden) / np.sqrt(din),
                         rng.standard_normal(hidden * hidden) / np.sqrt(hidden),
                         np.zeros(hidden), rng.standard_normal(hidden) / np.sqrt(hidden),
                         np.zeros(1)])
    batches = rng.integers(0, x.shape[0], size=(spec.steps, int(o["batch"])))
    arrays = (np.array([din, hidden, length], dtype=np.int64), w0, np.ascontiguousarray(x),
              np.ascontiguousarray(y), batches.astype(np.int64), np.ascontiguousarray(x_test),
              np.ascontiguousarray(y_test))
    return TaskInstance(spec, 0, w0.shape[0], 0.0, arrays, w0)


_BUILDERS = {
    "quadratic": _quadratic,
    "rosenbrock": _rosenbrock,
    "logreg": _logreg,
    "mlp": _mlp,
    "blobs": _blobs,
    "teacher": _teacher,
    "autoencoder": _autoencoder,
    "rnn": _rnn,
}


def build(spec: TaskSpec, seed: int) -> TaskInstance:
    """The instance of ``spec`` for ``seed`` (a pure function of the two)."""
    rng = np.random.default_rng(instance_seed(seed, spec.name))
    instance = _BUILDERS[spec.family](spec, rng)
    instance.seed = int(seed)
    return instance


# --------------------------------------------------------------------------------------------
# Suites. scripts/bench_cost.py prints what each task costs a rule (with the lr search); the
# networks dominate, so their widths and batches stay small.

# How many instances of each search task one score averages over: one draw of small tasks ranks
# rules noisily (docs/scoring.md has the measurements that chose four).
SEARCH_DRAWS = 4


def drawn(specs: tuple[TaskSpec, ...], draws: int) -> tuple[TaskSpec, ...]:
    """Each spec ``draws`` times: the copies are named ``name.2`` ... ``name.N``, and since an
    instance's seed comes from the suite seed and the task's name, each copy is a fresh draw
    of the same family (new data, start and, for the quadratic, conditioning)."""
    return tuple(spec if j == 0 else replace(spec, name=f"{spec.name}.{j + 1}")
                 for j in range(draws) for spec in specs)


# The search suite's task families, once (the suite holds SEARCH_DRAWS draws of each).
SEARCH_TASKS = (
    TaskSpec("quad_noisy", "quadratic", 200,
             {"dim": 200, "cond": (1e2, 1e4), "noise": 0.5}),
    TaskSpec("logreg_20", "logreg", 150,
             {"dim": 20, "train": 1024, "test": 512, "batch": 32}),
    TaskSpec("mlp_digits_tanh", "mlp", 150,
             {"data": "digits", "hidden": [16, 16], "act": "tanh", "batch": 16,
              "test": 240}),
    TaskSpec("blobs_deep", "blobs", 200,
             {"dim": 16, "classes": 4, "informative": 4, "clusters": 2,
              "hidden": [16, 16, 16], "train": 1024, "test": 256, "batch": 24}),
    TaskSpec("autoenc_manifold", "autoencoder", 200,
             {"data": "manifold", "dim": 16, "latent": 3, "hidden": [24, 4, 24],
              "train": 1024, "test": 256, "batch": 24}),
    TaskSpec("teacher_deep", "teacher", 150,
             {"dim": 8, "teacher": [32, 32], "hidden": [24, 24], "train": 1024,
              "test": 256, "batch": 24}),
    TaskSpec("rnn_adding", "rnn", 200,
             {"data": "adding", "length": 10, "hidden": 8, "train": 1024, "test": 256,
              "batch": 16}),
)

SUITES: dict[str, tuple[TaskSpec, ...]] = {
    "search": drawn(SEARCH_TASKS, SEARCH_DRAWS),
    # one draw of each search task: a quarter of the cost, for smoke runs and timings
    "search1": SEARCH_TASKS,
    "heldout": (
        TaskSpec("autoenc_digits", "autoencoder", 200,
                 {"data": "digits", "hidden": [32, 8, 32], "batch": 16, "test": 360}),
        TaskSpec("mlp_wine_tanh", "mlp", 200,
                 {"data": "wine", "hidden": [16], "act": "tanh", "batch": 16, "test": 48}),
        TaskSpec("mlp_diabetes", "mlp", 300,
                 {"data": "diabetes", "hidden": [32, 16], "batch": 16, "test": 100}),
        TaskSpec("blobs_wide_tanh", "blobs", 200,
                 {"dim": 32, "classes": 8, "informative": 6, "clusters": 1, "hidden": [48],
                  "act": "tanh", "train": 2048, "test": 512, "batch": 32}),
        TaskSpec("teacher_wide", "teacher", 200,
                 {"dim": 16, "teacher": [32, 32], "hidden": [64], "train": 2048, "test": 512,
                  "batch": 32}),
        TaskSpec("quad_ill_1000", "quadratic", 300, {"dim": 1000, "cond": (1e3, 1e4)}),
        TaskSpec("rosenbrock_64", "rosenbrock", 300, {"dim": 64}),
        TaskSpec("logreg_50_b8", "logreg", 300,
                 {"dim": 50, "train": 2048, "test": 512, "batch": 8}),
    ),
    "hurdle": (
        TaskSpec("quad_hurdle", "quadratic", 40, {"dim": 50, "cond": (1e2, 1e3)}),
    ),
}
SUITE_ALIASES = {"default": "search"}


def suite_names() -> list[str]:
    return sorted([*SUITES, *SUITE_ALIASES])


def get_suite(name: str) -> tuple[TaskSpec, ...]:
    """The specs of a suite; KeyError naming the known suites if there is none of that name."""
    key = SUITE_ALIASES.get(name, name)
    if key not in SUITES:
        raise KeyError(f"unknown suite {name!r}; known suites: {', '.join(suite_names())}")
    return SUITES[key]


__all__ = [
    "ARRAY_FIELDS",
    "ASCEND_FACTOR",
    "LOOPS",
    "RunOutcome",
    "SEARCH_DRAWS",
    "SEARCH_TASKS",
    "SUITES",
    "TASKS_VERSION",
    "TaskInstance",
    "TaskSpec",
    "build",
    "config_hash",
    "drawn",
    "get_suite",
    "instance_seed",
    "suite_names",
]
