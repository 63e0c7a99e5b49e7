"""Re-scoring stored episodes under a new pack version versus running them.

Runs `--episodes` episodes (default 1,000: the scripted, oracle, unsafe and random baselines on
the bundled KB, the scenario suite, every pack at version 1 monitoring live), timing the run.
Then re-scores every stored transcript under every pack's version 2 twice: in a fresh
`clinicgym rescore` process (cold: imports, MiniLM loading and reading the run included) and
in this process (warm caches). The ratios are run time / re-score time. The baselines are the
cheapest possible "models" (no LLM call), so the ratio is a floor: a run against a real model
server spends seconds per turn where re-scoring spends nothing.

    python bench/rescore.py [--episodes 1000] [--out DIR] [--reuse]

`--reuse` skips the run when DIR holds one this script made (its run time, measured then, is
read from DIR/bench-run.json) and measures the re-scoring again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clinicgym.policies import load_packs
from clinicgym.policies.library import available
from clinicgym.policies.rescore import rescore
from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore

AGENTS = ["scripted", "oracle", "unsafe", "random"]


def main() -> None:
    """Run, re-score, and print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None, help="run directory (default: a temp dir)")
    ap.add_argument("--reuse", action="store_true", help="re-score the run already in --out")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-rescore-")) / "run"
    saved = out / "bench-run.json"
    reuse = args.reuse and saved.exists()
    if out.exists() and not reuse:
        shutil.rmtree(out)
    v1 = [f"{p}@1" for p in available()]
    v2 = [f"{p}@2" for p in available()]
    spec = RunSpec(
        agents=AGENTS,
        cases=max(1, args.episodes // len(AGENTS)),
        seed=0,
        out=out,
        policy_packs=v1,
        scenarios=["suite"],
    )

    t0 = time.perf_counter()
    ctx = prepare(spec)
    if reuse:  # read the stored run as it is (the KB may have changed since: see the errors)
        store = RunStore(out)
        ctx.cases = store.cases()
        ran = json.loads(saved.read_text())["run_seconds"]
    else:
        store = RunStore.open(spec, ctx.cases, ctx.kb.version)
        asyncio.run(execute(ctx, store))
        store.close()
        finalise(ctx, store)
        ran = time.perf_counter() - t0
        saved.write_text(json.dumps({"run_seconds": ran}))
    episodes = list(store.iter_episodes())
    steps = sum(e.turns for e in episodes)
    print(
        f"run{' (timed when it was made)' if reuse else ''}: {len(episodes)} episodes, {steps} clinician turns, {ran:.1f} s "
        f"({ran / len(episodes) * 1000:.0f} ms per episode), packs {', '.join(v1)}"
    )

    cmd = [sys.executable, "-m", "clinicgym.runs.cli", "rescore", str(out), "-q"]
    cmd += [x for ref in v2 for x in ("-p", ref)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    cold = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, file=sys.stderr)
        raise SystemExit("the rescore command failed")
    print(
        f"rescore, fresh process (`clinicgym rescore ... -p <pack>@2`): {cold:.1f} s "
        f"({cold / len(episodes) * 1000:.1f} ms per episode)"
    )

    packs = load_packs(v2)
    cases = {c.id: c for c in ctx.cases}
    t0 = time.perf_counter()
    verdicts = asyncio.run(rescore(episodes, cases, packs, ctx.kb, spec.scenarios))
    warm = time.perf_counter() - t0
    errors = sum(v.status == "error" for v in verdicts)
    print(
        f"rescore, in process (warm caches): {warm:.1f} s "
        f"({warm / len(episodes) * 1000:.1f} ms per episode); {errors} episodes undecided"
    )
    print(f"run time / rescore time: {ran / cold:.1f}x (fresh process), {ran / warm:.1f}x (warm)")
    print(f"target: rescoring faster than running -> {'PASS' if cold < ran else 'FAIL'}")
    print(f"run directory: {out}")


if __name__ == "__main__":
    main()
