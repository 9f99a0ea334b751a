"""Rule text: the grammar, its safe parser and the printer that round-trips.

Grammar (DEAP's prefix style; whitespace is ignored between tokens)::

    rule     := expr
    expr     := NAME                      an operand or schedule: g, w, lin_decay, cos_decay
              | NAME "(" expr ("," expr)* ")"   a primitive of the table with its arity
              | NUMBER                    a numeric literal
    NAME     := [A-Za-z_][A-Za-z0-9_]*    only names of the primitive table are admitted
    NUMBER   := [+-]? (digits ["." digits*] | "." digits) [("e"|"E") [+-] digits]

Arguments are typed by position (see :mod:`primitives.table`): a ``vec`` position takes any
expression (a number there is a constant tensor), a ``const`` position takes a number, a
``beta`` position a number in [0, 1]. Example: ``sign(interp(ema(g, 0.99), g, 0.0909))``.

The parser is a loop over a token list with an explicit stack: it never calls ``eval``, never
recurses (so 20,000 nested brackets are an error, not a RecursionError), and admits only ASCII.
Every failure is a :class:`RuleSyntaxError` naming the position and what was expected.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from primitives.table import BETA, TABLE, VEC

MAX_TEXT = 100_000
MAX_DEPTH = 64
MAX_NODES = 2_000


class RuleSyntaxError(ValueError):
    """A rule text that is not a rule. ``str(err)`` is one line: position and what was expected."""

    def __init__(self, message: str, position: int | None = None):
        self.position = position
        where = f"at position {position}: " if position is not None else ""
        super().__init__(f"invalid rule: {where}{message}")


@dataclass(frozen=True)
class Node:
    """One node of a rule tree: a primitive name with children, or a numeric literal.

    ``name`` is ``"lit"`` for a literal, whose ``value`` holds the number.
    """

    name: str
    args: tuple[Node, ...] = ()
    value: float | None = None

    @property
    def is_literal(self) -> bool:
        return self.name == "lit"

    def walk(self):
        """Nodes in prefix order (iterative, so deep trees are safe)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.args))

    def size(self) -> int:
        return sum(1 for _ in self.walk())

    def height(self) -> int:
        best = 0
        stack = [(self, 0)]
        while stack:
            node, depth = stack.pop()
            best = max(best, depth)
            stack.extend((a, depth + 1) for a in node.args)
        return best

    def __str__(self) -> str:
        return to_text(self)


def lit(value: float) -> Node:
    return Node("lit", (), float(value))


def format_number(value: float) -> str:
    """Shortest text that parses back to exactly this float."""
    text = repr(float(value))
    return text


_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<punct>[(),])
    """,
    re.VERBOSE | re.ASCII,
)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            shown = repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}"
            if not ch.isascii():
                shown = f"{ch!r} (U+{ord(ch):04X}, not ASCII)"
            raise RuleSyntaxError(f"unexpected character {shown}", pos)
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append((kind, m.group(), pos))
        pos = m.end()
    return tokens


def _describe(token: tuple[str, str, int] | None) -> str:
    if token is None:
        return "end of text"
    return repr(token[1])


def _number(token: tuple[str, str, int], arg_type: str) -> Node:
    kind, text, pos = token
    value = float(text)
    if not math.isfinite(value):
        raise RuleSyntaxError(f"number {text} is not finite", pos)
    if arg_type == BETA and not 0.0 <= value <= 1.0:
        raise RuleSyntaxError(f"a decay constant must lie in [0, 1], got {text}", pos)
    return lit(value)


def parse(text: str) -> Node:
    """Parse rule text into a :class:`Node` tree, or raise :class:`RuleSyntaxError`."""
    if not isinstance(text, str):
        raise RuleSyntaxError(f"a rule must be text, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise RuleSyntaxError(f"rule text longer than {MAX_TEXT} characters")
    tokens = _tokenize(text)
    if not tokens:
        raise RuleSyntaxError("empty rule; expected an expression such as sign(g)", 0)

    # Explicit-stack parser. Each frame: [name, arg types, children so far, position].
    frames: list[list] = []
    expect = VEC  # the type of the expression expected next
    nodes = 0
    i = 0
    result: Node | None = None

    def next_token(j: int) -> tuple[str, str, int] | None:
        return tokens[j] if j < len(tokens) else None

    while True:
        tok = next_token(i)
        if tok is None:
            raise RuleSyntaxError("unexpected end of text; expected an expression", len(text))
        kind, value, pos = tok
        nodes += 1
        if nodes > MAX_NODES:
            raise RuleSyntaxError(f"rule has more than {MAX_NODES} nodes", pos)
        node: Node | None = None
        if kind == "number":
            node = _number(tok, expect)
            i += 1
        elif kind == "name":
            prim = TABLE.get(value)
            if prim is None:
                raise RuleSyntaxError(
                    f"unknown name {value!r}; expected a primitive "
                    "(see `evolve primitives`) or a number",
                    pos,
                )
            if expect != VEC:
                raise RuleSyntaxError(f"expected a number here ({expect}), got {value!r}", pos)
            following = next_token(i + 1)
            if prim.arity == 0:
                if following is not None and following[1] == "(":
                    raise RuleSyntaxError(f"{value} takes no arguments", following[2])
                node = Node(value)
                i += 1
            else:
                if following is None or following[1] != "(":
                    raise RuleSyntaxError(
                        f"expected '(' after {value}, got {_describe(following)}",
                        following[2] if following else len(text),
                    )
                if len(frames) >= MAX_DEPTH:
                    raise RuleSyntaxError(f"rule nests deeper than {MAX_DEPTH} levels", pos)
                frames.append([value, prim.args, [], pos])
                expect = prim.args[0]
                i += 2
                continue
        else:
            raise RuleSyntaxError(f"expected an expression, got {value!r}", pos)

        # A complete node: attach it to its parent, closing every frame that is now full.
        while True:
            if not frames:
                result = node
                break
            frame = frames[-1]
            frame[2].append(node)
            name, arg_types, children, fpos = frame
            sep = next_token(i)
            if len(children) < len(arg_types):
                if sep is None or sep[1] != ",":
                    raise RuleSyntaxError(
                        f"{name} takes {len(arg_types)} arguments; expected ',' "
                        f"got {_describe(sep)}",
                        sep[2] if sep else len(text),
                    )
                expect = arg_types[len(children)]
                i += 1
                break
            if sep is None or sep[1] != ")":
                raise RuleSyntaxError(
                    f"{name} takes {len(arg_types)} arguments; expected ')' got {_describe(sep)}",
                    sep[2] if sep else len(text),
                )
            i += 1
            frames.pop()
            node = Node(name, tuple(children))
        if result is not None:
            break

    if i < len(tokens):
        raise RuleSyntaxError(f"unexpected {tokens[i][1]!r} after the end of the rule", tokens[i][2])
    return result


def to_text(node: Node) -> str:
    """Canonical rule text; ``parse(to_text(n)) == n``."""
    out: list[str] = []
    # iterative printer: (node, state) with state 0 = open, k = after k-th child
    stack: list[tuple[Node, int]] = [(node, 0)]
    while stack:
        cur, k = stack.pop()
        if cur.is_literal:
            out.append(format_number(cur.value))
            continue
        if not cur.args:
            out.append(cur.name)
            continue
        if k == 0:
            out.append(cur.name + "(")
        elif k < len(cur.args):
            out.append(", ")
        if k == len(cur.args):
            out.append(")")
            continue
        stack.append((cur, k + 1))
        stack.append((cur.args[k], 0))
    return "".join(out)


def check_types(node: Node, expected: str = VEC) -> None:
    """Raise RuleSyntaxError if a tree built in code breaks the table's typing."""
    stack = [(node, expected)]
    while stack:
        cur, want = stack.pop()
        if cur.is_literal:
            if cur.value is None or not math.isfinite(cur.value):
                raise RuleSyntaxError("literal is not a finite number")
            if want == BETA and not 0.0 <= cur.value <= 1.0:
                raise RuleSyntaxError(f"decay constant {cur.value} outside [0, 1]")
            continue
        if want != VEC:
            raise RuleSyntaxError(f"{cur.name} where a number ({want}) is expected")
        prim = TABLE.get(cur.name)
        if prim is None:
            raise RuleSyntaxError(f"unknown name {cur.name!r}")
        if len(cur.args) != prim.arity:
            raise RuleSyntaxError(f"{cur.name} takes {prim.arity} arguments, got {len(cur.args)}")
        stack.extend(zip(cur.args, prim.args))



def postorder(tree: Node):
    """Nodes after their children (iterative, so deep trees do not recurse)."""
    stack: list[tuple[Node, bool]] = [(tree, False)]
    while stack:
        node, done = stack.pop()
        if done or not node.args:
            yield node
            continue
        stack.append((node, True))
        stack.extend((a, False) for a in reversed(node.args))

__all__ = ["MAX_DEPTH", "MAX_NODES", "Node", "RuleSyntaxError", "check_types", "lit", "parse",
           "postorder", "to_text"]
