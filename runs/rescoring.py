"""Re-judging a stored run under other policy pack versions: (compliance report, verdicts).

In `runs`, not `policies/rescore.py`, because it builds the report with `scoring`; progress is a
callback so that the command line (or a notebook) draws it, not this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from clinicgym.policies.diff import VerdictChange
    from clinicgym.policies.pack import PolicyPack
    from clinicgym.runs.store import StoredRun


def rescore_run(
    run: StoredRun,
    refs: list[str],
    *,
    judge: Any = None,
    on_verdict: Callable[[Any], None] | None = None,
) -> tuple[Any, list[Any]]:
    """Re-judge a loaded run under the packs `refs`: (report, verdicts); `on_verdict` is called
    once per episode judged."""
    from clinicgym.policies import load_packs, require_judge
    from clinicgym.policies.rescore import rescore
    from clinicgym.scoring.compliance import build_report

    packs = load_packs(refs)
    require_judge(packs, judge)
    verdicts = asyncio.run(
        rescore(
            run.episodes,
            run.cases,
            packs,
            run.kb,
            run.scenarios,
            judge=judge,
            on_verdict=on_verdict,
        )
    )
    report = build_report(
        verdicts,
        packs,
        run_id=run.root.name,
        mode="rescore",
        agents=run.agents or None,
        kb_version=run.kb.version,
        notes=run.notes,
    )
    return report, verdicts


def run_verdict_changes(
    run_dir: Path, old: PolicyPack, new: PolicyPack
) -> tuple[int, list[VerdictChange]]:
    """A run's stored episodes re-scored under two pack versions (`clinicgym policy diff
    --run`): how many there are, and those whose verdict or violated rules differ."""
    from clinicgym.policies.diff import verdict_changes
    from clinicgym.runs.store import load_run

    stored = load_run(run_dir)
    _, va = rescore_run(stored, [old.ref if old.path is None else str(old.path)])
    _, vb = rescore_run(stored, [new.ref if new.path is None else str(new.path)])
    return len(va), verdict_changes(va, vb)
