"""Executors: who plays a run's planned episodes, and where. Both write the same run store.

`LocalExecutor` (the default) plays episodes as asyncio tasks in this process. `RayExecutor`
(`--executor ray`, extra `ray`) spreads them over the actors of a Ray cluster; the driver, this
process, appends each episode to the store as its worker finishes it. The scheduling is shared:
at most `spec.concurrency` episodes are in flight, at most `spec.agent_concurrency[a]` of agent
`a`'s (a rate-limited API must not hold every slot), and agents take turns at free slots.

An episode that ends in an infrastructure error (the model's backend, the transport or the
machine failed; runs/runner.py `classify_error`) is played again with the same seed, up to
`spec.episode_retries` times; the last attempt is stored either way, with the failed attempts'
errors, and an errored episode is never scored as a clinical failure (runs/summary.py counts it
apart). An episode that ended on a bug inside clinicgym is neither retried nor stored: the run
stops with `EpisodeBug`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from clinicgym.envs.episode import Episode, TerminationReason
from clinicgym.patients.patient.matching import matcher_for
from clinicgym.runs.casefile import LazyCases
from clinicgym.runs.errors import RunError
from clinicgym.runs.preload import preload_finalise
from clinicgym.runs.runner import (
    PlannedEpisode,
    RunContext,
    Scored,
    is_bug,
    play_planned,
    raise_if_bug,
    score_played,
)
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore

OnEpisode = Callable[[Episode], None]
RAY_CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch between a real cluster (node address, all interfaces) and one machine on
loopback; a private Ray sets it to 0 (see RayExecutor._init)."""
RAY_INSTALL = 'pip install "clinicgym[ray]"'
RAY_OBJECT_STORE_BYTES = 128 * 1024**2
"""Object store of a private Ray: episodes travel back as small JSON strings, so 128 MiB is
ample (Ray's default takes 30% of the machine's memory)."""


class Executor(Protocol):
    """Plays every planned episode not yet in the store and appends each as it ends."""

    name: str

    async def run(self, ctx: RunContext, store: RunStore, on_episode: OnEpisode | None) -> int:
        """Returns how many episodes were played now (a resumed run skips stored ones)."""
        ...


def make_executor(spec: RunSpec) -> Executor:
    """The executor a spec names."""
    if spec.executor == "ray":
        return RayExecutor(address=spec.ray_address, workers=spec.ray_workers)
    return LocalExecutor(workers=spec.workers)


# ---- one episode, with retries -------------------------------------------------------------


async def play_with_retries(
    ctx: RunContext, planned: PlannedEpisode, live: Any = None, case: Any = None
) -> Episode:
    """Play a planned episode; replay it (same seed, fresh env and agent) while it errors, up to
    `episode_retries` times. Failed attempts are listed in the stored episode's `errors`; a bug
    is returned as it is (the caller raises it, `raise_if_bug`), never replayed. `case`: the
    planned case, realised, when the caller holds it."""
    attempts = ctx.spec.episode_retries + 1
    failed: list[str] = []
    for n in range(1, attempts + 1):
        episode = await play_planned(ctx, planned, live, case)
        if is_bug(episode):
            return episode
        if episode.status != "error":
            if failed:
                episode = episode.model_copy(update={"errors": [*failed, *episode.errors]})
            return episode
        what = "; ".join(episode.errors) or str(episode.termination)
        if n < attempts:
            failed.append(f"attempt {n} of {attempts} failed, retried: {what}")
    return episode.model_copy(
        update={"errors": [*failed, f"attempt {attempts} of {attempts} failed: {what}"]}
    )


async def play_and_score(
    ctx: RunContext, planned: PlannedEpisode, live: Any = None
) -> tuple[Episode, Scored | None]:
    """`play_with_retries`, then the episode scored against the case it played while that case
    is still held (`score_played`: finalise will not realise the case again). The case is
    realised once for every attempt and the scoring, whatever else the cache of realised cases
    dropped meanwhile. A bug is returned unscored."""
    case = ctx.cases[planned.case_index]
    episode = await play_with_retries(ctx, planned, live, case)
    if is_bug(episode):
        return episode, None
    return episode, score_played(ctx, episode, case, ctx.cases.case_hash(planned.case_index))


def keep_scored(ctx: RunContext, planned: PlannedEpisode, scored: Scored | None) -> None:
    """Hold a stored episode's scoring for finalise, and its case's hash (computed where the
    case was realised: a worker process's) for the manifest."""
    if scored is None:
        return
    ctx.scored.keep(planned.episode_id, scored.row, scored.verdict)
    if isinstance(ctx.cases, LazyCases):
        ctx.cases.set_hash(planned.case_index, scored.case_hash)


def errored_episode(planned: PlannedEpisode, case_id: str, errors: list[str]) -> Episode:
    """An errored episode made without an env (its worker died), so the plan stays whole."""
    return Episode(
        episode_id=planned.episode_id,
        case_id=case_id,
        agent_id=planned.agent,
        seed=planned.seed,
        repeat=planned.repeat,
        status="error",
        termination=TerminationReason.BACKEND_ERROR,
        turns=0,
        errors=errors,
        finished=time.time(),
    )


# ---- scheduling, shared by both executors --------------------------------------------------


async def schedule(
    ctx: RunContext,
    store: RunStore,
    run_one: Callable[[PlannedEpisode], Awaitable[Episode]],
    on_episode: OnEpisode | None,
) -> int:
    """Call `run_one` (which plays and stores an episode) for every planned episode not in the
    store, within the global and per-agent concurrency limits; returns how many ran. Once the
    first is stored, what finalise imports is loaded meanwhile (`preload_finalise`)."""
    done = store.finished_ids()
    by_agent: dict[str, Iterator[PlannedEpisode]] = {
        a: iter([p for p in ctx.plan if p.agent == a and p.episode_id not in done])
        for a in ctx.spec.agents
    }
    slots = asyncio.Semaphore(ctx.spec.concurrency)
    count = 0
    # an agent none of whose first `stop_after_errors` stored episodes completed is stopped:
    # episodes already in flight finish, the rest stay unplayed for a resume
    limit = ctx.spec.stop_after_errors
    outcomes = {a: [0, 0] for a in ctx.spec.agents}  # stored this run: errored, completed
    stopped: set[str] = set()

    async def worker(agent: str, todo: Iterator[PlannedEpisode]) -> None:
        nonlocal count
        for planned in todo:
            if agent in stopped:
                return
            async with slots:
                if agent in stopped:
                    return
                episode = await run_one(planned)
            count += 1
            if count == 1:  # start-up is over (and every worker process forked)
                preload_finalise()
            seen = outcomes[agent]
            seen[episode.status != "error"] += 1
            if limit and seen[1] == 0 and seen[0] >= limit:
                stopped.add(agent)
            if on_episode is not None:
                on_episode(episode)

    limits = {
        a: min(ctx.spec.agent_concurrency.get(a, ctx.spec.concurrency), ctx.spec.concurrency)
        for a in ctx.spec.agents
    }
    # created round-robin, so the first free slots go to every agent in turn
    workers = [
        asyncio.ensure_future(worker(a, by_agent[a]))
        for k in range(max(limits.values()))
        for a in ctx.spec.agents
        if k < limits[a]
    ]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return count


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """numpy's BLAS at one thread while episodes run: the question matcher's small products
    run concurrently with everything else, and a second BLAS thread spinning for work doubled
    the CPU per turn on 2 cores (bench/run_scale.py). Torch's own threads are not touched."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Move every object alive now (KB, cases, models, the question matcher) out of the
    garbage collector's generations while episodes run. They live as long as the run, and
    each full collection walked all of them again: 1.78 -> 1.59 ms of CPU per turn
    (bench/run_scale.py, 50 ms), with the same flat memory. Unfrozen afterwards."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def close_context(ctx: RunContext) -> None:
    """Release what a context holds: model backends' connections, the patient's cache."""
    for factory in ctx.factories.values():
        if hasattr(factory, "aclose"):
            await factory.aclose()
    if ctx.patient is not None:
        await ctx.patient.aclose()


# ---- local ---------------------------------------------------------------------------------


class LocalExecutor:
    """Episodes as asyncio tasks in this process; each is stored the moment it ends, and its
    events stream to `RUN_DIR/live/` meanwhile (the review server's live view). `workers` > 1:
    that many worker processes play them instead, each on its own event loop, while this
    process schedules, stores and reports (`ProcessPool`); None: `default_workers`."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers

    async def run(
        self, ctx: RunContext, store: RunStore, on_episode: OnEpisode | None = None
    ) -> int:
        from clinicgym.runs.review.live import LiveRecorder, clear_live, remove_live_dir

        workers = self.workers or default_workers(ctx, store)
        warm_scoring(ctx, store)  # before any worker forks: they inherit it
        if workers > 1:
            clear_live(store.root)
            try:
                async with ProcessPool(ctx, workers) as pool:
                    return await schedule(ctx, store, pool.runner(store), on_episode)
            finally:
                await close_context(ctx)
                remove_live_dir(store.root)
        matcher_for(ctx.kb)  # build the shared question matcher once, before the workers start
        clear_live(store.root)  # left by a crash: nothing is in flight yet

        async def run_one(planned: PlannedEpisode) -> Episode:
            live = LiveRecorder(store.root, episode_id=planned.episode_id, agent_id=planned.agent)
            try:
                episode, scored = await play_and_score(ctx, planned, live)
                raise_if_bug(episode)  # never stored: the run stops and says so
                await store.commit(episode)  # off the loop; back once fsynced (group commit)
                keep_scored(ctx, planned, scored)
            finally:
                live.close()  # after the append: a viewer never sees the episode vanish
            await asyncio.sleep(0)
            return episode

        try:
            with single_threaded_blas(), frozen_heap():
                return await schedule(ctx, store, run_one, on_episode)
        finally:  # model backends hold connections and workers bound to this event loop
            await close_context(ctx)
            remove_live_dir(store.root)


# ---- worker processes ----------------------------------------------------------------------

MIN_EPISODES_PER_WORKER = 200
"""Episodes to play per extra worker before `default_workers` forks one: a judgement, not a
measurement (two workers were faster at 1,000 and 3,000 episodes on 2 cores, docs/runs.md); a
short run spends more of its time in finalise, which the parent does alone."""


def default_workers(ctx: RunContext, store: RunStore) -> int:
    """Worker processes when `--workers` is not given: one per core the process may use, up to
    the episodes left / MIN_EPISODES_PER_WORKER."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    left = len(ctx.plan) - len(store.finished_ids())
    return max(1, min(cores or 1, left // MIN_EPISODES_PER_WORKER))


def warm_scoring(ctx: RunContext, store: RunStore) -> None:
    """For a run of KB-worded cases (generated, suite, cohort) with at least
    MIN_EPISODES_PER_WORKER episodes to play: the embeddings of the history wordings that
    scoring's fault look-up meets in most of its cases (`warm_fault_lookup`: read from the
    on-disk cache, or computed once there), so neither this process nor a worker forked from
    it embeds them case by case. 300 generated cases met 1,109 distinct texts, 1,000 met 1,157
    (about 10 ms each); a shorter run is left to embed what it meets."""
    from clinicgym.scoring.patient_fidelity import warm_fault_lookup

    if not isinstance(ctx.cases, LazyCases):
        return
    if len(ctx.plan) - len(store.finished_ids()) >= MIN_EPISODES_PER_WORKER:
        warm_fault_lookup(ctx.kb)


class WorkerDied(RunError):
    """A worker process ended while it had episodes in flight."""


class ProcessPool:
    """`n` worker processes forked from this one once its context is ready (KB, cases, agent
    factories, the question matcher: shared copy-on-write, nothing rebuilt or re-imported, and
    agent objects handed to `clinicgym.evaluate` go too), each playing the episodes it is sent
    concurrently on an event loop of its own. This process stays the only writer of the store:
    a worker sends each finished episode back as its JSON line, and closes the episode's live
    view once told it is stored, so crash safety and resume are the single-process ones."""

    def __init__(self, ctx: RunContext, n: int) -> None:
        self.ctx, self.n = ctx, n
        self.procs: list[Any] = []
        self.conns: list[Any] = []
        self.load = [0] * n
        self.pending: list[dict[str, asyncio.Future[tuple[str, Scored | None]]]] = [
            {} for _ in range(n)
        ]
        self.alive = [True] * n

    async def __aenter__(self) -> ProcessPool:
        import multiprocessing as mp

        fork = mp.get_context("fork")
        matcher_for(self.ctx.kb)  # built once, here, and inherited
        loop = asyncio.get_running_loop()
        for k in range(self.n):
            here, there = fork.Pipe()
            proc = fork.Process(target=worker_main, args=(self.ctx, there, here), daemon=True)
            proc.start()
            there.close()
            self.procs.append(proc)
            self.conns.append(here)
            loop.add_reader(here.fileno(), self._receive, k)
        return self

    async def __aexit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for k, conn in enumerate(self.conns):
            loop.remove_reader(conn.fileno())
            if self.alive[k]:
                with contextlib.suppress(OSError):
                    conn.send(None)  # finish what is in flight, then exit
        for proc in self.procs:
            await asyncio.to_thread(proc.join, 30 if exc[0] is None else 2)
            if proc.is_alive():
                proc.kill()
                await asyncio.to_thread(proc.join, 5)
        for conn in self.conns:
            conn.close()

    def _receive(self, k: int) -> None:
        conn = self.conns[k]
        try:
            while conn.poll():
                episode_id, text, error, scored = conn.recv()
                fut = self.pending[k].pop(episode_id, None)
                if fut is not None and not fut.done():
                    if error:
                        fut.set_exception(RunError(f"worker process {k + 1}: {error}"))
                    else:
                        fut.set_result((text, scored))
        except (EOFError, OSError):  # the worker ended: fail what it held
            self.alive[k] = False
            asyncio.get_running_loop().remove_reader(conn.fileno())
            for fut in self.pending[k].values():
                if not fut.done():
                    fut.set_exception(WorkerDied(f"worker process {k + 1} died"))
            self.pending[k].clear()

    def runner(self, store: RunStore) -> Callable[[PlannedEpisode], Awaitable[Episode]]:
        """`run_one` for `schedule`: send the episode to a live worker (the case's, or the least
        loaded; another if that one dies), store the line that comes back, tell the worker."""

        async def run_one(planned: PlannedEpisode) -> Episode:
            failures: list[str] = []
            for attempt in range(self.ctx.spec.episode_retries + 1):
                live = [k for k in range(self.n) if self.alive[k]]
                if not live:
                    raise RunError("every worker process died: " + "; ".join(failures[-3:]))
                # a case's episodes to one worker (its realised case is cached there), unless
                # that worker is well behind the least loaded one
                k = live[planned.case_index % len(live)]
                least = min(live, key=self.load.__getitem__)
                if self.load[k] > self.load[least] + 2:
                    k = least
                fut: asyncio.Future[tuple[str, Scored | None]]
                fut = asyncio.get_running_loop().create_future()
                self.pending[k][planned.episode_id] = fut
                self.load[k] += 1
                try:
                    self.conns[k].send(dataclasses.asdict(planned))
                    text, scored = await fut
                except (WorkerDied, OSError) as e:
                    failures.append(f"attempt {attempt + 1}: {e}"[:500])
                    continue
                finally:
                    self.load[k] -= 1
                episode = Episode.model_validate_json(text)
                raise_if_bug(episode)  # never stored: the run stops and says so
                await store.commit(episode, line=text)
                keep_scored(self.ctx, planned, scored)
                with contextlib.suppress(OSError):
                    self.conns[k].send(("stored", planned.episode_id))
                return episode
            case_id = self.ctx.cases.ids[planned.case_index]
            return errored_episode(planned, case_id, failures)

        return run_one


def worker_main(ctx: RunContext, conn: Any, parent_end: Any) -> None:
    """A forked worker process: leave the parent's event loop behind, play what the pipe sends
    on a loop of its own."""
    import signal

    from threadpoolctl import threadpool_limits

    parent_end.close()
    asyncio.events._set_running_loop(None)  # forked from inside the parent's running loop
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    gc.freeze()  # the context lives as long as the worker (see frozen_heap)
    with threadpool_limits(limits=1, user_api="blas"):
        asyncio.run(_serve(ctx, conn))


async def _serve(ctx: RunContext, conn: Any) -> None:
    """Play each planned episode the pipe sends as a task; send back (id, JSON, error,
    scoring: `play_and_score`'s, so the parent neither realises nor scores the case again)."""
    import traceback

    from clinicgym.runs.review.live import LiveRecorder

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    lives: dict[str, Any] = {}
    tasks: set[asyncio.Task[None]] = set()

    def readable() -> None:
        try:
            while conn.poll():
                inbox.put_nowait(conn.recv())
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            inbox.put_nowait(None)

    async def one(planned: PlannedEpisode) -> None:
        live = lives[planned.episode_id] = LiveRecorder(
            ctx.spec.out, episode_id=planned.episode_id, agent_id=planned.agent
        )
        try:
            episode, scored = await play_and_score(ctx, planned, live)
            reply = (planned.episode_id, episode.model_dump_json(), None, scored)
        except Exception:
            reply = (planned.episode_id, "", traceback.format_exc()[-3000:], None)
        conn.send(reply)

    loop.add_reader(conn.fileno(), readable)
    try:
        while (msg := await inbox.get()) is not None:
            if isinstance(msg, tuple):  # ("stored", episode id): its live view may go
                live = lives.pop(msg[1], None)
                if live is not None:
                    live.close()
                continue
            task = asyncio.ensure_future(one(PlannedEpisode(**msg)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    finally:
        for live in lives.values():
            live.close()
        await close_context(ctx)


# ---- Ray -----------------------------------------------------------------------------------


def import_ray() -> Any:
    """The `ray` module, or a RunError with the pip line."""
    try:
        import ray
    except ImportError:
        raise RunError(
            f"--executor ray needs Ray, which is not installed; run `{RAY_INSTALL}` "
            "(or use the default --executor local)"
        ) from None
    return ray


def worker_spec(spec: RunSpec) -> RunSpec:
    """The spec as workers see it: paths made absolute (Ray starts workers in a session
    directory of its own), the executor local (a worker plays its episodes itself)."""

    def absolute(p: str | None) -> str | None:
        return str(Path(p).resolve()) if p else p

    return spec.model_copy(
        update={
            "kb_dir": absolute(spec.kb_dir),
            "cohort": absolute(spec.cohort),
            "cases_from": absolute(spec.cases_from),
            "patient_cache": absolute(spec.patient_cache),
            "out": Path(spec.out).resolve(),
            "executor": "local",
        }
    )


class EpisodeWorker:
    """A Ray actor: rebuilds the run's context once (KB, packs, agents, patient) from the spec
    and the driver's cases (none for generated cases: the worker realises each from the spec's
    seed when its episode starts), then plays planned episodes concurrently on its loop."""

    def __init__(self, spec_json: str, cases_json: list[str] | None) -> None:
        from threadpoolctl import threadpool_limits

        from clinicgym.patients.cases.case import Case
        from clinicgym.runs.runner import prepare

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        threadpool_limits(limits=1, user_api="blas")  # see single_threaded_blas
        spec = RunSpec.model_validate_json(spec_json)
        cases = None if cases_json is None else [Case.model_validate_json(c) for c in cases_json]
        self.ctx = prepare(spec, cases=cases)
        matcher_for(self.ctx.kb)
        gc.freeze()  # the context lives as long as the actor (see frozen_heap)

    async def play(self, planned: dict[str, Any]) -> str:
        """One planned episode (with retries) as episode JSON."""
        episode = await play_with_retries(self.ctx, PlannedEpisode(**planned))
        return episode.model_dump_json()

    async def close(self) -> None:
        await close_context(self.ctx)


class RayExecutor:
    """Episodes on Ray actors, stored by the driver as they finish (a crash of the driver loses
    only the episodes in flight; a resume skips every stored one). `address=None` starts a
    private Ray on 127.0.0.1 (no dashboard, usage stats off, a small object store) and stops
    it afterwards (and a reaper stops it if this process is killed: runs/ray_reaper.py);
    'auto' or 'ray://HOST:10001' joins a running cluster."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address = address
        self.workers = workers
        self._reaper: int | None = None
        """The pipe end a private Ray's reaper watches (runs/ray_reaper.py)."""

    def _init(self, ray: Any) -> bool:
        """Connect to Ray; True if this call started it (and so must shut it down)."""
        if ray.is_initialized():
            return False
        if self.address:
            ray.init(address=self.address, log_to_driver=False)
            return True
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # On Linux Ray swaps 127.0.0.1 for the machine's address and listens on every
        # interface, unless its single-machine switch is off: then the GCS, raylet and workers
        # bind and talk on loopback only. The variable reaches the raylet and workers; the
        # constant is what this process reads if it imported ray before the variable was set.
        os.environ.setdefault(RAY_CLUSTER_SWITCH, "0")
        with contextlib.suppress(AttributeError):
            ray._private.ray_constants.ENABLE_RAY_CLUSTER = os.environ[RAY_CLUSTER_SWITCH] != "0"
        from clinicgym.runs.ray_reaper import start_reaper

        self._reaper = start_reaper()  # if this process is killed, Ray's processes follow it
        ray.init(
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            object_store_memory=RAY_OBJECT_STORE_BYTES,
            log_to_driver=False,
        )
        return True

    async def run(
        self, ctx: RunContext, store: RunStore, on_episode: OnEpisode | None = None
    ) -> int:
        ray = import_ray()
        started = self._init(ray)
        try:
            return await self._run(ray, ctx, store, on_episode)
        finally:
            await close_context(ctx)  # the driver's own backends (none were used)
            if started:
                ray.shutdown()
            if self._reaper is not None:  # a clean shutdown: the reaper leaves
                os.close(self._reaper)
                self._reaper = None

    async def _run(
        self, ray: Any, ctx: RunContext, store: RunStore, on_episode: OnEpisode | None
    ) -> int:
        from ray.exceptions import RayActorError, RayError

        cpus = float(ray.cluster_resources().get("CPU", 1))
        n = self.workers or max(1, int(cpus))
        per_actor = math.ceil(ctx.spec.concurrency / n)
        # one CPU each, so Ray spreads them over the nodes; shares of one when asked for more
        actor_cls = ray.remote(num_cpus=min(1.0, cpus / n))(EpisodeWorker).options(
            max_concurrency=per_actor + 1
        )
        spec_json = worker_spec(ctx.spec).model_dump_json()
        # generated, suite and cohort cases travel as the spec (each worker realises its own)
        lazy = isinstance(ctx.cases, LazyCases) and ctx.cases.storable
        cases_ref = ray.put(None if lazy else [c.model_dump_json() for c in ctx.cases])
        actors = [actor_cls.remote(spec_json, cases_ref) for _ in range(n)]
        load = [0] * n
        replaced: list[Any] = []  # dead actors, killed at the end so Ray frees their slots

        async def run_one(planned: PlannedEpisode) -> Episode:
            case_id = ctx.cases.ids[planned.case_index]
            failures: list[str] = []
            for attempt in range(ctx.spec.episode_retries + 1):
                i = min(range(n), key=load.__getitem__)
                load[i] += 1
                actor = actors[i]
                try:
                    text = await actor.play.remote(dataclasses.asdict(planned))
                    episode = Episode.model_validate_json(text)
                    break
                except RayActorError as e:  # the worker died (node lost): replace it, retry
                    failures.append(f"attempt {attempt + 1}: Ray worker died: {e}"[:500])
                    if actors[i] is actor:  # the first of its episodes to notice replaces it
                        actors[i] = actor_cls.remote(spec_json, cases_ref)
                        replaced.append(actor)
                except RayError as e:
                    failures.append(f"attempt {attempt + 1}: Ray task failed: {e}"[:500])
                finally:
                    load[i] -= 1
            else:
                episode = errored_episode(planned, case_id, failures)
            raise_if_bug(episode)  # never stored: the run stops and says so
            await store.commit(episode)
            return episode

        try:
            return await schedule(ctx, store, run_one, on_episode)
        finally:
            for a in actors:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(a.close.remote(), timeout=10)
                ray.kill(a)
            for a in replaced:
                with contextlib.suppress(Exception):
                    ray.kill(a)
