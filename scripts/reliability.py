"""Reliability and security figures: kill and resume, worker loss, hostile input, corrupt files.

Prints one line per measurement, or one JSON object with --json. Every count whose name ends in
_failures, _crashes, _lost, _mismatches or _executed should be 0.

    python scripts/reliability.py [--quick] [--json]

Full run: 20 kills, 100,000 random rules, 100,000 parser inputs (plus hypothesis), a killed
process-pool worker and Ray worker, the pool's workers killed every 0.2 s for 6 s, a simulated
full disk, corrupt files. --quick: 3 kills, a 3 s storm, 10,000 rules and inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts import reliability_checks as rel  # noqa: E402
from scripts import reliability_runs as runs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of a few minutes")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    n = 10_000 if args.quick else 100_000
    kills = 3 if args.quick else 20
    figures: dict = {}
    timings: dict = {}
    # Ray's raylet and the workers write to file descriptor 1: point it at stderr while
    # measuring, so that stdout carries the figures alone
    sys.stdout.flush()
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    with tempfile.TemporaryDirectory(prefix="evolve-reliability-") as tmp:
        steps = [
            ("parser", lambda: rel.fuzz_parser(n)),
            ("hypothesis", lambda: rel.fuzz_parser_hypothesis(n // 10 if args.quick else n)),
            ("random_rules", lambda: rel.random_rules_through_backends(n)),
            ("kill", lambda: runs.kill_and_resume(Path(tmp) / "kill", kills)),
            ("worker", lambda: runs.process_worker_loss(Path(tmp))),
            ("ray_worker", lambda: runs.ray_worker_loss(Path(tmp))),
            ("worker_storm", lambda: runs.worker_kill_storm(Path(tmp) / "storm",
                                                            3.0 if args.quick else 6.0)),
            ("disk_full", lambda: runs.disk_full_during_checkpoint(Path(tmp))),
            ("corrupt_files", lambda: rel.corrupt_files(Path(tmp))),
        ]
        for name, fn in steps:
            start = time.perf_counter()
            figures.update(fn())
            timings[name] = round(time.perf_counter() - start, 1)
            if not args.json:
                print(f"[{name} done in {timings[name]} s]", file=sys.stderr)
    sys.stdout.flush()
    os.dup2(saved_stdout, 1)
    os.close(saved_stdout)
    figures["seconds"] = timings
    bad = {k: v for k, v in figures.items()
           if k.endswith(("_failures", "_crashes", "_lost", "_mismatches", "_executed")) and v}
    figures["all_zero"] = not bad
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:<40} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
