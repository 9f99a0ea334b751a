"""The code generator: a standalone torch module with one Optimizer class for a rule.

The source is generated from the compiled :class:`~primitives.program.Program`, one line per
opcode from the primitive table's ``torch_src`` templates. Only validated names (the class name
must be a Python identifier) and numbers (``repr`` of floats) from the user's input reach the
file; the rule text in the docstring is the canonical text the grammar printed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import keyword
import os
import re
import sys
from pathlib import Path

from primitives.files import atomic_write_text
from primitives.grammar import RuleSyntaxError
from primitives.program import REG_GRAD, REG_WEIGHT, Program, compile_rule
from primitives.rules import resolve
from primitives.table import (
    ELEMENTWISE,
    N_ELEMENTWISE,
    OP_ACC,
    OP_BIAS,
    OP_EMA,
    OP_SCHEDULE,
    SCHEDULES,
)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_class_name(name: str) -> str:
    if not isinstance(name, str) or not _IDENT.match(name) or keyword.iskeyword(name):
        raise ValueError(
            f"class name {name!r} is not a Python identifier; use letters, digits and _"
        )
    return name


def _reg_names(program: Program) -> dict[int, str]:
    names = {REG_GRAD: "g", REG_WEIGHT: "w"}
    for s in program.states:
        names[s.register] = f"s{s.register}"
    for r in program.literal_registers.tolist():
        names[r] = f"c{r}"
    for r in range(program.n_registers):
        names.setdefault(r, f"r{r}")
    return names


def _analyse(program: Program) -> tuple[dict[int, int], dict[int, bool], dict[int, bool], dict[int, bool]]:
    """Use counts, full-shape flags and sign facts (nonneg, never zero) per register."""
    uses: dict[int, int] = {program.output: 1}
    full = {REG_GRAD: True, REG_WEIGHT: True}
    nonneg: dict[int, bool] = {}
    positive: dict[int, bool] = {}
    for s in program.states:
        full[s.register] = True
    for r, v in zip(program.literal_registers.tolist(), program.literal_values.tolist()):
        full[r], nonneg[r], positive[r] = False, v >= 0.0, v > 0.0
    consts = program.consts.tolist()
    for op, dst, a, b, c, k in program.code.tolist():
        inputs = {a, b, c} if op < N_ELEMENTWISE else ({a} if op in (OP_EMA, OP_ACC, OP_BIAS) else set())
        for r in inputs:
            uses[r] = uses.get(r, 0) + 1
        if op < N_ELEMENTWISE:
            prim = ELEMENTWISE[op]
            vec = [a, b, c][: prim.vec_arity]
            kc = float(consts[k]) if k >= 0 else 0.0
            nn = tuple(nonneg.get(r, False) for r in vec) + (False, False)
            pos = tuple(positive.get(r, False) for r in vec) + (False, False)
            nonneg[dst], positive[dst] = prim.extra["sign_rule"](nn, pos, kc)
            full[dst] = any(full.get(r, False) for r in vec)
        elif op in (OP_EMA, OP_ACC):
            # a buffer of nonnegative inputs stays nonnegative (beta in [0, 1])
            nonneg[dst] = nonneg.get(dst, True) and nonneg.get(a, False)
        elif op == OP_BIAS:
            nonneg[dst], full[dst] = nonneg.get(a, False), True
        else:
            nonneg[dst], full[dst] = True, False  # schedules lie in [0, 1]
    return uses, full, nonneg, positive


def direction_source(program: Program, indent: str = "    ") -> list[str]:
    """Body lines of ``_direction(g, w, state, t, total_steps)`` for this program.

    Temporaries used once are overwritten in place, and protected division drops its mask
    where the denominator can never be zero: the results are bit-for-bit those of the plain
    form, with fewer passes over memory (the step time of the exported class).
    """
    names = _reg_names(program)
    uses, full, _, positive = _analyse(program)
    fixed = {REG_GRAD, REG_WEIGHT} | {s.register for s in program.states}
    fixed |= set(program.literal_registers.tolist())
    lines: list[str] = []
    for s in program.states:
        lines.append(f"{names[s.register]} = state[{s.key!r}]")
    literal_values = program.literal_values.tolist()
    for r, v in zip(program.literal_registers.tolist(), literal_values):
        lines.append(f"{names[r]} = g.new_tensor({float(v)!r})")
    if program.uses_schedule:
        lines.append("frac = min(max((t - 1) / total_steps, 0.0), 1.0) if total_steps else 0.0")
    consts = program.consts.tolist()
    for op, dst, a, b, c, k in program.code.tolist():
        kc = float(consts[k]) if k >= 0 else 0.0
        x, y, z, out = names[a], names[b], names[c], names[dst]
        if op < N_ELEMENTWISE:
            prim = ELEMENTWISE[op]
            template = prim.torch_src
            inplace = prim.extra["inplace_src"]
            if prim.extra["nonzero_src"] and positive.get(b, False):
                template, inplace = prim.extra["nonzero_src"]
            # overwrite x when it is a full-shape temporary and this is its only use
            own_x = a not in fixed and uses.get(a, 0) == 1 and full.get(a, False)
            if inplace and prim.vec_arity == 2 and a == b:
                own_x = False
            if inplace and own_x:
                template = inplace
            expr = template.format(
                x=x, y=y, z=z, c=repr(kc), absc=repr(abs(kc)), omc=repr(1.0 - kc)
            )
            lines.append(f"{out} = {expr}")
        elif op == OP_EMA:
            lines.append(f"{out}.mul_({kc!r}).add_({x}, alpha={1.0 - kc!r})")
        elif op == OP_ACC:
            lines.append(f"{out}.mul_({kc!r}).add_({x})")
        elif op == OP_BIAS:
            if kc == 1.0:
                lines.append(f"{out} = torch.zeros_like({x})")
            else:
                lines.append(f"{out} = {x} / (1.0 - {kc!r} ** t)")
        else:
            prim = SCHEDULES[op - OP_SCHEDULE]
            value = prim.extra["src"].format(frac="frac")
            lines.append(f"{out} = g.new_tensor({value})")
    lines.append(f"return {names[program.output]}")
    return [indent + line for line in lines]


_TEMPLATE = '''"""{name}: an optimizer update rule discovered with evolve-optim.

Generated code: it needs torch and nothing else. The update direction d is

    {rule}

and each step is  w <- w - lr * (d + weight_decay * w)  (decoupled weight decay).
"""

{imports}

RULE = {rule_repr}


class {name}(torch.optim.Optimizer):
    """torch.optim.Optimizer for the rule in this module's docstring.

    Args:
        params: iterable of parameters or dicts defining parameter groups.
        lr: learning rate (default {lr!r}).
        weight_decay: decoupled weight decay, as AdamW and Lion.
        maximize: maximise the objective instead of minimising it.
        foreach: accepted for API compatibility with torch.optim; the update runs per tensor.
        total_steps: schedule length for rules that use lin_decay or cos_decay.
    """

    def __init__(self, params, lr={lr!r}, weight_decay=0.0, *, maximize=False, foreach=None,
                 total_steps=None):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {{lr}}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {{weight_decay}}")
        if total_steps is not None and int(total_steps) <= 0:
            raise ValueError(f"Invalid total_steps: {{total_steps}}")
{schedule_check}        defaults = dict(lr=lr, weight_decay=weight_decay, maximize=maximize, foreach=foreach,
                        total_steps=total_steps)
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("total_steps", None)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = group["lr"]
            weight_decay = group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("{name} does not support sparse gradients")
                g = -p.grad if group["maximize"] else p.grad
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
{state_init}                state["step"] += 1
                d = _direction(g, p, state, state["step"], group["total_steps"])
                if weight_decay != 0.0:
                    d = d + weight_decay * p
                p.add_(d, alpha=-lr)
        return loss


def _direction(g, w, state, t, total_steps):
    """The update direction for one parameter; updates its state buffers in place."""
{body}
'''


def export_torch(rule: str | Program, name: str = "EvolvedOptimizer", lr: float = 1e-3) -> str:
    """Source of a standalone module defining ``class <name>(torch.optim.Optimizer)``."""
    check_class_name(name)
    program = rule if isinstance(rule, Program) else compile_rule(resolve(rule))
    lr = float(lr)
    if not lr >= 0.0 or lr == float("inf"):
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    state_init = "".join(
        f"                    state[{s.key!r}] = torch.zeros_like(p, "
        "memory_format=torch.preserve_format)\n"
        for s in program.states
    )
    schedule_check = ""
    imports = "import torch"
    if program.uses_schedule:
        imports = "import math\n\nimport torch"
        schedule_check = (
            "        if total_steps is None:\n"
            '            raise ValueError("this rule uses a schedule: pass total_steps=<steps>")\n'
        )
    return _TEMPLATE.format(
        name=name,
        rule=program.text,
        rule_repr=repr(program.text),
        imports=imports,
        lr=lr,
        state_init=state_init,
        schedule_check=schedule_check,
        body="\n".join(direction_source(program)),
    )


def _exported_dir() -> Path:
    root = os.environ.get("EVOLVE_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "evolve-optim"
    )
    path = Path(root) / "exported"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_module(path: str | os.PathLike, source: str) -> None:
    """Write generated source atomically (see :mod:`primitives.files`)."""
    atomic_write_text(path, source)


def load_optimizer_class(rule: str | Program, name: str = "EvolvedRule", lr: float = 1e-3):
    """The Optimizer class from the exported module for ``rule`` (the file a user gets)."""
    source = export_torch(rule, name, lr)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    module_name = f"evolve_exported_{name}_{digest}"
    if module_name in sys.modules:
        return getattr(sys.modules[module_name], name)
    path = _exported_dir() / f"{module_name}.py"
    if not path.exists() or path.read_text(encoding="utf-8") != source:
        write_module(path, source)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - importlib contract
        raise RuleSyntaxError(f"could not load the exported module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return getattr(module, name)


__all__ = ["check_class_name", "direction_source", "export_torch", "load_optimizer_class",
           "write_module"]
