"""Proxy tasks rebuilt in torch on one flat weight vector, and training unrolled through them.

Two users: ``evolve refine`` differentiates the loss at the end of a run with respect to a
rule's constants (a meta-gradient through every step), and the hypergradient baselines
(:mod:`evolve.bench.hypergradient`), which are not elementwise rules, get proxy-suite figures.

Each :class:`fitness.tasks.TaskInstance` is rebuilt from its own arrays (read by name through
:meth:`fitness.tasks.TaskInstance.fields`), as the Numba loops of :mod:`fitness.kernels` run
it: the same start, data, minibatches, gradient noise, steps, learning-rate schedule
(:mod:`fitness.schedule`), divergence checks (NaN/inf, or the training loss above
``ASCEND_FACTOR`` times the start) and scored loss (the test loss of MLP-loop tasks).
Quadratic and Rosenbrock gradients are written out (so they are differentiable again); MLP
gradients come from autograd, with the graph kept when a meta-gradient is wanted. A rule's step
is :class:`RuleStep`: the primitive table's torch forms applied to constants held as tensors,
so they can require gradients. A rule's final loss here agrees with the interpreter's to a
relative 1e-9 (``tests/test_refine.py`` checks it on every task of the search and held-out
suites, under both schedules; 2e-12 at most measured: float64 both ways, but hundreds of steps
amplify the last-bit differences of torch's matmul and tanh against the kernels' loops); a
loop this module does not know is skipped by its callers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from fitness import kernels
from fitness import schedule as lr_schedule
from fitness.tasks import ASCEND_FACTOR, TaskInstance
from primitives.grammar import Node, parse, to_text
from primitives.table import BIAS_CORRECTION, CONST, TABLE, VEC, schedule_frac

LOOPS = ("quadratic", "rosenbrock", "mlp", "rnn")  # the compiled loops rebuilt here

# (g, w, t, lr factor) -> new weights
Update = Callable[[torch.Tensor, torch.Tensor, int, float], torch.Tensor]


def supported(instance: TaskInstance) -> bool:
    return instance.loop in LOOPS


class TorchTask:
    """One proxy task instance in torch (float64): loss and gradient on a flat vector."""

    def __init__(self, instance: TaskInstance, schedule: str = lr_schedule.DEFAULT):
        if not supported(instance):
            raise ValueError(f"family {instance.spec.family!r} has no torch form here")
        self.instance = instance
        self.name = instance.name
        self.loop = instance.loop
        self.steps = instance.steps
        # the learning-rate multiplier at each step, as the proxy loops apply it
        self.factors = lr_schedule.factors(lr_schedule.check(schedule), self.steps)
        f = {k: torch.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray) else v
             for k, v in instance.fields().items()}
        self.w0 = f["w0"].to(torch.float64).clone()
        if self.loop == "quadratic":
            self.curvature, self.center, self.noise = f["curvature"], f["center"], f["noise"]
        elif self.loop == "rosenbrock":
            self.shift = f["shift"]
        else:
            self.x, self.y, self.batches = f["x"], f["y"], f["batches"]
            self.x_test, self.y_test = f["x_test"], f["y_test"]
        if self.loop == "rnn":
            self.dims = [int(v) for v in f["dims"]]
        elif self.loop == "mlp":
            self.loss_kind, self.act = int(f["loss"]), int(f["act"])
            sizes, w_off, b_off = f["sizes"], f["w_off"], f["b_off"]
            self.layers = [(int(w_off[i]), int(b_off[i]), int(sizes[i]), int(sizes[i + 1]))
                           for i in range(len(sizes) - 1)]
        self.loss0 = float(self.scored(self.w0))
        self.limit = ASCEND_FACTOR * self.loss0

    # ------------------------------------------------------------------ losses
    def _mlp(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = x
        for i, (wo, bo, nin, nout) in enumerate(self.layers):
            h = h @ w[wo:wo + nin * nout].reshape(nin, nout) + w[bo:bo + nout]
            if i < len(self.layers) - 1:
                h = torch.relu(h) if self.act == kernels.ACT_RELU else torch.tanh(h)
        if self.loss_kind == kernels.LOSS_SOFTMAX_CE:
            return -(y * torch.log_softmax(h, dim=1)).sum(dim=1).mean()
        if self.loss_kind == kernels.LOSS_LOGISTIC:
            z = h[:, 0]
            return (torch.nn.functional.softplus(z) - y[:, 0] * z).mean()
        return 0.5 * ((h - y) ** 2).sum(dim=1).mean()

    def _rnn(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return rnn_loss(*rnn_params(w, self.dims), x, y, self.dims[2])

    def _rosenbrock(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = w + self.shift
        a = u[1:] - u[:-1] ** 2
        b = 1.0 - u[:-1]
        loss = (100.0 * a * a + b * b).sum()
        zero = u.new_zeros(1)
        grad = torch.cat([-400.0 * u[:-1] * a - 2.0 * b, zero]) + torch.cat([zero, 200.0 * a])
        return loss, grad

    def scored(self, w: torch.Tensor) -> torch.Tensor:
        """The loss a run is scored on (the test loss for MLP tasks)."""
        if self.loop == "quadratic":
            r = w - self.center
            return 0.5 * (self.curvature * r * r).sum()
        if self.loop == "rosenbrock":
            return self._rosenbrock(w)[0]
        if self.loop == "rnn":
            return self._rnn(w, self.x_test, self.y_test)
        return self._mlp(w, self.x_test, self.y_test)

    def loss_grad(self, w: torch.Tensor, t: int, create_graph: bool
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss and gradient at step ``t`` (0-based), noise included."""
        if self.loop == "quadratic":
            r = w - self.center
            grad = self.curvature * r
            if self.noise.shape[0]:
                grad = grad + self.noise[t]
            return 0.5 * (self.curvature * r * r).sum(), grad
        if self.loop == "rosenbrock":
            return self._rosenbrock(w)
        if not w.requires_grad:
            w = w.detach().requires_grad_(True)
        rows = self.batches[t]
        net = self._rnn if self.loop == "rnn" else self._mlp
        with torch.enable_grad():
            loss = net(w, self.x[rows], self.y[rows])
            (grad,) = torch.autograd.grad(loss, w, create_graph=create_graph)
        return loss, grad

    def checks_at(self, t: int) -> bool:
        return self.loop != "quadratic" or t % kernels.CHECK_EVERY == 0


def rnn_params(w: torch.Tensor, dims) -> list[torch.Tensor]:
    """Views of the recurrent task's flat parameter vector (:mod:`fitness.kernels`' layout):
    Wx (din x H), Wh (H x H), b (H), Wo (H x 1), bo (1); ``dims`` = (din, H, length)."""
    din, hidden = int(dims[0]), int(dims[1])
    shapes = [(din, hidden), (hidden, hidden), (hidden,), (hidden, 1), (1,)]
    parts = torch.split(w, [math.prod(shape) for shape in shapes])
    return [part.reshape(shape) for part, shape in zip(parts, shapes)]


def rnn_loss(wx: torch.Tensor, wh: torch.Tensor, b: torch.Tensor, wo: torch.Tensor,
             bo: torch.Tensor, x: torch.Tensor, y: torch.Tensor, length: int) -> torch.Tensor:
    """The recurrent task's loss (:mod:`fitness.kernels`' Elman network): x holds each row's
    ``length`` steps flat, the target is read out of the last state, 0.5 * mean squared error."""
    din = wx.shape[0]
    h = x.new_zeros(x.shape[0], wh.shape[0])
    for t in range(length):
        h = torch.tanh(x[:, t * din:(t + 1) * din] @ wx + h @ wh + b)
    return 0.5 * ((h @ wo + bo - y) ** 2).sum(dim=1).mean()


def _status(value: float, limit: float) -> bool:
    return math.isfinite(value) and value <= limit


@dataclass
class RunEnd:
    """How an unrolled run ended: the scored loss (a tensor, with its graph) or None."""

    loss: torch.Tensor | None
    steps: int


def run(task: TorchTask, lr: float, update: Update, create_graph: bool = False) -> RunEnd:
    """Train ``task`` for its steps at ``lr`` with ``update``; stops as the Numba loops do."""
    w = task.w0.clone()
    for t in range(task.steps):
        loss, grad = task.loss_grad(w, t, create_graph)
        if task.checks_at(t) and not _status(float(loss.detach()), task.limit):
            return RunEnd(None, t)
        w = update(grad, w, t, lr * float(task.factors[t]))
    final = task.scored(w)
    if not _status(float(final.detach()), task.limit):
        return RunEnd(None, task.steps)
    return RunEnd(final, task.steps)


# ---------------------------------------------------------------------------------------------
# A rule's step with its constants as tensors


@dataclass(frozen=True)
class Constant:
    """One numeric literal of a rule: its prefix index, type, value and the primitive it feeds."""

    index: int
    kind: str  # VEC, CONST or BETA
    value: float
    parent: str


def constants(tree: Node) -> list[Constant]:
    """Every literal of ``tree`` in prefix order."""
    out: list[Constant] = []
    stack: list[tuple[Node, str, str]] = [(tree, VEC, "")]
    index = 0
    while stack:
        node, kind, parent = stack.pop()
        if node.is_literal:
            out.append(Constant(index, kind, float(node.value), parent))
        index += 1
        if node.args:
            stack.extend(reversed([(child, typ, node.name) for child, typ
                                   in zip(node.args, TABLE[node.name].args)]))
    return out


class RuleStep:
    """A rule's update direction as a function of (g, w, t) and a vector of its constants.

    ``values[i]`` is the i-th literal in prefix order (a 0-dim tensor that may require grad).
    State buffers are keyed by the state node's text, so identical EMAs share one buffer and
    are updated once per step before the rule reads them, as in the interpreter.
    """

    def __init__(self, tree: Node, total_steps: int):
        tree = parse(to_text(tree))  # one object per occurrence: nodes are told apart by id
        self.tree = tree
        self.total_steps = total_steps
        self.buffers: dict[str, torch.Tensor] = {}
        # postorder program: (node, literal slot or -1, state key or "")
        self.order: list[tuple[Node, int, str]] = []
        slot = 0
        stack: list[tuple[Node, bool]] = [(tree, False)]
        literal_slots: dict[int, int] = {}
        for node in tree.walk():
            if node.is_literal:
                literal_slots[id(node)] = slot
                slot += 1
        while stack:
            node, expanded = stack.pop()
            if expanded or not node.args:
                kind = TABLE[node.name].kind if not node.is_literal else "lit"
                self.order.append((node, literal_slots.get(id(node), -1),
                                   to_text(node) if kind == "state" else ""))
                continue
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(node.args))
        self.n_constants = slot

    def reset(self) -> None:
        self.buffers = {}

    def __call__(self, g: torch.Tensor, w: torch.Tensor, t: int, values: list[torch.Tensor]
                 ) -> torch.Tensor:
        """The direction at 1-based step ``t`` (buffers updated in place of the old ones)."""
        out: dict[int, torch.Tensor] = {}
        updated: dict[str, torch.Tensor] = {}
        for node, slot, key in self.order:
            if node.is_literal:
                out[id(node)] = values[slot]
                continue
            prim = TABLE[node.name]
            if prim.kind == "operand":
                out[id(node)] = g if node.name == "g" else w
            elif prim.kind == "schedule":
                frac = schedule_frac(t, self.total_steps)
                out[id(node)] = g.new_tensor(prim.kernel.py_func(frac))
            elif prim.kind == "state":
                if key not in updated:
                    # the table's own formulas (the kernels' Python forms work on tensors)
                    x = out[id(node.args[0])]
                    beta = out[id(node.args[1])]
                    old = self.buffers.get(key, torch.zeros_like(g))
                    new = prim.update.kernel.py_func(old, x, beta)
                    self.buffers[key] = new
                    if prim.bias_corrected:
                        denom = BIAS_CORRECTION.kernel.py_func(beta, float(t))
                        new = new / denom if float(denom.detach()) != 0.0 else torch.zeros_like(new)
                    updated[key] = new
                out[id(node)] = updated[key]
            else:
                vecs = [out[id(c)] for c, typ in zip(node.args, prim.args) if typ == VEC]
                const = [out[id(c)] for c, typ in zip(node.args, prim.args) if typ == CONST]
                vecs += [None] * (3 - len(vecs))
                out[id(node)] = prim.torch_fn(vecs[0], vecs[1], vecs[2],
                                              const[0] if const else 0.0)
            value = out[id(node)]
            if value.requires_grad and not value.is_leaf:
                value.register_hook(_finite)
        result = out[id(self.tree)]
        return result.expand_as(g) if result.shape != g.shape else result


def _finite(grad: torch.Tensor) -> torch.Tensor:
    """Partial derivatives that are not finite at isolated points (sqrt at 0, 0 * inf inside a
    protected division) count as 0, the subgradient convention; without it one zero gradient
    entry (a dead ReLU unit, a constant input pixel) makes every meta-gradient NaN."""
    return torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)


def rule_update(step: RuleStep, values: list[torch.Tensor]) -> Update:
    """``w <- w - lr_t * d`` with ``d`` the rule's direction (no weight decay, as the tasks)."""
    step.reset()

    def update(g: torch.Tensor, w: torch.Tensor, t: int, lr_t: float) -> torch.Tensor:
        return w - lr_t * step(g, w, t + 1, values)

    return update


def optimizer_update(task: TorchTask, make: Callable[[list, float], torch.optim.Optimizer],
                     lr: float) -> tuple[Update, torch.Tensor]:
    """A torch optimizer (one param group of one flat tensor) as an :data:`Update`."""
    param = torch.nn.Parameter(task.w0.clone())
    opt = make([param], lr)

    def update(g: torch.Tensor, w: torch.Tensor, t: int, lr_t: float) -> torch.Tensor:
        for group in opt.param_groups:
            group["lr"] = lr_t
        param.grad = g.detach()
        opt.step()
        return param.detach()

    return update, param


__all__ = ["Constant", "LOOPS", "RuleStep", "RunEnd", "TorchTask", "constants",
           "optimizer_update", "rule_update", "run", "supported"]
