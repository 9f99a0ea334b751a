"""The Program: a rule tree compiled to register-machine opcodes that every backend runs.

Layout of the registers (rows of one float64 array of shape (n_registers, P) in the
interpreter; a list of tensors in the torch backend):

* register 0 is the gradient, register 1 the weights;
* then one register per state buffer (EMA or momentum), kept across steps;
* then one register per vec literal, filled once when a run starts;
* then one register per remaining subexpression, recomputed each step.

Identical subtrees share one register (common-subexpression elimination), so ``ema(g, 0.9)``
used twice is one buffer, updated once per step. ``code`` rows are
``(opcode, dst, a, b, c, k)``: registers ``a b c`` are inputs (unused ones repeat ``a``) and
``k`` indexes ``consts`` (-1 when unused).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from primitives.grammar import (
    MAX_DEPTH,
    MAX_NODES,
    Node,
    RuleSyntaxError,
    check_types,
    parse,
    postorder,
    to_text,
)
from primitives.table import (
    CONST,
    ELEMENTWISE_INDEX,
    OP_BIAS,
    OP_SCHEDULE,
    SCHEDULE_INDEX,
    TABLE,
    UPDATE_OPCODES,
    VEC,
)

REG_GRAD = 0
REG_WEIGHT = 1


@dataclass(frozen=True)
class StateBuffer:
    """A per-parameter buffer the rule keeps across steps."""

    register: int
    update: str  # the StateUpdate row's name: "ema" or "accumulate"
    beta: float
    source: str  # canonical text of the expression it averages

    @property
    def key(self) -> str:
        return f"{self.update}_{self.register}"


@dataclass(frozen=True)
class Program:
    """A compiled rule. Arrays are what the Numba interpreter takes; the rest is metadata."""

    text: str
    code: np.ndarray  # int64 (n_instructions, 6)
    consts: np.ndarray  # float64
    literal_registers: np.ndarray  # int64
    literal_values: np.ndarray  # float64
    n_registers: int
    output: int
    states: tuple[StateBuffer, ...]
    uses_schedule: bool
    hash: str
    tree: Node = field(repr=False, compare=False)

    @property
    def n_instructions(self) -> int:
        return int(self.code.shape[0])

    def arrays(self) -> tuple:
        """The tuple of arrays the interpreter entry points take, in order."""
        return (self.code, self.consts, self.literal_registers, self.literal_values,
                self.n_registers, self.output)


def needs_total_steps(rule: str | Node | Program) -> bool:
    """Whether a rule (known name, text, tree or Program) reads a schedule (``lin_decay``,
    ``cos_decay``), so its torch optimizer needs ``total_steps``. RuleSyntaxError on bad text."""
    if isinstance(rule, Program):
        return rule.uses_schedule
    if isinstance(rule, str):
        from primitives.rules import resolve

        rule = parse(resolve(rule))
    return any(TABLE.get(node.name) is not None and TABLE[node.name].kind == "schedule"
               for node in rule.walk())


def rule_hash(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


def compile_rule(rule: str | Node) -> Program:
    """Compile rule text or a tree into a :class:`Program` (RuleSyntaxError on bad input)."""
    tree = parse(rule) if isinstance(rule, str) else rule
    if not isinstance(tree, Node):
        raise RuleSyntaxError(f"expected rule text or a Node, got {type(rule).__name__}")
    check_types(tree)
    if tree.size() > MAX_NODES:
        raise RuleSyntaxError(f"rule has more than {MAX_NODES} nodes")
    if tree.height() > MAX_DEPTH:
        raise RuleSyntaxError(f"rule nests deeper than {MAX_DEPTH} levels")
    return _Compiler().compile(tree)


class _Compiler:
    def __init__(self) -> None:
        self.code: list[tuple[int, int, int, int, int, int]] = []
        self.consts: list[float] = []
        self.states: list[StateBuffer] = []
        self.literals: list[tuple[int, float]] = []
        self.uses_schedule = False

    def const_index(self, value: float) -> int:
        self.consts.append(float(value))
        return len(self.consts) - 1

    def compile(self, tree: Node) -> Program:
        text = to_text(tree)
        # First pass: collect state buffers and literals so they get low register numbers.
        order = list(postorder(tree))
        texts: dict[int, str] = {}
        for node in order:
            texts[id(node)] = _key(node, texts)

        state_keys: list[tuple[str, str, float, str]] = []
        literal_vals: list[float] = []
        seen_state: set[str] = set()
        seen_lit: set[float] = set()
        for node in order:
            prim = TABLE.get(node.name)
            if prim is not None and prim.kind == "state":
                beta = float(node.args[1].value)
                skey = f"{prim.update.name}|{beta!r}|{texts[id(node.args[0])]}"
                if skey not in seen_state:
                    seen_state.add(skey)
                    state_keys.append((skey, prim.update.name, beta, texts[id(node.args[0])]))
        # literals in vec positions
        for node, typ in _typed_postorder(tree):
            if node.is_literal and typ == VEC and node.value not in seen_lit:
                seen_lit.add(node.value)
                literal_vals.append(node.value)

        next_reg = 2
        state_reg: dict[str, int] = {}
        for skey, update, beta, source in state_keys:
            state_reg[skey] = next_reg
            self.states.append(StateBuffer(next_reg, update, beta, source))
            next_reg += 1
        lit_reg: dict[float, int] = {}
        for value in literal_vals:
            lit_reg[value] = next_reg
            self.literals.append((next_reg, value))
            next_reg += 1

        # Second pass: emit code in post-order with common-subexpression elimination.
        memo: dict[str, int] = {}
        updated_states: set[str] = set()
        for node, typ in _typed_postorder(tree):
            if typ != VEC:
                continue  # const / beta literals are immediates of their parent
            key = texts[id(node)]
            if key in memo:
                continue
            if node.is_literal:
                memo[key] = lit_reg[node.value]
                continue
            prim = TABLE[node.name]
            if prim.kind == "operand":
                memo[key] = REG_GRAD if node.name == "g" else REG_WEIGHT
            elif prim.kind == "schedule":
                self.uses_schedule = True
                dst = next_reg
                next_reg += 1
                self.code.append((OP_SCHEDULE + SCHEDULE_INDEX[node.name], dst, dst, dst, dst, -1))
                memo[key] = dst
            elif prim.kind == "state":
                beta = float(node.args[1].value)
                src = memo[texts[id(node.args[0])]]
                skey = f"{prim.update.name}|{beta!r}|{texts[id(node.args[0])]}"
                sreg = state_reg[skey]
                if skey not in updated_states:
                    updated_states.add(skey)
                    op = UPDATE_OPCODES[prim.update.name]
                    self.code.append((op, sreg, src, src, src, self.const_index(beta)))
                if not prim.bias_corrected:
                    memo[key] = sreg
                else:
                    dst = next_reg
                    next_reg += 1
                    self.code.append((OP_BIAS, dst, sreg, sreg, sreg, self.const_index(beta)))
                    memo[key] = dst
            else:  # elementwise
                vec_inputs = [memo[texts[id(a)]] for a, t in zip(node.args, prim.args) if t == VEC]
                k = -1
                for a, t in zip(node.args, prim.args):
                    if t == CONST:
                        k = self.const_index(a.value)
                while len(vec_inputs) < 3:
                    vec_inputs.append(vec_inputs[0])
                dst = next_reg
                next_reg += 1
                self.code.append((ELEMENTWISE_INDEX[node.name], dst, *vec_inputs[:3], k))
                memo[key] = dst

        output = memo[texts[id(tree)]]
        code = np.array(self.code, dtype=np.int64).reshape(-1, 6)
        return Program(
            text=text,
            code=code,
            consts=np.array(self.consts, dtype=np.float64),
            literal_registers=np.array([r for r, _ in self.literals], dtype=np.int64),
            literal_values=np.array([v for _, v in self.literals], dtype=np.float64),
            n_registers=next_reg,
            output=output,
            states=tuple(self.states),
            uses_schedule=self.uses_schedule,
            hash=rule_hash(text),
            tree=tree,
        )


def _key(node: Node, texts: dict[int, str]) -> str:
    if node.is_literal:
        return repr(node.value)
    if not node.args:
        return node.name
    return node.name + "(" + ",".join(texts[id(a)] for a in node.args) + ")"


def _typed_postorder(tree: Node):
    stack: list[tuple[Node, str, bool]] = [(tree, VEC, False)]
    while stack:
        node, typ, done = stack.pop()
        if done or not node.args:
            yield node, typ
            continue
        stack.append((node, typ, True))
        prim = TABLE[node.name]
        stack.extend((a, t, False) for a, t in reversed(list(zip(node.args, prim.args))))


__all__ = ["Program", "StateBuffer", "compile_rule", "needs_total_steps", "rule_hash", "REG_GRAD",
           "REG_WEIGHT"]
