"""The rule grammar: round trips, typed positions, and hostile text that must never run."""

from __future__ import annotations

import builtins

import pytest
from click.testing import CliRunner

from evolve.cli import main
from primitives.grammar import MAX_DEPTH, Node, RuleSyntaxError, lit, parse, to_text
from primitives.program import compile_rule
from primitives.rules import KNOWN_RULES


@pytest.mark.parametrize("name", sorted(KNOWN_RULES))
def test_known_rules_round_trip(name):
    tree = parse(KNOWN_RULES[name].rule)
    assert parse(to_text(tree)) == tree
    assert to_text(tree) == KNOWN_RULES[name].rule


def test_issue_example_parses_to_expected_tree():
    tree = parse("sign(interp(ema(g, 0.99), g, 0.0909))")
    assert tree == Node("sign", (Node("interp", (Node("ema", (Node("g"), lit(0.99))), Node("g"), lit(0.0909))),))


def test_literals_keep_every_bit():
    tree = parse("mul(g, 0.1)")
    value = 1.0 - 0.9 / 0.99
    again = parse(to_text(Node("mul", (Node("g"), lit(value)))))
    assert again.args[1].value == value
    assert tree.args[1].value == 0.1


HOSTILE = [
    "",
    "   ",
    "__import__('os').system('touch /tmp/pwned')",
    "exec('print(1)')",
    "eval",
    "g.__class__",
    "__builtins__",
    "lambda: 0",
    "open('/etc/passwd')",
    "sign(g",
    "sign(g))",
    "sign g",
    "(g)",
    "add(g)",
    "add(g, g, g)",
    "sign(g, g)",
    "g(1)",
    "add(,g)",
    "add(g,)",
    "ema(g, 1.5)",  # beta outside [0, 1]
    "ema(g, g)",  # beta position needs a number
    "clip(g, w)",
    "interp(g, g, sign(g))",
    "sign(nan)",
    "mul(g, inf)",
    "mul(g, 1e999)",
    "sígn(g)",  # accented letter
    "sіgn(g)",  # Cyrillic i look-alike
    "ѕign(g)",  # Cyrillic s look-alike
    "sign（g）",  # full-width brackets
    "sign(g)\x00",
    "sign(g); import os",
    "SIGN(g)",
    "1 + 1",
    "add(g, 0x10)",
    "sign(" * 20_000 + "g" + ")" * 20_000,
    "(" * 20_000,
    "add(g, " * 5000,
    ")" * 10,
    "a" * 200_000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_gives_one_clean_error_and_runs_nothing(text, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the parser must never execute anything")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "__import__", forbidden)
    with pytest.raises(RuleSyntaxError) as info:
        compile_rule(text)
    message = str(info.value)
    assert message.startswith("invalid rule")
    assert "\n" not in message


def test_error_names_position_and_expectation():
    with pytest.raises(RuleSyntaxError) as info:
        parse("add(g, sign(g)")
    assert info.value.position == 14
    assert "expected ')'" in str(info.value)
    with pytest.raises(RuleSyntaxError, match="unknown name 'foo'"):
        parse("add(g, foo)")


def test_depth_limit_is_a_clean_error_not_recursion():
    deep = "neg(" * (MAX_DEPTH + 1) + "g" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(RuleSyntaxError, match="deeper"):
        parse(deep)
    ok = "neg(" * (MAX_DEPTH - 1) + "g" + ")" * (MAX_DEPTH - 1)
    assert parse(ok).height() == MAX_DEPTH - 1


def test_non_text_is_refused():
    with pytest.raises(RuleSyntaxError):
        parse(b"sign(g)")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["__import__('os')", "sign(g", "sіgn(g)", "", "add(g)"])
def test_cli_export_refuses_hostile_rule_with_exit_2_and_no_file(text, tmp_path):
    out = tmp_path / "opt.py"
    result = CliRunner().invoke(main, ["export", text, "--name", "Opt", "-o", str(out)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_export_refuses_bad_class_name(tmp_path):
    out = tmp_path / "opt.py"
    result = CliRunner().invoke(main, ["export", "adam", "--name", "os.system", "-o", str(out)])
    assert result.exit_code == 2 and not out.exists()


def test_cli_export_says_a_keyword_class_name_is_a_keyword(tmp_path):
    out = tmp_path / "opt.py"
    result = CliRunner().invoke(main, ["export", "adam", "--name", "class", "-o", str(out)])
    assert result.exit_code == 2 and not out.exists()
    assert "'class' is a Python keyword" in result.output
