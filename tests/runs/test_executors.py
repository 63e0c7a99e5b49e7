"""Executors: fault injection through a real HTTP backend (retries, then errored, never failures),
per-agent concurrency limits, and Ray on a private local cluster giving the local summary."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from pathlib import Path

import pytest

from clinicgym.runs.executors import LocalExecutor, RayExecutor, make_executor
from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore
from tests.agents.fake_openai import (
    FakeOpenAIServer,
    Garbage,
    Reply,
    Slow,
    Status,
    clinician_turn,
)

SMALL_KB = str(Path(__file__).parents[1] / "data" / "kb_small")
TURNS = 4


def _run(spec: RunSpec) -> tuple[dict, RunStore]:
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    try:
        asyncio.run(execute(ctx, store))
    finally:
        store.close()
    return finalise(ctx, store), store


def faulty_script(rate: float, seed: int = 0):
    """'flaky' fails `rate` of its requests (time-out, 500, 429, malformed body); 'down' always
    answers 500; otherwise a fixed clinician that asks TURNS - 1 questions, then diagnoses."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def script(body, n):
        if body.get("model") == "down":
            return Status(500)
        with lock:
            roll = rng.random()
            kind = rng.randrange(4)
        if roll < rate:
            return [Slow(0.6), Status(500), Status(429, retry_after=0), Garbage()][kind]
        turn = clinician_turn(body.get("messages", []))
        if turn + 1 >= TURNS:
            return Reply("DIAGNOSIS: Urinary tract infection (70%)")
        return Reply(["Any fever?", "Does it burn when you pass urine?", "Any cough?"][turn % 3])

    return script


def test_faulty_backend_run_completes_with_retries_then_errors_kept_apart(tmp_path):
    with FakeOpenAIServer(faulty_script(0.2)) as srv:
        flaky = f"openai:flaky@{srv.url}#retries=0,timeout=0.3"
        down = f"openai:down@{srv.url}#retries=0"
        spec = RunSpec(
            agents=[flaky, down],
            cases=10,
            seed=3,
            max_turns=TURNS + 2,
            concurrency=6,
            episode_retries=2,
            kb_dir=SMALL_KB,
            out=tmp_path / "run",
        )
        summary, store = _run(spec)
        down_requests = sum(r.get("model") == "down" for r in srv.requests)
        answers = set(srv.answers)
    episodes = list(store.iter_episodes())
    ids = [e.episode_id for e in episodes]
    assert len(ids) == 20 and len(set(ids)) == 20  # every planned episode, each once
    assert {"Slow", "Status", "Garbage", "Reply"} <= answers  # the faults really happened
    by_agent = {a: [e for e in episodes if e.agent_id == a] for a in (flaky, down)}
    # flaky: first attempts failed and were replayed; most episodes then completed
    retried = [e for e in by_agent[flaky] if any("retried" in x for x in e.errors)]
    assert retried and any(e.status == "completed" for e in retried)
    for e in by_agent[flaky]:
        assert e.status == "completed" or len(e.errors) == 3  # 1 + 2 retries, all failed
    # down: every episode tried 1 + 2 times (one request each), then stored as errored
    assert down_requests == 10 * 3
    assert all(e.status == "error" and len(e.errors) == 3 for e in by_agent[down])
    assert "attempt 3 of 3 failed" in by_agent[down][0].errors[-1]
    s_down, s_flaky = summary["agents"][down], summary["agents"][flaky]
    assert s_down["errors"] == 10 and s_down["completed"] == 0
    assert s_down["metrics"]["diagnostic_accuracy"]["mean"] is None  # not a 0% model
    errored = sum(e.status == "error" for e in by_agent[flaky])
    assert s_flaky["errors"] == errored and s_flaky["completed"] == 10 - errored
    assert s_flaky["metrics"]["diagnostic_accuracy"]["n"] == 10 - errored


def test_an_agent_whose_first_episodes_all_error_is_stopped_then_resumed_and_retried(tmp_path):
    healthy = faulty_script(0.0)
    state = {"up": False}

    def script(body, n):
        return healthy(body, n) if state["up"] else Status(500)

    with FakeOpenAIServer(script) as srv:
        model = f"openai:m@{srv.url}#retries=0"
        spec = RunSpec(
            agents=[model, "scripted"],
            cases=12,
            seed=3,
            max_turns=TURNS + 2,
            concurrency=2,
            episode_retries=0,
            stop_after_errors=3,
            kb_dir=SMALL_KB,
            out=tmp_path / "run",
        )
        _, store = _run(spec)
        first = list(store.iter_episodes())
        down = [e for e in first if e.agent_id == model]
        # stopped after 3 errored episodes (one more may have been in flight), others unplayed
        assert 3 <= len(down) <= 4 and all(e.status == "error" for e in down)
        assert sum(e.agent_id == "scripted" for e in first) == 12  # the other agent ran on
        stored = {e.episode_id for e in first}
        unplayed = [p for p in prepare(spec).plan if p.episode_id not in stored]
        assert {p.agent for p in unplayed} == {model} and len(unplayed) == 12 - len(down)

        state["up"] = True  # the server is fixed: the same spec resumes the unplayed ones
        summary, store = _run(spec)
        episodes = list(store.iter_episodes())
        ids = [e.episode_id for e in episodes]
        assert len(ids) == 24 and len(set(ids)) == 24
        assert summary["agents"][model]["errors"] == len(down)
        assert summary["agents"][model]["completed"] == 12 - len(down)

        # --retry-errored: the errored ones are set aside (kept in errored.jsonl), played again
        summary, store = _run(spec.model_copy(update={"retry_errored": True}))
    assert store.set_aside == len(down)
    aside = (tmp_path / "run" / "errored.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["episode_id"] for x in aside) == sorted(e.episode_id for e in down)
    episodes = list(store.iter_episodes())
    assert len(episodes) == 24 and len({e.episode_id for e in episodes}) == 24
    assert summary["agents"][model]["errors"] == 0
    assert summary["agents"][model]["completed"] == 12


def test_agent_concurrency_caps_one_agent_within_the_global_limit(tmp_path):
    with FakeOpenAIServer(lambda body, n: Reply("DIAGNOSIS: Cystitis", delay=0.05)) as srv:
        spec = RunSpec(
            agents=[f"openai:m@{srv.url}", "scripted"],
            agent_concurrency={f"openai:m@{srv.url}": 2},
            cases=8,
            seed=1,
            concurrency=8,
            kb_dir=SMALL_KB,
            out=tmp_path / "run",
        )
        summary, _ = _run(spec)
        assert srv.max_in_flight == 2
    assert summary["stored_episodes"] == 16


def test_make_executor_and_missing_ray(tmp_path, monkeypatch):
    import builtins

    from clinicgym.runs.errors import RunError
    from clinicgym.runs.executors import import_ray

    base = {"agents": ["scripted"], "out": tmp_path}
    assert isinstance(make_executor(RunSpec(**base)), LocalExecutor)
    assert isinstance(make_executor(RunSpec(**base, executor="ray")), RayExecutor)
    real_import = builtins.__import__

    def no_ray(name, *a, **kw):
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(RunError, match=r'pip install "clinicgym\[ray\]"'):
        import_ray()


@pytest.mark.integration
@pytest.mark.slow
def test_ray_executor_gives_the_local_summary(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    base = dict(agents=["scripted", "random"], cases=4, seed=9, kb_dir=SMALL_KB, concurrency=4)
    local, _ = _run(RunSpec(**base, out=tmp_path / "local"))
    ray_summary, store = _run(RunSpec(**base, executor="ray", ray_workers=2, out=tmp_path / "ray"))
    assert json.dumps(local["agents"], sort_keys=True) == json.dumps(
        ray_summary["agents"], sort_keys=True
    )
    ids = [e.episode_id for e in store.iter_episodes()]
    assert len(ids) == 8 and len(set(ids)) == 8
    assert json.loads((tmp_path / "ray" / "manifest.json").read_text())["spec"]["executor"] == (
        "ray"
    )


def test_quiet_progress_prints_a_line_per_tenth_with_errors_and_tokens():
    from rich.console import Console

    from clinicgym.envs.episode import Episode, Event, TerminationReason
    from clinicgym.runs.progress import RunProgress
    from clinicgym.runs.runner import PlannedEpisode

    plan = [PlannedEpisode(f"m|c{i}|r0", "m", i, 0, i) for i in range(20)]
    console = Console(record=True, width=200)
    with RunProgress(plan, {"m|c0|r0", "m|c1|r0"}, console, quiet=True) as progress:
        for i in range(2, 20):
            meta = {"prompt_tokens": 100, "completion_tokens": 10}
            progress.on_episode(
                Episode(
                    episode_id=f"m|c{i}|r0",
                    case_id=f"c{i}",
                    agent_id="m",
                    seed=i,
                    status="error" if i % 6 == 0 else "completed",
                    errors=[
                        f"attempt {i % 4} of 3 failed: m on c{i}: "
                        "clinicgym.agents.errors.BackendError: m: HTTP 500 from the server"
                    ]
                    if i % 6 == 0
                    else [],
                    termination=TerminationReason.DIAGNOSED,
                    turns=1,
                    events=[Event(turn=1, actor="clinician", text="hi", meta=meta)],
                )
            )
    lines = [x for x in console.export_text().splitlines() if x.startswith("[run]")]
    assert len(lines) == 10  # one per tenth of the 18 episodes this session
    assert lines[-1].startswith("[run] 20/20 episodes, 3 errors,") and "tok/s" in lines[-1]
    assert progress.total_errors == 3 and progress.tokens["m"] == 18 * 110
    # one cause, whatever the case and attempt: that is what the run prints at its end
    assert progress.causes == {"m: HTTP 500 from the server": 3}


def _episode_worker_pids() -> list[int]:
    """PIDs of this machine's Ray actor processes playing episodes (Ray titles them
    'ray::EpisodeWorker...')."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if b"ray::EpisodeWorker" in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


@pytest.mark.integration
@pytest.mark.slow
def test_ray_worker_killed_mid_run_loses_nothing(tmp_path, monkeypatch):
    """kill -9 of a Ray worker while it plays episodes: its episodes are retried on a new
    worker; every planned episode is stored once, none errored, the summary is the local one.
    The private Ray it runs on is bound to loopback."""
    import os
    import signal

    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    base = dict(agents=["scripted", "random"], cases=12, seed=4, kb_dir=SMALL_KB, concurrency=4)
    local, _ = _run(RunSpec(**base, out=tmp_path / "local"))

    spec = RunSpec(**base, executor="ray", ray_workers=2, out=tmp_path / "ray")
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    killed: list[int] = []

    def kill_one_worker(_episode) -> None:
        import ray

        # the private Ray lives on loopback: no address of the machine's network is used
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
        if not killed:
            pids = _episode_worker_pids()
            assert pids, "no Ray EpisodeWorker process found to kill"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    try:
        asyncio.run(execute(ctx, store, kill_one_worker))
    finally:
        store.close()
    summary = finalise(ctx, store)
    episodes = list(store.iter_episodes())
    ids = [e.episode_id for e in episodes]
    assert killed and len(ids) == 24 and len(set(ids)) == 24
    assert all(e.status == "completed" for e in episodes), "a worker death became an error"
    assert json.dumps(local["agents"], sort_keys=True) == json.dumps(
        summary["agents"], sort_keys=True
    )


CLUSTER = """
import os
import sys
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only (runs/executors.py)
import ray
ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2,
         object_store_memory=128 * 1024**2, log_to_driver=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
"""


@pytest.mark.integration
@pytest.mark.slow
def test_ray_address_joins_a_running_cluster_and_leaves_it_up(tmp_path, monkeypatch):
    """--ray-address: the run joins a cluster another process keeps (its own on 127.0.0.1),
    plays there, and leaves the cluster running when it disconnects."""
    import subprocess
    import sys

    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    head = subprocess.Popen(
        [sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        address = head.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), address
        base = dict(agents=["scripted"], cases=4, seed=2, kb_dir=SMALL_KB, concurrency=2)
        local, _ = _run(RunSpec(**base, out=tmp_path / "local"))
        joined, store = _run(
            RunSpec(**base, executor="ray", ray_address=address, out=tmp_path / "ray")
        )
        assert not ray.is_initialized()  # the run disconnected ...
        assert head.poll() is None  # ... and the cluster it joined is still up
        assert json.dumps(local["agents"], sort_keys=True) == json.dumps(
            joined["agents"], sort_keys=True
        )
        assert len({e.episode_id for e in store.iter_episodes()}) == 4
    finally:
        head.stdin.close()
        head.wait(timeout=60)
