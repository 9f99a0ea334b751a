"""``report.html``: the campaign as one self-contained page (plots inline, no outside files).

Built from what the run directory holds (config, log, hall of fame, selection, funnel), so the
page a browser shows while the run goes and the one left at its end come from one function.
While the run goes the page reloads itself every few seconds (a ``<meta http-equiv=refresh>``),
so a browser pointed at the file follows the run. A small inline script counts the plots the
browser decoded into ``<body data-plots-loaded>``, which the tests read in headless Chromium.
"""

from __future__ import annotations

import base64
import html
import json
import time
from typing import Any

from evolve.errors import UserError
from evolve.plots import front, looked_up, pareto_points
from evolve.rundir import RunDirectory
from evolve.simplify import smaller_form

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;
max-width:1100px;padding:18px;color:#222;background:#fafafa}
h1{font-size:1.5em;margin:0 0 6px} h2{font-size:1.15em;margin:26px 0 8px;
border-bottom:1px solid #ddd;padding-bottom:3px}
.state{display:inline-block;padding:2px 9px;border-radius:10px;font-size:.85em;color:#fff}
.running{background:#2b7bb9}.finished{background:#2e8b3e}.stopped{background:#c77700}
.paused{background:#777}
.answer{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;margin:12px 0}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em;word-break:break-all}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(165px,1fr));gap:8px}
.figure{background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:7px 10px}
.figure b{display:block;font-size:1.25em}.figure span{font-size:.8em;color:#666}
table{border-collapse:collapse;background:#fff;font-size:.86em}
th,td{border:1px solid #e0e0e0;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f0f0} td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;background:#fff;border:1px solid #e2e2e2;margin:6px 0}
.note{color:#666;font-size:.88em}
"""

SCRIPT = """
window.addEventListener('load', function () {
  var shown = Array.prototype.filter.call(document.images, function (i) {
    return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-plots-loaded', String(shown));
});
"""

PLOT_TITLES = {"score.png": "Scores over generations",
               "pareto.png": "Pareto front: score against rule size",
               "loss_curves.png": "Loss curves of the final selection on every proxy task"}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "—"


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """A table from already-escaped cells."""
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f"<td class=n>{c}</td>" if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _read(rd: RunDirectory) -> dict[str, Any]:
    def safe(read):
        try:
            return read()
        except UserError:
            return None

    return {"config": json.loads(rd.file("config.json").read_text(encoding="utf-8")),
            "log": rd.read_log(), "hall": safe(rd.read_hall_of_fame) or [],
            "selection": safe(rd.read_selection), "heldout": safe(rd.read_heldout),
            "answer": safe(rd.final_selection)}


def _figures(log: list[dict], config: dict) -> list[tuple[str, str]]:
    if not log:
        return []
    last = log[-1]
    seconds = sum(r.get("seconds") or 0 for r in log)
    candidates = sum(r.get("candidates") or 0 for r in log)
    evaluated = sum(r.get("evaluated") or 0 for r in log)
    hits = sum(r.get("cache_hits") or 0 for r in log)
    asked = sum(looked_up(r) for r in log)
    hurdles = sum(r.get("hurdle_rejections") or 0 for r in log)
    lost = sum(r.get("lost_evaluations") or 0 for r in log)
    real = last.get("real_best")
    return [
        (f"{last['generation']} / {config.get('generations')}", "generation"),
        (_num(last.get("best_score")), "best proxy score (1 = tuned Adam)"),
        (_num(real) if real is not None else "—", "real-data tier's best"),
        (f"{last.get('evaluations', candidates)}", "candidates scored"),
        (f"{candidates / seconds:.1f}" if seconds else "—", "candidates per second"),
        (f"{100 * hits / asked:.0f}%" if asked else "—", "equivalence-cache hits"),
        (f"{100 * hurdles / evaluated:.0f}%" if evaluated else "—",
         "evaluated ones stopped at the hurdle"),
        (f"{lost}", "evaluations lost with a worker"),
        (f"{seconds:.0f} s", "time in generations"),
    ]


def _plot_tags(rd: RunDirectory, plots: list[str]) -> str:
    out = []
    for name in plots:
        path = rd.file(name)
        if not path.is_file():
            continue
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        title = PLOT_TITLES.get(name, name)
        out.append(f"<h3>{_e(title)}</h3><img alt='{_e(title)}' src='data:image/png;base64,"
                   f"{data}'>")
    return "".join(out)


def _hall_section(hall: list[dict]) -> str:
    rows = [[str(i), _e(e.get("tier", "proxy")), _num(e.get("score")),
             _num(e.get("proxy_score", e.get("score"))), str(e.get("size", "")),
             f"<code>{_e(e['rule'])}</code>"
             + (f"<br><span class=note>pruned: <code>{_e(pruned)}</code></span>"
                if (pruned := smaller_form(e)) else "")]
            for i, e in enumerate(hall, 1)]
    real = [[str(i), _num(e.get("real_score", e.get("score"))), _num(e.get("proxy_score")),
             str(e.get("generation", "")), f"<code>{_e(e['rule'])}</code>"]
            for i, e in enumerate(hall, 1) if e.get("tier") == "real"]
    out = ""
    if real:
        out += ("<h2>Tier-2 leaderboard (real-data tier)</h2>"
                + _table(["#", "tier 2", "proxy", "generation", "rule"], real, {1, 2, 3}))
    out += ("<h2>Hall of fame</h2><p class=note>Tier-2 rules first by tier-2 score, then the "
            "proxy suite's best; #N is <code>RUN:N</code>.</p>"
            + _table(["#", "tier", "score", "proxy", "size", "rule"], rows, {2, 3, 4}))
    points = pareto_points(hall)
    tier = "real" if points["real"] else "proxy"
    best = front(points[tier])
    if best:
        out += (f"<h2>Pareto front ({'tier-2' if tier == 'real' else 'proxy'} score against "
                "size)</h2>" + _table(["size", "score", "rule"], [
                    [str(p["size"]), _num(p["score"]), f"<code>{_e(hall[p['rank'] - 1]['rule'])}"
                     "</code>"] for p in best], {0, 1}))
    return out


def _selection_section(selection: dict | None) -> str:
    if not selection:
        return ""
    rows = [[str(i), _num(r.get("final_score")), _num(r.get("real_score")),
             _num(r.get("confirm_score")), _num(r.get("proxy_score")), str(r.get("size", "")),
             f"<code>{_e(r['rule'])}</code>"] for i, r in enumerate(selection["ranking"], 1)]
    return ("<h2>Final selection</h2><p class=note>" + _e(selection.get("how", "")) +
            ". Tier-2 scores are the soft minimum of the tasks' ratios (docs/scoring.md); "
            "final = geometric mean of the tier-2 and confirmation scores, each weighted by "
            "its seeds.</p>"
            + _table(["rank", "final", "tier 2", "confirmation", "proxy", "size", "rule"],
                     rows, {1, 2, 3, 4, 5}))


def _funnel_section(heldout: dict | None) -> str:
    if not heldout:
        return ""
    rows = [[str(i), _num(r["heldout_score"]), _num(r["search_score"]),
             f"<code>{_e(r['rule'])}</code>"] for i, r in enumerate(heldout["ranking"][:15], 1)]
    base = ", ".join(f"{_e(k)} {_num(v)}" for k, v in heldout.get("baselines", {}).items())
    champs = [[str(c["generation"]), _num(c["score"]), _num(c.get("heldout_score")),
               "<b>yes</b>: search up, held-out down" if c.get("meta_overfitting") else ""]
              for c in heldout.get("champions", [])]
    return (f"<h2>Funnel: held-out suite <code>{_e(heldout['suite'])}</code></h2>"
            f"<p class=note>Baselines: {base}</p>"
            + _table(["rank", "held-out", "search", "rule"], rows, {1, 2})
            + "<h3>Champions over generations</h3>"
            + _table(["generation", "search", "held-out", "meta-overfitting"], champs, {0, 1, 2}))


def render(rd: RunDirectory, state: str, reason: str | None = None,
           plots: list[str] | None = None, refresh: int | None = None) -> str:
    """The page for the run in ``rd``: ``state`` is running, paused, stopped or finished;
    ``refresh`` (seconds) makes the browser reload it; ``plots`` are PNG names in RUN."""
    data = _read(rd)
    cfg = data["config"]
    updated = time.strftime("%Y-%m-%d %H:%M:%S")
    head = (f"<meta http-equiv='refresh' content='{int(refresh)}'>" if refresh else "")
    words = {"running": "live: this page reloads every "
             f"{refresh} s while the run goes" if refresh else "live",
             "paused": "paused: the process stopped after the generations it was asked for",
             "stopped": f"stopped: {reason}" if reason else "stopped",
             "finished": "finished: final selection, funnel and report done"}
    status = words.get(state, state)
    answer = data["answer"]
    answer_html = (f"<div class=answer><b>The campaign's answer"
                   f"{'' if state == 'finished' else ' so far'}</b> "
                   f"<span class=note>({_e(answer[1])})</span><br>"
                   f"<code id=best-rule>{_e(answer[0])}</code></div>" if answer else
                   "<div class=answer>No generation has finished yet.</div>")
    figures = "".join(f"<div class=figure><b>{_e(v)}</b><span>{_e(k)}</span></div>"
                      for v, k in _figures(data["log"], cfg))
    resume = ("<p class=note>Continue it with <code>evolve resume "
              f"{_e(rd.path)}</code>.</p>" if state in ("stopped", "paused") else "")
    body = (f"<h1>Campaign {_e(rd.path.name)}</h1>"
            f"<p><span class='state {_e(state)}'>{_e(state)}</span> {_e(status)} · updated "
            f"{_e(updated)}</p>{resume}{answer_html}"
            f"<p class=note>Scores are geometric-mean loss ratios against tuned Adam on the "
            f"same tasks (1.0 = Adam, higher is better, range 0.25 to 2). Search suite "
            f"<code>{_e(cfg.get('suite'))}</code>, strategy {_e(cfg.get('strategy'))}, "
            f"population {_e(cfg.get('population'))}, seed {_e(cfg.get('seed'))}.</p>"
            f"<div class=figures>{figures}</div>"
            f"<h2>Plots</h2>{_plot_tags(rd, plots or [])}"
            + _selection_section(data["selection"]) + _hall_section(data["hall"])
            + _funnel_section(data["heldout"])
            + "<h2>Config</h2><details><summary>config.json</summary><pre>"
            + _e(json.dumps(cfg, indent=2)) + "</pre></details>")
    return ("<!DOCTYPE html><html lang=en><head><meta charset='utf-8'>"
            f"<title>{_e(rd.path.name)}: {_e(state)}</title>{head}"
            f"<style>{STYLE}</style></head><body>{body}<script>{SCRIPT}</script>"
            "</body></html>\n")


__all__ = ["render"]
