"""The run directory: the one owner of its layout, its readers and writers, its lock, and rule
references into it (``RUN:best``).

Layout (everything JSON / JSONL / Markdown / PNG; see :mod:`evolve.rundir.directory`)::

    RUN/config.json         the CampaignConfig (with the seed: everything that determines the run)
    RUN/checkpoint.json     the strategy's state (with its pending batch), the number of cache
                            lines it relies on, counters, and the log rows up to its generation;
                            written at creation, every `checkpoint_every` generations, on
                            SIGINT/SIGTERM, when workers are lost, and at the end
    RUN/cache.jsonl         the equivalence cache, append-only: fingerprint -> Result
    RUN/log.jsonl           one line per generation (best and median score, sizes, cache hits,
                            hurdle rejections, lost and retried evaluations, timing)
    RUN/hall_of_fame.json   best rules first: rule, score, per-task scores (+ pruned, sympy forms)
    RUN/heldout.json        the funnel: hall of fame and champions re-scored on held-out tasks
    RUN/selection.json      the final selection: tier 2's best rules (and their warmup
                            variants) re-scored on fresh seeds, the first of which is the
                            campaign's answer (``RUN:best``)
    RUN/status.json         how the last call ended: finished, or stopped (by a budget or a
                            signal) with the reason and the generation the report describes
    RUN/report.md           the campaign report (Markdown), with RUN/score.png, RUN/pareto.png,
                            RUN/loss_curves.png
    RUN/report.html         the same as one self-contained page (plots inline), rewritten as
                            the run goes (evolve.live)
    RUN/tensorboard/        TensorBoard event files: scalars and the best rules as the run goes
    RUN/validation/         torch validation of the top held-out rules (with --validate)
    RUN/.lock               the holder's pid while a process runs, resumes or finishes the run

A checkpoint is written after its generation's log line, so a resume cuts the log and the cache
back to the checkpoint (rebuilding log rows that were lost from the copy the checkpoint holds)
and continues exactly as if the run had never stopped.
"""

from evolve.rundir.directory import (
    CACHE,
    CHECKPOINT,
    CONFIG,
    HALL,
    HELDOUT,
    LOG,
    LOSS_PLOT,
    PARETO_PLOT,
    REPORT,
    REPORT_HTML,
    SCORE_PLOT,
    SELECTION,
    STATUS,
    TENSORBOARD,
    VALIDATION,
    Checkpoint,
    RunDirectory,
    check_writable_file,
    check_writable_folder,
)
from evolve.rundir.lock import LOCK, RunLock
from evolve.rundir.refs import RuleRef, resolve_rule

__all__ = ["CACHE", "CHECKPOINT", "CONFIG", "Checkpoint", "HALL", "HELDOUT", "LOCK", "LOG",
           "LOSS_PLOT", "PARETO_PLOT", "REPORT", "REPORT_HTML", "TENSORBOARD", "RuleRef", "SELECTION", "SCORE_PLOT", "STATUS", "RunDirectory", "RunLock", "VALIDATION", "check_writable_file",
           "check_writable_folder", "resolve_rule"]
