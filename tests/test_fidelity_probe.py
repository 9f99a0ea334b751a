"""scripts/fidelity.py --probe: a handful of rules scored on chosen stages, outside the set the
correlations are measured on."""

from __future__ import annotations

import json

import pytest


def _cache_row(rule: str, stage: str, score: float, tasks: dict[str, float]) -> str:
    from scripts.fidelity import stage_key

    return json.dumps({"rule": rule, "stage": stage, "key": stage_key(stage), "cpu": "test",
                       "result": {"score": score, "tasks": tasks}})


def test_probe_reads_cached_stage_results_and_reports_each_rule(tmp_path, capsys):
    from primitives.grammar import parse, to_text
    from primitives.rules import KNOWN_RULES
    from scripts.fidelity import main

    adam = to_text(parse(KNOWN_RULES["adam"].rule))
    (tmp_path / "rules.txt").write_text("# two rules, one written twice\nadam\n\n"
                                        f"{adam}  # the same rule as text\nsign(g)\n")
    # results already in the cache under the stage's current key: nothing is trained again
    (tmp_path / "cache.jsonl").write_text(
        _cache_row(adam, "search", 1.0, {"quad": 0.0, "mlp": 0.0}) + "\n"
        + _cache_row("sign(g)", "search", 0.8, {"quad": -0.5, "mlp": 0.25}) + "\n"
        + _cache_row("sign(g)", "heldout", 9.9, {"x": 9.9}).replace('"key": "', '"key": "x')
        + "\nnot json\n")
    argv = ["--probe", str(tmp_path / "rules.txt"), "--stages", "search",
            "--cache", str(tmp_path / "cache.jsonl"), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    text = (tmp_path / "out" / "probe.md").read_text()
    assert capsys.readouterr().out.strip() == text.strip()
    assert f"| `{adam}` | 1.000 |" in text and "| `sign(g)` | 0.800 |" in text
    assert "| rule | quad | mlp |" in text and "| `sign(g)` | -0.50 | +0.25 |" in text
    rows = json.loads((tmp_path / "out" / "probe.json").read_text())["rules"]
    assert [r["rule"] for r in rows] == [adam, "sign(g)"]


@pytest.mark.parametrize("content, says", [
    ("adam\nmul(g\n", "rules.txt:2: "),
    ("adamm\n", "rules.txt:1: 'adamm' is neither a known name nor a rule"),
    ("no-such-run:best\n", "rules.txt:1: "),
    ("# nothing\n\n", "holds no rules"),
    (None, "cannot read the probe file"),
])
def test_probe_file_errors_exit_2_with_one_line(tmp_path, capsys, content, says):
    from scripts.fidelity import main

    path = tmp_path / "rules.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["--probe", str(path), "--stages", "search", "--cache", str(tmp_path / "c.jsonl")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not (tmp_path / "c.jsonl").exists()
