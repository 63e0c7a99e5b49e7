"""The check registry: `@check("name")` factories that packs refer to by name, as inspect_ai
registers scorers.

A factory takes its validated settings (a pydantic model, so a pack's `check.args` are checked
on load with errors naming the field) and returns a `BaseCheck`: an object that sees the events
its rule watches, in order, and returns findings. One check object serves one episode at a time;
`reset` clears its state. Checks are of three kinds: `structured` (parsed actions against the
case), `textual` (patterns and MiniLM similarity over the words) and `judge` (an LLM asked a
question; run after the episode, since a model call is asynchronous).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from clinicgym.envs.episode import Event
from clinicgym.policies.context import EpisodeContext

CheckKind = Literal["structured", "textual", "judge"]
Judge = Callable[[list[dict[str, str]]], Awaitable[str]]
"""An LLM judge: chat messages in, text out (any chat backend, handed in by `runs`)."""


@dataclass(frozen=True)
class Finding:
    """What a check found at one event: a violation, or an error when it could not decide."""

    quote: str
    """The words that show it (a clinician's sentence, the prescription, the unanswered line)."""
    detail: str
    """Why it breaks the rule, in one sentence, naming the values involved."""
    error: bool = False
    """True when the check could not decide (an unparseable judge verdict): neither a pass nor
    a failure, recorded apart."""


class CheckArgs(BaseModel):
    """Base of a check's settings: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(CheckArgs):
    """A check without settings."""


class BaseCheck:
    """One rule's check, for one episode at a time."""

    needs: frozenset[str] = frozenset()
    """Event names the check must see to work; a rule's `watches` must include them."""
    deferred: bool = False
    """True for judge checks: `observe` only queues; `judge` decides after the episode."""

    def reset(self, ctx: EpisodeContext) -> None:
        """Start a new episode."""

    def observe(self, event: Event, names: frozenset[str], ctx: EpisodeContext) -> list[Finding]:
        """Findings at this event (which answers to `names`)."""
        raise NotImplementedError

    async def judge(
        self, judge: Judge, ctx: EpisodeContext, rule: str = ""
    ) -> list[tuple[Event, Finding]]:
        """Deferred checks: decide every queued event with the judge (`rule`: its text)."""
        return []


Factory = Callable[[Any], BaseCheck]


@dataclass(frozen=True)
class CheckInfo:
    """A registered check: its name, kind, settings model and factory."""

    name: str
    kind: CheckKind
    args: type[CheckArgs]
    factory: Factory
    doc: str

    def build(self, args: CheckArgs) -> BaseCheck:
        """A fresh check object with these settings."""
        return self.factory(args)


_CHECKS: dict[str, CheckInfo] = {}


def check(
    name: str, *, kind: CheckKind, args: type[CheckArgs] = NoArgs
) -> Callable[[Factory], Factory]:
    """Register a check factory under `name` (snake_case), with the model its settings follow."""

    def deco(fn: Factory) -> Factory:
        doc = (fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        _CHECKS[name] = CheckInfo(name=name, kind=kind, args=args, factory=fn, doc=doc)
        return fn

    return deco


def registered_checks() -> dict[str, CheckInfo]:
    """Every registered check, by name (the built-in modules are imported first)."""
    _load_builtins()
    return dict(_CHECKS)


def get_check(name: str) -> CheckInfo | None:
    """The registered check of that name, or None."""
    _load_builtins()
    return _CHECKS.get(name)


def _load_builtins() -> None:
    from clinicgym.policies import judge, prescribing, privacy, temporal  # noqa: F401
