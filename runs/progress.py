"""The run's progress display: one bar per agent with episodes done, errors, tokens per second
and ETA; with `quiet`, plain milestone lines instead (CI logs), one per tenth of the run."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from clinicgym.envs.episode import Episode
from clinicgym.runs.runner import PlannedEpisode
from clinicgym.runs.summary import episode_usage


def _rate(tokens: float, seconds: float) -> str:
    if tokens <= 0 or seconds <= 0:
        return "-"
    rate = tokens / seconds
    return f"{rate / 1000:.1f}k" if rate >= 10_000 else f"{rate:.0f}"


class RunProgress:
    """`with RunProgress(plan, done_ids, console) as p: execute(ctx, store, p.on_episode)`."""

    def __init__(
        self,
        plan: Iterable[PlannedEpisode],
        done_ids: set[str],
        console: Console,
        *,
        quiet: bool = False,
        log: Console | None = None,
        names: dict[str, str] | None = None,
    ) -> None:
        self.names = names or {}
        """Agent spec -> the display name its bar shows."""
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}
        for p in plan:
            self.totals[p.agent] = self.totals.get(p.agent, 0) + 1
            self.done[p.agent] = self.done.get(p.agent, 0) + (p.episode_id in done_ids)
        self.errors = dict.fromkeys(self.totals, 0)
        self.causes: Counter[str] = Counter()
        """Why errored episodes failed (their last error, without attempt and case), by count."""
        self.tokens = dict.fromkeys(self.totals, 0.0)
        self.ran = 0
        self.quiet = quiet
        self.log = log or console
        self._start = time.monotonic()
        self._remaining = sum(self.totals.values()) - sum(self.done.values())
        self._next_milestone = 1
        self._progress = Progress(
            TextColumn("{task.description:>16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("errors {task.fields[errors]}"),
            TextColumn("{task.fields[tps]:>6} tok/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}

    @property
    def unplayed(self) -> dict[str, int]:
        """Planned episodes not stored, by agent: what an agent stopped after its first
        episodes all errored leaves for a resume (empty when the run played its plan)."""
        return {a: t - self.done[a] for a, t in self.totals.items() if t > self.done[a]}

    @property
    def total_errors(self) -> int:
        """Errored episodes stored during this session."""
        return sum(self.errors.values())

    def __enter__(self) -> RunProgress:
        self._progress.__enter__()
        for agent, total in self.totals.items():
            self._tasks[agent] = self._progress.add_task(
                self.names.get(agent, agent)[:16],
                total=total,
                completed=self.done[agent],
                errors=0,
                tps="-",
            )
        self._start = time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def on_episode(self, episode: Episode) -> None:
        """Count a stored episode (the executor's callback)."""
        agent = episode.agent_id
        if agent not in self.totals:
            return
        self.ran += 1
        self.done[agent] += 1
        if episode.status == "error":
            self.errors[agent] += 1
            self.causes[error_cause(episode)] += 1
        usage = episode_usage(episode)
        self.tokens[agent] += usage["prompt_tokens"] + usage["completion_tokens"]
        elapsed = time.monotonic() - self._start
        self._progress.update(
            self._tasks[agent],
            advance=1,
            errors=self.errors[agent],
            tps=_rate(self.tokens[agent], elapsed),
        )
        if self.quiet and self._remaining:
            self._milestone(elapsed)

    def _milestone(self, elapsed: float) -> None:
        """A plain line each time another tenth of this session's episodes is stored."""
        share = self.ran / self._remaining
        if share * 10 < self._next_milestone and self.ran != self._remaining:
            return
        self._next_milestone = int(share * 10) + 1
        done, total = sum(self.done.values()), sum(self.totals.values())
        eta = elapsed / self.ran * (self._remaining - self.ran)
        self.log.print(
            f"[run] {done}/{total} episodes, {self.total_errors} errors, "
            f"{_rate(sum(self.tokens.values()), elapsed)} tok/s, {elapsed:.0f}s elapsed, "
            f"ETA {eta:.0f}s",
            highlight=False,
            markup=False,
        )


_ATTEMPT = re.compile(r"^attempt \d+ of \d+ failed: .*? on \S+?: (?:[\w.]+Error: )?")


def error_cause(episode: Episode) -> str:
    """An errored episode's last error without the attempt count, case id and exception
    class path, so that one cause shared by many episodes is counted once."""
    last = episode.errors[-1] if episode.errors else "no error message recorded"
    return _ATTEMPT.sub("", last)[:300]
