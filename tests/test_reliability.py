"""Reliability: fuzzed rule text never runs code, random rules never crash, lost workers and a
full disk lose nothing, and lost workers never become scores. (scripts/reliability.py runs the
same measurements at full size.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from scripts import reliability_checks as rel
from scripts import reliability_runs as runs


def test_parser_fuzz_only_clean_errors_and_no_code_executed():
    figures = rel.fuzz_parser(3000, seed=1)
    assert figures["parser_crashes"] == 0
    assert figures["parser_code_executed"] == 0
    assert figures["parser_accepted"] > 0  # the fuzzer also produced valid rules


def test_hypothesis_fuzz_of_the_parser():
    figures = rel.fuzz_parser_hypothesis(500)
    assert figures["hypothesis_inputs"] >= 400
    assert figures["hypothesis_crashes"] == 0 and figures["hypothesis_code_executed"] == 0


def test_code_execution_trap_really_traps():
    with rel.count_code_execution() as counts, pytest.raises(AssertionError):
        eval("1")  # noqa: S307 - the trap must catch this
    assert counts["executed"] == 1


def test_random_rules_deep_and_huge_never_crash():
    figures = rel.random_rules_through_backends(1500, seed=3)
    assert figures["random_rule_crashes"] == 0
    assert figures["random_rules_torch"] >= 100


def test_disk_full_while_checkpointing_keeps_previous_checkpoint(tmp_path):
    assert runs.disk_full_during_checkpoint(tmp_path) == {"disk_full_failures": 0}


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_killed_process_worker_is_rerun_with_identical_results(tmp_path):
    figures = runs.process_worker_loss(tmp_path)
    assert figures["process_workers_killed"] == 1
    assert figures["process_worker_losses_seen"] == 1
    assert figures["process_worker_retried"] > 0
    assert figures["process_worker_result_mismatches"] == 0
    assert figures["process_worker_lost"] == 0


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_killing_the_pools_workers_again_and_again_never_yields_a_score(tmp_path):
    """The issue's reproduction, shorter: kill -9 the pool's children every 0.2 s for 3 s."""
    figures = runs.worker_kill_storm(tmp_path, seconds=3.0)
    assert figures["storm_kills"] > 0
    failures = {k: v for k, v in figures.items() if k.endswith(("_failures", "_mismatches"))}
    assert not any(failures.values()), figures


def test_reliability_script_documents_its_flags():
    proc = subprocess.run([sys.executable, "scripts/reliability.py", "--help"],
                          capture_output=True, text=True, check=True)
    assert "--quick" in proc.stdout and "--json" in proc.stdout


def test_corrupt_checkpoint_config_and_dataset_files_exit_2_and_change_nothing(tmp_path):
    figures = rel.corrupt_files(tmp_path)
    assert figures["corrupt_file_cases"] == 15
    assert figures["corrupt_file_failures"] == 0
