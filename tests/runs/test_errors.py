"""One rule for errors (issue 19), one test per class: what the agent raises is the model's
failure and is scored; a backend, transport or machine failure is an infrastructure error
(retried, then stored as errored and left out of the metrics); an exception inside clinicgym's
env is a bug that stops the run, never an episode quietly left out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from clinicgym.agents.errors import BackendError
from clinicgym.agents.registry import agent_builder
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.runs.errors import EpisodeBug
from clinicgym.runs.runner import classify_error, execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore

SMALL_KB = Path(__file__).parents[1] / "data" / "kb_small"


def _run(tmp_path, name="run", **kw):
    spec = RunSpec(out=tmp_path / name, kb_dir=str(SMALL_KB), **kw)
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    try:
        asyncio.run(execute(ctx, store))
    finally:
        store.close()
    return finalise(ctx, store), store


class _RaisesOnce:
    """Asks, raises on its second turn (a reply it cannot turn into an action), then commits."""

    agent_id = "raises-once"

    def reset(self, observation, info):
        pass

    async def act(self, observation, info):
        if info["turn"] == 0:
            return "Any fever?"
        if info["turn"] == 1:
            raise ValueError("no action in the model's reply")
        return "DIAGNOSIS: nothing in particular"


class _BrokenReset:
    agent_id = "broken-reset"

    def reset(self, observation, info):
        raise KeyError("template variable the model's prompt needs")

    async def act(self, observation, info):  # pragma: no cover - never reached
        return "DIAGNOSIS: anything"


_ATTEMPTS: dict[int, int] = {}


class _BackendDownFirst:
    """Its backend fails on every episode's first attempt (a 503 after retries), then works."""

    agent_id = "backend-down-first"

    def reset(self, observation, info):
        self.seed = info["seed"]

    async def act(self, observation, info):
        n = _ATTEMPTS[self.seed] = _ATTEMPTS.get(self.seed, 0) + 1
        if n == 1:
            raise BackendError("openai:m@http://127.0.0.1:9/v1: no answer after 5 retries")
        return "DIAGNOSIS: nothing in particular"


class HTTPStatusError(Exception):
    """Stands for a custom agent's own HTTP client error (httpx's, by module)."""


HTTPStatusError.__module__ = "httpx._exceptions"


class _BackendDown:
    agent_id = "backend-down"

    def reset(self, observation, info):
        pass

    async def act(self, observation, info):
        raise HTTPStatusError("Server error '502 Bad Gateway'")


for _name, _cls in [
    ("raises-once", _RaisesOnce),
    ("broken-reset", _BrokenReset),
    ("backend-down-first", _BackendDownFirst),
    ("backend-down", _BackendDown),
]:
    agent_builder(_name)(lambda rest, kb, options, cls=_cls: cls)


def test_classify_error():
    assert classify_error(ValueError("x"), "agent") == "agent"
    assert classify_error(ValueError("x"), "env") == "environment"
    for infra in (BackendError("x"), ConnectionResetError(), TimeoutError(), MemoryError()):
        assert classify_error(infra, "agent") == classify_error(infra, "env") == "backend"
    assert classify_error(HTTPStatusError("502"), "agent") == "backend"
    try:  # an agent that wraps its client's failure is still an infrastructure error
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as e:
            raise RuntimeError("model call failed") from e
    except RuntimeError as wrapped:
        assert classify_error(wrapped, "agent") == "backend"


def test_agent_class_an_exception_the_agent_raises_is_its_failure_and_is_scored(tmp_path):
    summary, store = _run(tmp_path, agents=["raises-once", "broken-reset"], cases=4, max_turns=5)
    for agent in ("raises-once", "broken-reset"):
        s = summary["agents"][agent]
        # scored, never excluded: no errored episode, every one in the accuracy's denominator
        assert s["errors"] == 0 and s["completed"] == 4
        assert s["metrics"]["diagnostic_accuracy"]["n"] == 4
        assert s["metrics"]["diagnostic_accuracy"]["mean"] == 0.0
    by_agent = {}
    for e in store.iter_episodes():
        by_agent.setdefault(e.agent_id, []).append(e)
    for e in by_agent["raises-once"]:
        assert e.status == "completed" and e.turns == 3  # the failed turn was used
        failed = [ev for ev in e.events if ev.turn == 2 and ev.actor == "clinician"]
        assert failed[0].error.startswith("the agent raised in act: ValueError: no action")
        assert e.outcome.diagnoses[0].name == "nothing in particular"  # it went on after it
    for e in by_agent["broken-reset"]:  # it cannot act: every turn is its failure, no diagnosis
        assert e.status == "completed" and e.termination == "turn_budget" and e.turns == 5
        errors = [ev.error for ev in e.events if ev.actor == "clinician"]
        assert len(errors) == 5 and all("the agent raised in reset: KeyError" in x for x in errors)


def test_backend_class_is_an_infrastructure_error_retried_then_excluded(tmp_path):
    _ATTEMPTS.clear()
    summary, store = _run(
        tmp_path, agents=["backend-down-first", "backend-down"], cases=3, episode_retries=1
    )
    first = summary["agents"]["backend-down-first"]
    assert first["errors"] == 0 and first["completed"] == 3  # the retry succeeded
    down = summary["agents"]["backend-down"]
    assert down["errors"] == 3 and down["completed"] == 0
    assert down["metrics"]["diagnostic_accuracy"]["n"] == 0  # never counted as wrong answers
    for e in store.iter_episodes():
        if e.agent_id == "backend-down-first":
            assert e.status == "completed"
            assert e.errors[0].startswith("attempt 1 of 2 failed, retried: ")
            assert "BackendError" in e.errors[0]
        else:
            assert e.status == "error" and e.termination == "backend_error"
            assert e.errors[-1].startswith("attempt 2 of 2 failed: ") and "502" in e.errors[-1]


def test_environment_class_a_bug_inside_the_env_stops_the_run_and_is_never_stored(
    tmp_path, monkeypatch
):
    calls = []
    apply = ConsultationEnv._apply

    def buggy(self, action, turn):
        if turn == 2:
            calls.append(self.case.id)
            raise ZeroDivisionError("division by zero")
        return apply(self, action, turn)

    monkeypatch.setattr(ConsultationEnv, "_apply", buggy)
    spec = RunSpec(
        out=tmp_path / "bug", kb_dir=str(SMALL_KB), agents=["scripted"], cases=3, concurrency=1
    )
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    with pytest.raises(EpisodeBug) as info:
        asyncio.run(execute(ctx, store))
    store.close()
    bug = info.value
    first = ctx.plan[0]
    assert bug.episode_id == first.episode_id
    assert str(bug).startswith(f"clinicgym bug in episode {first.episode_id}: bug in env.step: ")
    assert "ZeroDivisionError: division by zero" in str(bug)
    assert "Traceback" in bug.trace and "in buggy" in bug.trace
    assert len(calls) == 1  # not retried (the spec allows 2 retries), the run stopped
    assert list(store.iter_episodes()) == []  # never stored, so a resume plays it again
