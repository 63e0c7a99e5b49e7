"""The leaderboard site: one row per accepted bundle and agent, ranked per suite, written as
`index.html` and `leaderboard.csv`, with the rejected bundles listed with their reasons.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinicgym import __version__
from clinicgym.runs.leaderboard.verify import Verdict, verify
from clinicgym.scoring.metric_registry import PERCENT, shown_in
from clinicgym.scoring.stats import format_ci

if TYPE_CHECKING:
    from clinicgym.runs.leaderboard.verify import KBChoice

BOARD_METRICS = tuple(m.name for m in shown_in("board"))
"""Columns of the leaderboard page (each a mean with its 95% interval; the metric registry)."""
PERCENT_METRICS = frozenset(BOARD_METRICS) & PERCENT
"""Board metrics that are shares, shown as whole percents."""
RANK_METRIC = "diagnostic_accuracy"
"""What the board ranks by: top-1 accuracy, as displayed (whole percents)."""
REFERENCE_AGENTS = frozenset({"oracle", "scripted", "random", "opening", "unsafe", "human"})
"""Agent kinds shipped with clinicgym (baselines, the oracle, a person at the terminal): shown
on the board for reference, never ranked."""


def agent_kind(spec: str) -> str:
    """'openai:MODEL@URL' -> 'openai'; 'scripted#budget=4' -> 'scripted'."""
    return spec.strip().partition(":")[0].partition("#")[0]


def agent_label(spec: str) -> str:
    """An agent spec as the board shows it: without a server URL ('openai:m@http://h/v1' ->
    'openai:m'), which names the submitter's machines, not the model."""
    from clinicgym.agents.backends.registry import display_name

    return display_name(spec)


def is_reference(spec: str) -> bool:
    """Is this agent spec one of clinicgym's own reference agents (unranked)?"""
    return agent_kind(spec) in REFERENCE_AGENTS


def model_meta(agent: str, info: dict[str, Any]) -> dict[str, str]:
    """Model name, backend and parameters of an agent: declared on the card first, then what
    its transcripts record, then what its spec string says."""
    card = (info.get("cards") or {}).get(agent) or {}
    served = (info.get("served") or {}).get(agent) or {}
    from clinicgym.agents.backends.registry import display_name

    head = agent.partition("#")[0]
    sep = min((i for i in (head.find(":"), head.find("/")) if i > 0), default=len(head))
    kind, rest = head[:sep], head[sep + 1 :]  # 'openai:m@URL' and 'openai/m' alike
    from_spec = rest.split("@")[0]
    if kind == "vllm" and from_spec:
        from_spec = Path(from_spec).name
    if is_reference(agent):
        backend = "clinicgym baseline"
    else:  # a backend's name may hold its server's URL: the board never shows one
        backend = ", ".join(display_name(b) for b in served.get("backend") or []) or kind
    return {
        "model": card.get("model") or ", ".join(served.get("model") or []) or from_spec or agent,
        "served_as": ", ".join(served.get("model") or []),
        "backend": backend,
        "parameters": card.get("parameters")
        or KNOWN_PARAMETERS.get(head.replace(f"{kind}/", f"{kind}:", 1), ""),
        "url": card.get("url", ""),
    }


KNOWN_PARAMETERS = {"hf:smollm2": "135M"}
"""Parameter counts of the models clinicgym ships (others are declared on the card)."""


def _display(metric: str, cell: Any) -> str:
    return format_ci(cell, pct=True) if metric in PERCENT_METRICS else format_ci(cell, spec=".2f")


def _rank_key(cell: Any) -> float | None:
    """The ranked score as displayed: top-1 accuracy in whole percents."""
    if not isinstance(cell, dict) or cell.get("mean") is None:
        return None
    return float(round(round(float(cell["mean"]), 12) * 100))


def board_rows(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """One row per (accepted bundle, agent), grouped by suite, best top-1 accuracy first.
    Reference agents are marked and unranked; equal displayed scores share a rank (1, 2, 2, 4)."""
    rows = []
    for v in verdicts:
        info = v.info
        summary = info.get("summary") or {}
        for agent, s in (summary.get("agents") or {}).items():
            meta = model_meta(agent, info)
            metrics = s.get("metrics") or {}
            row: dict[str, Any] = {
                "suite": info.get("suite", ""),
                "rank": "",
                "agent": agent,
                "label": str(info.get("names", {}).get(agent) or agent_label(agent)),
                "reference": is_reference(agent),
                **meta,
                "sampling": " ".join(f"{k}={x}" for k, x in (info.get("sampling") or {}).items()),
                "submitter": info.get("submitter", ""),
                "run_date": info.get("created", ""),
                "submitted": info.get("submitted", ""),
                "run_id": info.get("run_id", ""),
                "episodes": s.get("episodes", 0),
                "errors": s.get("errors", 0),
                "score": _rank_key(metrics.get(RANK_METRIC)),
            }
            for m in BOARD_METRICS:
                cell = metrics.get(m) or {}
                ci = cell.get("ci95") or [None, None]
                row[m] = cell.get("mean")
                row[f"{m}_lo"], row[f"{m}_hi"] = ci[0], ci[1]
                row[f"{m}_shown"] = _display(m, cell)
            row.update(
                cases_sha256=str(info.get("cases_sha256", ""))[:12],
                packs=" ".join(info.get("packs", [])),
                kb_version=info.get("kb_version", ""),
                clinicgym=info.get("clinicgym", ""),
                superseded=info.get("superseded", ""),
                bundle=Path(v.bundle).name,
            )
            rows.append(row)
    rows.sort(
        key=lambda r: (
            r["suite"],
            r["score"] is None,
            -(r["score"] or 0.0),
            r["reference"],
            r["agent"],
            r["run_id"],
        )
    )
    for suite in {r["suite"] for r in rows}:
        ranked = [r for r in rows if r["suite"] == suite and not r["reference"]]
        for r in ranked:  # competition ranking: 1 + how many score strictly higher
            if r["score"] is not None:
                r["rank"] = 1 + sum(
                    1 for o in ranked if o["score"] is not None and o["score"] > r["score"]
                )
    return rows


def build(
    bundles: list[Path | str],
    out: Path | str,
    *,
    kb: KBChoice = None,
    secret: str | None = None,
) -> tuple[Path, list[Verdict]]:
    """Verify every bundle; write `index.html` and `leaderboard.csv` from the accepted ones
    (rejected ones are listed on the page with their reasons). Returns (out dir, verdicts)."""
    from clinicgym.patients.knowledge.kb import KnowledgeBase, load_kb

    if kb is not None:  # loaded once for every bundle
        given = kb if isinstance(kb, list | tuple) else [kb]
        kb = [x if isinstance(x, KnowledgeBase) else load_kb(x) for x in given]
    verdicts = [verify(b, kb=kb, secret=secret) for b in bundles]
    return write_site(verdicts, out), verdicts


def write_site(verdicts: list[Verdict], out: Path | str) -> Path:
    """`index.html` and `leaderboard.csv` from verdicts: the accepted ones ranked per suite,
    the rejected ones listed with their reasons."""
    import jinja2

    out = Path(out)
    rows = board_rows([v for v in verdicts if v.accepted])
    out.mkdir(parents=True, exist_ok=True)
    columns = (
        [c for c in rows[0] if not c.endswith("_shown") and c != "score"]
        if rows
        else ["suite", "rank", "agent", "reference", "run_id"]
    )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    (out / "leaderboard.csv").write_text(buf.getvalue(), encoding="utf-8")
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("clinicgym.runs", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    suites: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        suites.setdefault(r["suite"], []).append(r)
    html = env.get_template("leaderboard.html.j2").render(
        suites=suites,
        superseded={r["suite"]: r["superseded"] for r in rows if r["superseded"]},
        metrics=BOARD_METRICS,
        rejected=[v for v in verdicts if not v.accepted],
        notes=[v for v in verdicts if v.accepted and v.notes],
        built=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        version=__version__,
    )
    (out / "index.html").write_text(html, encoding="utf-8")
    return out
