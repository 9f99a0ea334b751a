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


def test_the_set_report_ranks_the_top_rules_and_each_tasks_repeatability(tmp_path, capsys,
                                                                          monkeypatch):
    """Six rules from the cache alone: the stage table gains a top-rules column, and per task of
    the reference the repeat's agreement over all, good and top rules (a task whose seeds 3-5
    reverse seeds 0-2 among the top rules shows -1)."""
    from primitives.grammar import parse, to_text
    from primitives.rules import KNOWN_RULES
    from scripts.fidelity import main

    adam = to_text(parse(KNOWN_RULES["adam"].rule))
    rules = [adam, "sign(g)", "mul(sign(g), 0.5)", "ema(g, 0.9)", "ema(g, 0.5)", "g"]
    # log2 ratios on the two reference tasks: "steady" repeats itself, "noisy" is reversed
    # among the top rules (the last four: 2 ** 0.3 ... 2 ** 0.6 against Adam's 1)
    steady = [0.0, -1.0, 0.3, 0.4, 0.5, 0.6]
    noisy_ref = [0.0, -1.0, 0.3, 0.4, 0.5, 0.6]
    noisy_rep = [0.0, -1.0, 0.6, 0.5, 0.4, 0.3]
    lines = []
    for i, rule in enumerate(rules):
        for stage in ("search", "heldout", "real"):
            lines.append(_cache_row(rule, stage, 1.0 + i / 10, {"t": i / 10}))
        for stage, noisy in (("reference", noisy_ref), ("repeat", noisy_rep)):
            tasks = {"steady": steady[i], "noisy": noisy[i]}
            lines.append(_cache_row(rule, stage, 2 ** ((steady[i] + noisy[i]) / 2), tasks))
    (tmp_path / "cache.jsonl").write_text("\n".join(lines) + "\n")
    argv = ["--stages", "search,heldout,real,reference,repeat", "--cache",
            str(tmp_path / "cache.jsonl"), "--out", str(tmp_path / "out"), "--runs", "",
            "--before", str(tmp_path / "none.jsonl")]
    # the set: these six, nothing scored
    monkeypatch.setattr("scripts.fidelity.collect", lambda limit, runs: rules)
    assert main(argv) == 0
    summary = json.loads((tmp_path / "out" / "fidelity.json").read_text())["summary"]
    assert (summary["good_rules"], summary["top_rules"]) == (5, 4)
    tasks = summary["tasks"]
    assert tasks["steady"]["spearman_top"] == pytest.approx(1.0)
    assert tasks["noisy"]["spearman_top"] == pytest.approx(-1.0)
    assert tasks["noisy"]["spearman_all"] > 0  # over all rules the loser still ranks last
    assert tasks["steady"]["spread_top"] == pytest.approx(0.1118, abs=1e-4)
    # which tier-2 task predicts which reference task, over the five good rules: tier 2's one
    # task rises with both reference tasks; the repeat of "noisy" is uncorrelated there
    transfer = summary["transfer"]
    assert set(transfer) == {"t", "tier 2", "repeat"}
    assert transfer["t"]["steady"] == pytest.approx(1.0)
    assert transfer["tier 2"]["noisy"] == pytest.approx(1.0)
    assert transfer["repeat"]["steady"] == pytest.approx(1.0)
    assert transfer["repeat"]["noisy"] == pytest.approx(0.0, abs=1e-12)
    text = (tmp_path / "out" / "fidelity.md").read_text()
    assert "| noisy | " in text and "| -1.00 | " in text and "Spearman, top rules" in text
    assert "| tier 2 / reference | steady | noisy |" in text
    assert "| **repeat** | +1.00 | +0.00 |" in text
    assert "top " in capsys.readouterr().out


def test_a_stage_key_changes_with_what_its_numbers_depend_on(monkeypatch):
    """Another torch trains the torch stages differently: their cached results must not be
    reused under it; the Numba proxy stages do not use torch."""
    import torch

    from scripts.fidelity import stage_key

    before = {s: stage_key(s) for s in ("search", "real", "reference", "repeat", "confirm")}
    assert len(set(before.values())) == 5
    monkeypatch.setattr(torch, "__version__", "0.0.0-another")
    after = {s: stage_key(s) for s in before}
    assert after["search"] == before["search"]
    assert all(after[s] != before[s] for s in ("real", "reference", "repeat", "confirm"))


def test_the_final_stage_weighs_tier_2_and_its_confirmation_by_seeds(tmp_path, monkeypatch):
    """With the confirm stage (tier 2 on the campaign's confirmation seeds) the set report gains
    ``final``, the score a campaign's final selection ranks confirmed rules by: tier 2's two
    seeds and the confirmation's four weighed alike, so a rule ahead on the leaderboard's seeds
    alone loses to one ahead on the six together."""
    from evolve.config import CampaignConfig
    from evolve.tiers import confirmation_seeds
    from primitives.grammar import parse, to_text
    from primitives.rules import KNOWN_RULES
    from scripts.fidelity import _stage_seeds, main

    assert _stage_seeds("confirm") == tuple(confirmation_seeds(CampaignConfig()))
    adam = to_text(parse(KNOWN_RULES["adam"].rule))
    rules = [adam, "sign(g)", "ema(g, 0.9)", "ema(g, 0.5)"]
    real = [0.0, -0.5, 0.6, 0.3]  # log2 ratios on tier 2's one task
    confirm = [0.0, -0.5, 0.1, 0.4]  # "ema(g, 0.9)" leads on tier 2's seeds, not on these
    lines = []
    for i, rule in enumerate(rules):
        for stage in ("search", "heldout"):
            lines.append(_cache_row(rule, stage, 1.0, {"t": 0.0}))
        lines.append(_cache_row(rule, "real", 2 ** real[i], {"t": real[i]}))
        lines.append(_cache_row(rule, "confirm", 2 ** confirm[i], {"t": confirm[i]}))
        ref = [1.0, 0.7, 1.2, 1.3][i]
        lines.append(_cache_row(rule, "reference", ref, {"r": ref}))
    (tmp_path / "cache.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr("scripts.fidelity.collect", lambda limit, runs: rules)
    argv = ["--stages", "search,heldout,real,reference,confirm", "--cache",
            str(tmp_path / "cache.jsonl"), "--out", str(tmp_path / "out"), "--runs", "",
            "--before", str(tmp_path / "none.jsonl")]
    assert main(argv) == 0
    stages = json.loads((tmp_path / "out" / "fidelity.json").read_text())["summary"]["stages"]
    assert stages["real"]["pick"] == "ema(g, 0.9)"
    assert stages["confirm"]["pick"] == stages["final"]["pick"] == "ema(g, 0.5)"
    # (2 * 0.3 + 4 * 0.4) / 6 = 0.367 against (2 * 0.6 + 4 * 0.1) / 6 = 0.267
    assert stages["final"]["spearman_all"] == pytest.approx(1.0)
    assert "| final | 4 |" in (tmp_path / "out" / "fidelity.md").read_text()
    # the probe prints both tier-2 stages as the selection ranks them, and the final score
    (tmp_path / "rules.txt").write_text("ema(g, 0.5)\n")
    assert main(["--probe", str(tmp_path / "rules.txt"), "--stages", "real,confirm", "--cache",
                 str(tmp_path / "cache.jsonl"), "--out", str(tmp_path / "probe")]) == 0
    text = (tmp_path / "probe" / "probe.md").read_text()
    assert "| rule | real | real (selection) | confirm | confirm (selection) | final |" in text
    assert f"| {2 ** (2.2 / 6):.3f} |" in text
