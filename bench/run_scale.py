"""Runs at scale: 2,000 episodes of a deterministic model through `openai:` against a local
fixed-latency server at concurrency 64, by clinicgym's asyncio executor and, in the same
bench, by a thread-pool runner written like tau2-bench's.

The server (tests/agents/fake_openai.py: stdlib, threaded, TCP_NODELAY, keep-alive) runs in its
own process and answers every request after a fixed latency with a fixed script (questions,
then a diagnosis), so the model is deterministic and its questions repeat across episodes (the
patient's question matcher hits its cache). Each runner runs in its own child process, so its
peak memory is its own. Figures (docs/architecture.md, "Throughput targets"):

* share of ideal: ideal = requests x latency / concurrency, against the server's busy time
  (first request received to last answer sent);
* CPU ms per turn of the runner process (everything: env, patient, agent, HTTP, store);
* peak RSS (VmHWM) and RSS sampled every 10% of the episodes: flat means no growth per episode.

The thread-pool runner is tau2-bench's shape: a `ThreadPoolExecutor(max_workers=concurrency)`,
each worker playing one episode with a blocking HTTP client (httpx.Client, the same 64
connections), results saved after each simulation. tau2-bench re-reads and rewrites its whole
results file after every simulation; `--rewrite` does that too (quadratic: keep the episode
count small with it), by default the thread runner appends, so the comparison isolates the
concurrency model.

`--runner ray` also measures the Ray executor (a private Ray on 127.0.0.1, one actor per core):
its RSS is the whole process tree's (driver, raylet, GCS, workers) and its CPU counts only the
Ray processes reaped at shutdown, so read it as a lower bound.

`--whole N` (repeatable) measures what a user sees instead: the whole `clinicgym run --agent
scripted --cases N` process, start-up, case preparation, play, finalise and all, one episode per
case (the case count is what made memory grow). Figures: peak RSS (the child's ru_maxrss), wall
and CPU seconds, bytes per case of cases.jsonl and per episode of episodes.jsonl. `--code DIR`
runs another checkout of clinicgym (a `git worktree` of an earlier commit: the "before").

    .venv/bin/python bench/run_scale.py [--episodes 2000] [--latency 0.05 --latency 0.5]
    .venv/bin/python bench/run_scale.py --runner async --runner threads --runner ray
    .venv/bin/python bench/run_scale.py --whole 1000 --whole 10000 [--code /tmp/before]
    .venv/bin/python bench/run_scale.py --whole 1000 --pack hipaa-privacy@2 (finalise's
        compliance report too)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from openai_throughput import serve, server_stats, stop, timed_run  # fake server; a timed run

TURNS = 5
CASES = 100


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (or its peak, VmHWM) in MiB, from /proc."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def tree_rss_mb() -> float:
    """RSS of this process and all its descendants (Ray's raylet and workers), in MiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            pages = int((d / "statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
        rss[int(d.name)] = pages
    todo, total = [os.getpid()], 0
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total * os.sysconf("SC_PAGE_SIZE") / 1024**2


class Sampler:
    """RSS at every tenth of the episodes (the executor's per-episode callback); `tree`: of
    the whole process tree (Ray), and the peak of those samples."""

    def __init__(self, total: int, tree: bool = False) -> None:
        self.tree = tree
        self.peak = 0.0
        self.total = total
        self.done = 0
        self.samples: list[tuple[int, float]] = []
        self._lock = threading.Lock()

    def __call__(self, _episode: Any = None) -> None:
        with self._lock:
            self.done += 1
            if self.done % max(1, self.total // 10) == 0 or self.done == self.total:
                mb = tree_rss_mb() if self.tree else rss_mb()
                self.peak = max(self.peak, mb)
                self.samples.append((self.done, round(mb, 1)))


def _spec(url: str, episodes: int, concurrency: int, out: Path) -> Any:
    from clinicgym.runs.spec import RunSpec

    return RunSpec(
        agents=[f"openai:bench@{url}#concurrency={concurrency}"],
        cases=CASES,
        repeats=max(1, episodes // CASES),
        seed=1,
        max_turns=TURNS + 1,
        concurrency=concurrency,
        episode_retries=0,
        out=out,
    )


def run_async(
    url: str, episodes: int, concurrency: int, out: Path, executor: str = "local"
) -> dict[str, Any]:
    """clinicgym's own path: prepare, the local (or Ray) executor, the append-only store."""
    from clinicgym.runs.runner import execute, prepare
    from clinicgym.runs.store import RunStore

    spec = _spec(url, episodes, concurrency, out)
    if executor == "ray":  # a private Ray on 127.0.0.1, one actor per core
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        spec = spec.model_copy(update={"executor": "ray", "ray_workers": os.cpu_count() or 1})
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    sampler = Sampler(len(ctx.plan), tree=executor == "ray")
    cpu = time.process_time()
    try:
        asyncio.run(execute(ctx, store, sampler))
    finally:
        store.close()
    cpu = time.process_time() - cpu
    if executor == "ray":  # the workers' CPU: Ray's processes are reaped at shutdown
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu += kids.ru_utime + kids.ru_stime
    eps = list(store.iter_episodes())
    result = _result(eps, cpu, sampler)
    if executor == "ray":  # sampled over the process tree (Ray workers are processes)
        result["peak_rss_mb"] = round(sampler.peak, 1)
    return result


class BlockingBackend:
    """A chat backend whose `chat` blocks on a shared httpx.Client (what a thread pool runs)."""

    name = "bench"

    def __init__(self, url: str, connections: int) -> None:
        import httpx

        self.model = "bench"
        self.client = httpx.Client(
            base_url=url,
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    async def chat(self, messages: list[Any], tools: Any = None, **params: Any) -> Any:
        from clinicgym.agents.backends.openai import _parse

        body = {"model": self.model, "messages": messages, **params}
        resp = self.client.post("/chat/completions", json=body)  # blocks this worker thread
        resp.raise_for_status()
        return _parse(resp.json(), self.model)

    async def aclose(self) -> None:
        self.client.close()


def run_threads(
    url: str, episodes: int, concurrency: int, out: Path, rewrite: bool
) -> dict[str, Any]:
    """tau2-bench's shape: a thread pool, one blocking episode per worker, save after each."""
    from clinicgym.agents.llm_clinician import LLMClinician
    from clinicgym.envs.consultation import ConsultationEnv
    from clinicgym.envs.episode import Episode
    from clinicgym.runs import layout
    from clinicgym.runs.runner import play_episode, prepare
    from clinicgym.scoring.metrics import episode_reward

    spec = _spec(url, episodes, concurrency, out)
    ctx = prepare(spec)
    out.mkdir(parents=True, exist_ok=True)
    results = out / ("results.json" if rewrite else layout.EPISODES)
    backend = BlockingBackend(url, concurrency)
    lock = threading.Lock()
    sampler = Sampler(len(ctx.plan))
    from clinicgym.patients.patient.matching import matcher_for

    matcher_for(ctx.kb)

    def one(planned: Any) -> Episode:
        case = ctx.cases[planned.case_index]
        env = ConsultationEnv(
            [case],
            kb=ctx.kb,
            max_turns=spec.max_turns,
            end_on_diagnose=spec.end_on_diagnose,
            reward_fn=episode_reward,
        )
        agent = LLMClinician(backend, agent_id=spec.agents[0])
        episode = asyncio.run(play_episode(env, agent, case, planned))
        line = episode.model_dump_json()
        with lock:
            if rewrite:  # as tau2-bench does: read everything back, add one, write it all
                data = json.loads(results.read_text()) if results.exists() else []
                data.append(json.loads(line))
                results.write_text(json.dumps(data))
            else:
                with results.open("a") as fh:
                    fh.write(line + "\n")
        sampler()
        return episode

    from clinicgym.runs.executors import single_threaded_blas

    cpu = time.process_time()
    with single_threaded_blas(), ThreadPoolExecutor(max_workers=concurrency) as pool:
        eps = list(pool.map(one, ctx.plan))  # BLAS at one thread, as the local executor runs
    cpu = time.process_time() - cpu
    backend.client.close()
    return _result(eps, cpu, sampler)


def _result(eps: list[Any], cpu: float, sampler: Sampler) -> dict[str, Any]:
    turns = sum(e.turns for e in eps)
    return {
        "episodes": len(eps),
        "errors": sum(e.status == "error" for e in eps),
        "turns": turns,
        "cpu_ms_per_turn": cpu / max(turns, 1) * 1000,
        "peak_rss_mb": round(rss_mb("VmHWM"), 1),
        "rss_samples": sampler.samples,
    }


# ---- parent: server, children, table ------------------------------------------------------


def measure(
    runner: str, latency: float, episodes: int, concurrency: int, rewrite: bool
) -> dict[str, Any]:
    """One runner in a child process against a fresh server; adds the server's busy time."""
    proc, url = serve(latency, TURNS)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            args = [sys.executable, __file__, "--child", runner, "--url", url]
            args += ["--episodes", str(episodes), "--concurrency", str(concurrency)]
            args += ["--out", str(Path(tmp) / "run")] + (["--rewrite"] if rewrite else [])
            child = subprocess.run(args, capture_output=True, text=True, check=False)
            if child.returncode != 0:
                raise SystemExit(f"{runner} runner failed:\n{child.stderr[-3000:]}")
            result = json.loads(child.stdout.strip().splitlines()[-1])
        stats = server_stats(url)
    finally:
        stop(proc)
    requests = stats["requests"]
    ideal = requests * latency / concurrency
    result.update(
        requests=requests,
        busy_s=stats["busy_s"],
        ideal_s=ideal,
        share=ideal / stats["busy_s"],
        eps_per_min=result["episodes"] / stats["busy_s"] * 60,
    )
    return result


def whole_run(
    cases: int,
    code: Path | None,
    max_turns: int = 4,
    keep: Path | None = None,
    packs: list[str] | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """`clinicgym run --agent scripted --cases N` as a user runs it, in a child process: its
    peak RSS (ru_maxrss from wait4: the largest single process), wall and CPU seconds (worker
    processes included), and the run directory's sizes (`packs`: monitored, so finalise also
    writes the compliance report; `workers`: --workers)."""
    from clinicgym.runs import layout

    with tempfile.TemporaryDirectory() as tmp:
        out = keep or Path(tmp) / "run"
        args = ["--agent", "scripted", "--cases", str(cases), "--max-turns", str(max_turns)]
        args += ["--seed", "1", "--out", str(out), "--quiet"]
        for p in packs or []:
            args += ["--pack", p]
        if workers is not None:
            args += ["--workers", str(workers)]
        wall, usage = timed_run(args, code, Path(tmp))
        sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
        episodes = (out / layout.EPISODES).read_bytes().count(b"\n")
    return {
        "cases": cases,
        "episodes": episodes,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "cpu_ms_per_episode": round(1000 * (usage.ru_utime + usage.ru_stime) / max(episodes, 1)),
        "cases_bytes_per_case": round(sizes.get(layout.CASES, 0) / max(cases, 1)),
        "episodes_bytes_per_episode": round(sizes.get(layout.EPISODES, 0) / max(episodes, 1)),
        "code": str(code) if code else "installed",
    }


def main_whole(
    counts: list[int],
    code: Path | None,
    max_turns: int,
    out: Path | None,
    packs: list[str] | None = None,
    workers: int | None = None,
) -> None:
    """Print (and optionally write) `whole_run` for each case count, with the targets."""
    packed = "".join(f" --pack {p}" for p in packs or [])
    packed += f" --workers {workers}" if workers is not None else ""
    print(
        f"clinicgym run --agent scripted --cases N --max-turns {max_turns}{packed}, whole "
        f"process ({code or 'installed code'})"
    )
    print(
        f"{'cases':>6} {'episodes':>8} {'peak MiB':>9} {'wall s':>7} {'cpu s':>7} "
        f"{'cpu ms/ep':>9} {'B/case':>7} {'B/episode':>9}"
    )
    rows = []
    for n in counts:
        r = whole_run(n, code, max_turns, packs=packs, workers=workers)
        rows.append(r)
        print(
            f"{n:>6} {r['episodes']:>8} {r['peak_rss_mb']:>9.0f} {r['wall_s']:>7.1f} "
            f"{r['cpu_s']:>7.1f} {r['cpu_ms_per_episode']:>9} {r['cases_bytes_per_case']:>7} "
            f"{r['episodes_bytes_per_episode']:>9}",
            flush=True,
        )
    if len(rows) > 1:
        small, big = rows[0], rows[-1]
        growth = big["peak_rss_mb"] / small["peak_rss_mb"] - 1
        print(
            f"peak at {big['cases']} vs {small['cases']}: {growth * 100:+.1f}% (target: within "
            f"10%, under 1024 MiB); cases.jsonl {big['cases_bytes_per_case']} B/case "
            "(target: at most 5,000)"
        )
    if out:
        out.write_text(json.dumps(rows, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, action="append", help="seconds; repeatable")
    ap.add_argument("--runner", action="append", choices=["async", "threads", "ray"])
    ap.add_argument("--rewrite", action="store_true", help="threads: rewrite results each time")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument(
        "--whole", type=int, action="append", help="whole `clinicgym run` of N cases; repeatable"
    )
    ap.add_argument("--code", type=Path, help="--whole: the clinicgym checkout to run")
    ap.add_argument("--max-turns", type=int, default=4, help="--whole: turn budget")
    ap.add_argument("--pack", action="append", help="--whole: policy pack monitored (repeatable)")
    ap.add_argument("--workers", type=int, help="--whole: --workers N (default: the run's)")
    ap.add_argument("--child", choices=["async", "threads", "ray"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.whole:
        main_whole(args.whole, args.code, args.max_turns, args.json, args.pack, args.workers)
        return
    if args.child:
        if args.child in ("async", "ray"):
            executor = "ray" if args.child == "ray" else "local"
            r = run_async(args.url, args.episodes, args.concurrency, args.out, executor)
        else:
            r = run_threads(args.url, args.episodes, args.concurrency, args.out, args.rewrite)
        print(json.dumps(r))
        return
    latencies = args.latency or [0.05, 0.5]
    runners = args.runner or ["async", "threads"]
    print(
        f"{args.episodes} episodes x {TURNS} turns, concurrency {args.concurrency}, bundled KB "
        f"({CASES} cases x {max(1, args.episodes // CASES)} repeats); server in its own process"
    )
    head = (
        f"{'runner':>8} {'latency':>8} {'episodes':>8} {'requests':>8} {'busy s':>7} "
        f"{'ideal s':>7} {'% ideal':>8} {'eps/min':>8} {'cpu ms/turn':>11} {'peak MiB':>9} "
        f"{'errors':>6}  RSS MiB at each 10% of episodes"
    )
    print(head)
    rows = []
    for latency in latencies:
        for runner in runners:
            r = measure(runner, latency, args.episodes, args.concurrency, args.rewrite)
            r.update(runner=runner, latency=latency)
            rows.append(r)
            rss = " ".join(f"{m:.0f}" for _, m in r["rss_samples"])
            print(
                f"{runner:>8} {latency * 1000:>6.0f}ms {r['episodes']:>8} {r['requests']:>8} "
                f"{r['busy_s']:>7.1f} {r['ideal_s']:>7.1f} {r['share'] * 100:>7.0f}% "
                f"{r['eps_per_min']:>8.0f} {r['cpu_ms_per_turn']:>11.2f} "
                f"{r['peak_rss_mb']:>9.0f} {r['errors']:>6}  {rss}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
