"""The code generator: a standalone torch module with one Optimizer class for a rule.

The class's step is the rule's :class:`~primitives.torch_plan.Plan` (the same plan
``EvolvedOptimizer`` executes) printed as source: one line per ``torch._foreach_*`` call, run
over all parameters of a group with ``foreach=True`` and over one parameter at a time with
``foreach=False``. Only validated names (the class name must be a Python identifier that is not
a keyword) and numbers (``repr`` of floats) from the user's input reach the file; the rule text
in the docstring is the canonical text the grammar printed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import keyword
import os
import re
import sys
from pathlib import Path
from typing import Any

from primitives import table
from primitives.files import atomic_write_text
from primitives.grammar import RuleSyntaxError
from primitives.lowering import lower
from primitives.program import Program, compile_rule
from primitives.rules import resolve
from primitives.table import SCHEDULE_FRAC_SRC
from primitives.torch_plan import Call, Plan

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_class_name(name: str) -> str:
    """``name`` if it can name the exported class, else ValueError saying why not."""
    if isinstance(name, str) and keyword.iskeyword(name):
        raise ValueError(f"class name {name!r} is a Python keyword; choose another name")
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(
            f"class name {name!r} is not a Python identifier; use letters, digits and _"
        )
    return name


def _arg_source(arg: Any) -> str:
    if isinstance(arg, str):
        return arg
    if isinstance(arg, float):
        return repr(arg)
    return arg.source()


def _call_source(call: Call) -> list[str]:
    """The line(s) of one plan call."""
    if call.kind == "foreach":
        args = [_arg_source(a) for a in call.args]
        args += [f"{k}={_arg_source(v)}" for k, v in call.kwargs]
        line = f"torch._foreach_{call.method}({', '.join(args)})"
    elif call.kind == "map":
        row = table.TABLE[call.method]
        lists = [a for a in call.args if isinstance(a, str)]
        loop = ["_x", "_y", "_z"][: len(lists)]
        names, hoisted, it = [], [], iter(loop)
        for i, arg in enumerate(call.args):
            if isinstance(arg, str):
                names.append(next(it))
            else:  # a number: computed once, a 0-dim tensor like the list's
                hoisted.append(f"_c{i} = {arg.source()}")
                names.append(f"{loop[0]}.new_tensor(_c{i})")
        names += [names[0]] * (3 - len(names))
        expr = row.torch_src.format(x=names[0], y=names[1], z=names[2], c=repr(call.const),
                                    absc=repr(abs(call.const)))
        source = lists[0] if len(lists) == 1 else f"zip({', '.join(lists)})"
        line = f"[{expr} for {', '.join(loop)} in {source}]"
        if call.out is not None:
            line = f"{call.out} = {line}"
        return hoisted + [line]
    else:
        line = f"[torch.full_like(_x, {_arg_source(call.args[1])}) for _x in {call.args[0]}]"
    if call.out is not None:
        line = f"{call.out} = {line}"
    if call.only_with_decay:
        return ["if weight_decay != 0.0:", "    " + line]
    return [line]


def plan_source(plan: Plan, name: str, doc: str) -> str:
    """Source of ``def name(params, grads, states, t, total_steps, lr, weight_decay)`` running
    ``plan`` (it returns the directions for a direction plan, None for a step plan)."""
    lines = [f"def {name}(params, grads, states, t, total_steps, lr, weight_decay):",
             f'    """{doc}"""']
    body = [f"{var} = [state[{key!r}] for state in states]" for var, key in plan.states]
    if plan.uses_schedule:
        body.append(f"frac = {SCHEDULE_FRAC_SRC}")
    for call in plan.calls:
        body.extend(_call_source(call))
    if not plan.step:
        if isinstance(plan.output, str):
            body.append(f"return {plan.output}")
        else:
            value = plan.output.source()
            body.append(f"return [torch.tensor({value}, dtype=g.dtype, device=g.device) "
                        "for g in grads]")
    return "\n".join(lines + ["    " + line for line in body]) + "\n"


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
        foreach: run the rule with torch._foreach_* ops over all parameters of a group at once
            (default: on CUDA, as torch.optim.Adam); False runs it one parameter at a time,
            which needs less temporary memory.
        total_steps: schedule length T, required for rules that use lin_decay or cos_decay.
            After T steps those schedules stay at 0 (their terms stop moving the weights) and
            a warning says so once.

    lr schedulers that cycle momentum (OneCycleLR, CyclicLR) need cycle_momentum=False: the
    rule's decay constants are part of the rule, there is no momentum or betas to cycle.
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
            # parameters that joined later (their grad was None before) have their own step
            # count, so the group runs once per count
            by_step = {{}}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("{name} does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
{state_init}                state["step"] += 1
                by_step.setdefault(state["step"], []).append(p)
            foreach = group["foreach"]
            for t, params in by_step.items():
{schedule_warning}                grads = [p.grad for p in params]
                if group["maximize"]:
                    grads = torch._foreach_neg(grads)
                states = [self.state[p] for p in params]
                args = (t, group["total_steps"], group["lr"], group["weight_decay"])
                if foreach if foreach is not None else params[0].is_cuda:
                    _step(params, grads, states, *args)
                else:
                    for p, g, s in zip(params, grads, states):
                        _step([p], [g], [s], *args)
        return loss
{warn_method}

{step_function}'''

_SCHEDULE_CHECK = '''        if total_steps is None:
            raise ValueError("this rule uses a schedule (lin_decay/cos_decay): pass "
                             "total_steps=<the number of steps you will train>")
'''
_SCHEDULE_WARNING = '''                if group["total_steps"] and t > group["total_steps"]:
                    self._warn_schedule_end(t, group["total_steps"])
'''
_WARN_METHOD = '''
    def _warn_schedule_end(self, t, total_steps):
        if not getattr(self, "_schedule_end_warned", False):
            self._schedule_end_warned = True
            # stacklevel: past this method, step() and torch.optim's wrappers, to the caller
            warnings.warn({message}, stacklevel=5)
'''


def export_torch(rule: str | Program, name: str = "EvolvedOptimizer", lr: float = 1e-3) -> str:
    """Source of a standalone module defining ``class <name>(torch.optim.Optimizer)``."""
    from primitives.torch_backend import schedule_end_message

    check_class_name(name)
    program = rule if isinstance(rule, Program) else compile_rule(resolve(rule))
    lr = float(lr)
    if not lr >= 0.0 or lr == float("inf"):
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    plan = lower(program, step=True)
    state_init = "".join(
        f"                    state[{key!r}] = torch.zeros_like(p, "
        "memory_format=torch.preserve_format)\n"
        for _, key in plan.states
    )
    imports, schedule_check, schedule_warning, warn_method = "import torch", "", "", ""
    if program.uses_schedule:
        imports = "import math\nimport warnings\n\nimport torch"
        schedule_check, schedule_warning = _SCHEDULE_CHECK, _SCHEDULE_WARNING
        message = "f" + repr(schedule_end_message(name, 12345, 67890)).replace(
            "12345", "{t}").replace("67890", "{total_steps}")
        warn_method = _WARN_METHOD.format(message=message)
    doc = "One step of the rule for parameters that share the step count t (updates them in place)."
    return _TEMPLATE.format(
        name=name,
        rule=program.text,
        rule_repr=repr(program.text),
        imports=imports,
        lr=lr,
        state_init=state_init,
        schedule_check=schedule_check,
        schedule_warning=schedule_warning,
        warn_method=warn_method,
        step_function=plan_source(plan, "_step", doc),
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
    return getattr(load_module(export_torch(rule, name, lr), name), name)


def load_module(source: str, name: str):
    """Import generated ``source`` (written under the cache folder, named by its digest)."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    module_name = f"evolve_exported_{name}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    path = _exported_dir() / f"{module_name}.py"
    if not path.exists() or path.read_text(encoding="utf-8") != source:
        write_module(path, source)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - importlib contract
        raise RuleSyntaxError(f"could not load the exported module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


__all__ = ["check_class_name", "export_torch", "load_module", "load_optimizer_class",
           "plan_source", "write_module"]
