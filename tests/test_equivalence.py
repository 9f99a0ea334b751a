"""The three backends reproduce torch.optim (and Lion's Algorithm 2) step for step.

For each known rule, the Numba interpreter, ``EvolvedOptimizer`` and the exported standalone
class train the same small float64 model for 100 steps; the weights must match torch.optim's
own optimizer to 1e-6 relative (atol 1e-12): plainly, across a state_dict save/load in the
middle, and under an lr scheduler. Not bit equality: torch.optim.Adam computes its second moment
as b*v + (1-b)*g*g where the rule's EMA is a lerp, and other libraries round their own way.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fitness.interpreter import StepRunner
from primitives.export_torch import load_optimizer_class
from primitives.program import compile_rule
from primitives.rules import KNOWN_RULES
from primitives.torch_backend import EvolvedOptimizer

STEPS = 100
RTOL = 1e-6


class LionReference(torch.optim.Optimizer):
    """Algorithm 2 of Chen et al. 2023, written out literally (the test's ground truth)."""

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state["m"] = torch.zeros_like(p)
                m = state["m"]
                c = b1 * m + (1 - b1) * p.grad
                p.add_(torch.sign(c) + group["weight_decay"] * p, alpha=-group["lr"])
                m.mul_(b2).add_(p.grad, alpha=1 - b2)


class Evo2025Reference(torch.optim.Optimizer):
    """The evolved optimizer of Marfinetz 2025 (arXiv 2512.11853) from its formula:
    d = 0.7345 sign(g) + 3.6352 m / (sqrt(v) + 5.4e-9), m and v plain EMAs of g and g^2."""

    def __init__(self, params, lr=1e-3):
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state["m"], state["v"] = torch.zeros_like(p), torch.zeros_like(p)
                m, v, g = state["m"], state["v"], p.grad
                m.mul_(0.8553).add_(g, alpha=1 - 0.8553)
                v.mul_(0.9358).add_(g * g, alpha=1 - 0.9358)
                d = 0.7345 * torch.sign(g) + 3.6352 * m / (v.sqrt() + 5.4e-9)
                p.add_(d, alpha=-group["lr"])


# name -> (rule name, reference constructor, lr, weight decay of the rule run)
CASES = {
    "sgd": ("sgd", lambda ps, lr: torch.optim.SGD(ps, lr=lr), 0.05, 0.0),
    "momentum": ("momentum", lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9), 0.02, 0.0),
    "nesterov": (
        "nesterov",
        lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9, nesterov=True),
        0.02,
        0.0,
    ),
    "adam": ("adam", lambda ps, lr: torch.optim.Adam(ps, lr=lr), 0.01, 0.0),
    "adamw": ("adam", lambda ps, lr: torch.optim.AdamW(ps, lr=lr, weight_decay=0.1), 0.01, 0.1),
    "rmsprop": ("rmsprop", lambda ps, lr: torch.optim.RMSprop(ps, lr=lr), 0.003, 0.0),
    "adagrad": ("adagrad", lambda ps, lr: torch.optim.Adagrad(ps, lr=lr), 0.1, 0.0),
    "lion": ("lion", lambda ps, lr: LionReference(ps, lr=lr), 0.003, 0.0),
    "lion_wd": ("lion", lambda ps, lr: LionReference(ps, lr=lr, weight_decay=0.5), 0.003, 0.5),
    "evo2025": ("evo2025", lambda ps, lr: Evo2025Reference(ps, lr=lr), 0.003, 0.0),
}


def make_model() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5)
    x = torch.randn(32, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(32, 3, generator=gen, dtype=torch.float64)
    return model, x, y


def loss_of(model, x, y):
    return ((model(x) - y) ** 2).mean()


def train_torch(make_opt, lr, *, reload_at=None, scheduler=False):
    """Train with a torch optimizer; returns final flat weights and the lr used at each step."""
    model, x, y = make_model()
    opt = make_opt(list(model.parameters()), lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.5) if scheduler else None
    lrs = []
    for step in range(STEPS):
        if reload_at is not None and step == reload_at:
            saved = copy.deepcopy(opt.state_dict())
            opt = make_opt(list(model.parameters()), lr)
            opt.load_state_dict(saved)
            if sched is not None:
                sched_state = sched.state_dict()
                sched = torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.5)
                sched.load_state_dict(sched_state)
        opt.zero_grad()
        loss_of(model, x, y).backward()
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()]).numpy(), lrs


def train_interpreter(rule, lrs, weight_decay):
    model, x, y = make_model()
    params = list(model.parameters())
    flat = torch.cat([p.detach().flatten() for p in params]).numpy()
    runner = StepRunner(compile_rule(rule), flat)
    for lr in lrs:
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(torch.from_numpy(runner.weights.copy()), params)
        model.zero_grad()
        loss_of(model, x, y).backward()
        grad = torch.cat([p.grad.flatten() for p in params]).numpy()
        runner.step(grad, lr, weight_decay)
    return runner.weights.copy()


def assert_close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mode", ["plain", "reload", "scheduler"])
def test_backends_reproduce_torch_optim(case, mode):
    rule_name, make_ref, lr, wd = CASES[case]
    rule = KNOWN_RULES[rule_name].rule
    kwargs = dict(reload_at=50 if mode == "reload" else None, scheduler=mode == "scheduler")
    expected, lrs = train_torch(make_ref, lr, **kwargs)
    # the reference really trained (a test that cannot fail is a defect)
    start, _, _ = make_model()
    w0 = torch.cat([p.detach().flatten() for p in start.parameters()]).numpy()
    assert np.abs(expected - w0).max() > 1e-3

    evolved, _ = train_torch(
        lambda ps, lr_: EvolvedOptimizer(ps, rule, lr=lr_, weight_decay=wd), lr, **kwargs
    )
    assert_close(evolved, expected)

    exported_cls = load_optimizer_class(rule, "Exported")
    exported, _ = train_torch(lambda ps, lr_: exported_cls(ps, lr=lr_, weight_decay=wd), lr, **kwargs)
    assert_close(exported, expected)

    interpreted = train_interpreter(rule, lrs, wd)
    assert_close(interpreted, expected)


@pytest.mark.parametrize("case", ["adam", "adamw", "lion_wd", "nesterov", "adagrad"])
def test_foreach_paths_reproduce_torch_optim(case):
    """Both classes with foreach=True (all parameters of a group in one _foreach call per op)
    and foreach=False (one parameter at a time) follow torch.optim."""
    rule_name, make_ref, lr, wd = CASES[case]
    rule = KNOWN_RULES[rule_name].rule
    expected, _ = train_torch(make_ref, lr)
    exported_cls = load_optimizer_class(rule, "Exported")
    for foreach in (True, False):
        evolved, _ = train_torch(
            lambda ps, lr_, f=foreach: EvolvedOptimizer(ps, rule, lr=lr_, weight_decay=wd, foreach=f),
            lr)
        assert_close(evolved, expected)
        exported, _ = train_torch(
            lambda ps, lr_, f=foreach: exported_cls(ps, lr=lr_, weight_decay=wd, foreach=f), lr)
        assert_close(exported, expected)


def test_onecycle_works_with_cycle_momentum_off_as_documented():
    """OneCycleLR cycles momentum/betas by default, which a rule does not have (its decay
    constants are part of it); with cycle_momentum=False, as the docstrings say, it runs."""
    exported_cls = load_optimizer_class("adam", "Exported")
    assert "cycle_momentum=False" in exported_cls.__doc__
    assert "cycle_momentum=False" in EvolvedOptimizer.__doc__
    for make in (lambda ps: exported_cls(ps, lr=0.01), lambda ps: EvolvedOptimizer(ps, "adam", lr=0.01)):
        model, x, y = make_model()
        opt = make(list(model.parameters()))
        with pytest.raises(ValueError, match="momentum"):
            torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=10)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=10,
                                                    cycle_momentum=False)
        lrs = []
        for _ in range(10):
            opt.zero_grad()
            loss_of(model, x, y).backward()
            opt.step()
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        assert max(lrs) > 10 * min(lrs)  # the schedule really moved the learning rate


def test_state_dict_carries_rule_and_hyperparameters():
    model, x, y = make_model()
    opt = EvolvedOptimizer(model.parameters(), "lion", lr=0.01, weight_decay=0.1)
    loss_of(model, x, y).backward()
    opt.step()
    sd = opt.state_dict()
    group = sd["param_groups"][0]
    assert group["rule"] == KNOWN_RULES["lion"].rule
    assert group["lr"] == 0.01 and group["weight_decay"] == 0.1
    assert all(s["step"] == 1 for s in sd["state"].values())


def test_params_without_grad_are_skipped_and_closure_loss_returned():
    model, x, y = make_model()
    frozen = list(model.parameters())[0]
    before = frozen.detach().clone()
    opt = EvolvedOptimizer(model.parameters(), "adam", lr=0.1)
    frozen.requires_grad_(False)

    def closure():
        opt.zero_grad()
        loss = loss_of(model, x, y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.is_tensor(loss) and loss.item() > 0
    assert torch.equal(frozen, before)
    assert frozen not in opt.state


def test_maximize_climbs():
    model, x, y = make_model()
    opt = EvolvedOptimizer(model.parameters(), "adam", lr=0.01, maximize=True)
    first = loss_of(model, x, y).item()
    for _ in range(20):
        opt.zero_grad()
        loss_of(model, x, y).backward()
        opt.step()
    assert loss_of(model, x, y).item() > first


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lr=-1.0), "learning rate"),
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(total_steps=0), "total_steps"),
    ],
)
def test_constructor_validates(kwargs, message):
    model, _, _ = make_model()
    with pytest.raises(ValueError, match=message):
        EvolvedOptimizer(model.parameters(), "adam", **kwargs)


def test_schedule_rule_needs_total_steps():
    model, _, _ = make_model()
    with pytest.raises(ValueError, match="total_steps=<the number of steps"):
        EvolvedOptimizer(model.parameters(), "mul(lin_decay, g)")
    EvolvedOptimizer(model.parameters(), "mul(lin_decay, g)", total_steps=10)
    with pytest.raises(ValueError, match="total_steps=<the number of steps"):
        load_optimizer_class("mul(lin_decay, g)", "Exported")(model.parameters())


@pytest.mark.parametrize("name, message", [("class", "is a Python keyword"),
                                           ("None", "is a Python keyword"),
                                           ("os.system", "not a Python identifier")])
def test_class_name_errors_say_what_is_wrong(name, message):
    from primitives.export_torch import check_class_name

    with pytest.raises(ValueError, match=message):
        check_class_name(name)
