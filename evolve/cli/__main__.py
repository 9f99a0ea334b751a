"""``python -m evolve.cli``: the same command line as the ``evolve`` script."""

from evolve.cli import run

run()
