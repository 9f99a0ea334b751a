"""The table of ``--config`` fields (docs/config.md), generated from the CampaignConfig dataclass.

A field's meaning is the comment on its line in :mod:`evolve.config` (continued on the comment
lines right below it that start in the same column); a comment line of its own above fields
starts a section of the table. Type and default come from the dataclass itself, so the table
cannot drift from the code: ``tests/test_api.py`` checks that every field has a meaning and
that ``docs/config.md`` is what this module writes. Regenerate it with::

    python -m evolve.config_doc --write
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

from evolve import config as config_module
from evolve.config import CampaignConfig

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "config.md"


@dataclass
class FieldDoc:
    """One row of the table."""

    name: str
    type: str
    default: str
    meaning: str
    section: str


def _comments(source: str) -> dict[int, tuple[int, str, bool]]:
    """line -> (column, comment text, whether the comment is the whole line)."""
    out = {}
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            line, col = tok.start
            alone = not lines[line - 1][:col].strip()
            out[line] = (col, tok.string.lstrip("#").strip(), alone)
    return out


def field_docs() -> list[FieldDoc]:
    """The fields of CampaignConfig in order, with type, default, meaning and section."""
    source = inspect.getsource(config_module)
    comments = _comments(source)
    cls = next(node for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.ClassDef) and node.name == CampaignConfig.__name__)
    defaults = CampaignConfig()
    docs, section = [], "search"
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        above = node.lineno - 1
        heading = []
        while above in comments and comments[above][2]:
            heading.insert(0, comments[above][1])
            above -= 1
        if heading:
            section = " ".join(heading)
        meaning = []
        if node.lineno in comments and not comments[node.lineno][2]:
            col, text, _ = comments[node.lineno]
            meaning.append(text)
            below = node.end_lineno + 1
            while below in comments and comments[below][2] and comments[below][0] == col:
                meaning.append(comments[below][1])
                below += 1
        default = json.dumps(getattr(defaults, name))
        docs.append(FieldDoc(name, ast.unparse(node.annotation), default, " ".join(meaning),
                             section))
    return docs


def render() -> str:
    """docs/config.md: one table of every field, grouped by section."""
    lines = ["# Campaign config fields", "",
             "`evolve run --config FILE.json` reads a JSON object of these fields (options given "
             "on the command line override it); `config.json` in every run directory holds "
             "them all, and `evolve.CampaignConfig(...)` takes them in Python. A campaign is a "
             "function of this config: the seed is one of its fields. Scores are "
             "geometric-mean loss ratios against tuned Adam (1.0 = Adam, higher is better).", "",
             "Generated from the `CampaignConfig` dataclass (`evolve/config.py`) by "
             "`python -m evolve.config_doc --write`; do not edit by hand.", ""]
    current = None
    for doc in field_docs():
        if doc.section != current:
            current = doc.section
            lines += ["", f"## {current[:1].upper()}{current[1:]}", "",
                      "| field | type | default | meaning |", "|---|---|---|---|"]
        cells = [f"`{doc.name}`", f"`{doc.type}`", f"`{doc.default}`", doc.meaning]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        from primitives.files import atomic_write_text

        atomic_write_text(DOC_PATH, render())
        print(f"wrote {DOC_PATH}", file=sys.stderr)
        return 0
    if argv:
        print("usage: python -m evolve.config_doc [--write]", file=sys.stderr)
        return 2
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__ = ["DOC_PATH", "FieldDoc", "field_docs", "render"]
