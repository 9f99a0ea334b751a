"""The CLI as a user types it: rules, primitives, export in every format, unwritable outputs."""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys

import torch
from click.testing import CliRunner

from evolve.cli import main
from primitives.rules import KNOWN_RULES
from primitives.table import TABLE


def invoke(*args):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_rules_json_lists_every_known_rule():
    rows = json.loads(invoke("rules", "--json"))
    assert {r["name"] for r in rows} == set(KNOWN_RULES)
    assert all(r["rule"] == KNOWN_RULES[r["name"]].rule for r in rows)
    for name in ("sgd", "momentum", "nesterov", "adam", "rmsprop", "signsgd", "signum", "lion",
                 "powersign", "addsign"):
        assert name in KNOWN_RULES


def test_primitives_lists_the_table():
    rows = json.loads(invoke("primitives", "--json"))
    assert [r["name"] for r in rows] == list(TABLE)


def test_export_text_is_canonical():
    assert invoke("export", "add( g ,g )", "--format", "text").strip() == "add(g, g)"


def test_export_json_latex_sympy():
    info = json.loads(invoke("export", "adam", "--format", "json"))
    assert info["rule"] == KNOWN_RULES["adam"].rule
    assert len(info["state_buffers"]) == 2
    assert "frac" in invoke("export", "adam", "--format", "latex")
    assert "ema_bc" in invoke("export", "adam", "--format", "sympy")


def test_exported_module_imports_only_torch_and_trains(tmp_path):
    out = tmp_path / "my_lion.py"
    invoke("export", "lion", "--format", "torch", "--name", "MyLion", "-o", str(out))
    tree = ast.parse(out.read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"torch", "math"}
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    assert classes == ["MyLion"]
    # a fresh interpreter, with only the file's folder on the path, can train with it
    script = (
        "import torch\n"
        "from my_lion import MyLion\n"
        "torch.manual_seed(0)\n"
        "w = torch.nn.Parameter(torch.randn(10))\n"
        "opt = MyLion([w], lr=0.05)\n"
        "start = (w ** 2).sum().item()\n"
        "for _ in range(50):\n"
        "    opt.zero_grad(); (w ** 2).sum().backward(); opt.step()\n"
        "print(start, (w ** 2).sum().item())\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, check=True)
    start, end = map(float, proc.stdout.split())
    assert end < 0.1 * start


def test_export_to_missing_folder_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["export", "adam", "-o", str(tmp_path / "no" / "x.py")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_exported_schedule_rule_needs_and_uses_total_steps():
    from primitives.export_torch import load_optimizer_class

    cls = load_optimizer_class("mul(cos_decay, g)", "Sched")
    w = torch.nn.Parameter(torch.ones(3))
    try:
        cls([w], lr=0.1)
    except ValueError as err:
        assert "total_steps" in str(err)
    else:
        raise AssertionError("a schedule rule without total_steps must be refused")
    opt = cls([w], lr=0.1, total_steps=2)
    for _ in range(3):
        w.grad = torch.ones(3)
        opt.step()
    # cos_decay is 1 at step 1, 0 at step 3 and after: w = 1 - 0.1 * (1 + 0.5 + 0)
    assert torch.allclose(w.detach(), torch.full((3,), 0.85, dtype=w.dtype))


def _one_line_exit_2(result) -> str:
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_unwritable_outputs_are_refused_before_any_work(tmp_path):
    from evolve.cli.bench import benchmark, validate

    line = _one_line_exit_2(CliRunner().invoke(main, ["export", "adam", "-o", "/proc/my_adam.py"]))
    assert "cannot write to /proc" in line
    line = _one_line_exit_2(CliRunner().invoke(benchmark, ["--rules", "adam", "--out",
                                                           "/proc/evolve-bench"]))
    assert "cannot write to /proc" in line and "--out" in line
    line = _one_line_exit_2(CliRunner().invoke(validate, ["--dataset", "digits", "--out",
                                                          "/proc/evolve-val"]))
    assert "cannot write to /proc" in line
    assert not any(tmp_path.iterdir())


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        invoke("export", "adam", "--format", "json", "-o", str(tmp_path / "adam.json"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "adam.json").stat().st_mode) == 0o644


def test_help_texts_show_what_the_user_types():
    from evolve.cli.bench import validate

    text = CliRunner().invoke(validate, ["--help"]).output
    assert "%%" not in text and "a tenth held out" in text


def test_run_help_shows_the_config_defaults():
    """`evolve run --help` reads its bracketed defaults from CampaignConfig (they were typed by
    hand once, and went stale when a default changed)."""
    import re

    from evolve.config import CampaignConfig

    text = " ".join(invoke("run", "--help").split())
    defaults = CampaignConfig()
    for option, field in (("Generations to run", "generations"), ("Population size", "population"),
                          ("(config, seed)", "seed"), ("tier (0: off)", "real_k"),
                          ("(0: never stop)", "stop_quantile"), ("(0: no screen)", "screen_quantile")):
        found = re.search(re.escape(option) + r" \[([^\]]+)\]", text)
        assert found, option
        assert found.group(1) == str(getattr(defaults, field)), option


def test_a_schedule_rule_says_it_needs_total_steps():
    result = CliRunner().invoke(main, ["export", "mul(cos_decay, g)", "--name", "Sched"])
    assert result.exit_code == 0
    assert "construct Sched with total_steps=N" in result.output
    result = CliRunner().invoke(main, ["export", "adam", "--name", "A"])
    assert "construct A with total_steps" not in result.output


def test_unknown_names_and_bad_run_references_are_one_line():
    line = _one_line_exit_2(CliRunner().invoke(main, ["export", "adamx"]))
    assert "neither a known name nor a rule" in line
    line = _one_line_exit_2(CliRunner().invoke(main, ["score", "/no/such/run:best"]))
    assert "does not exist" in line
