"""Times `make demo`'s run the way a user meets it: the whole `clinicgym run` process with the
Makefile's DEMO_AGENTS and DEMO_ARGS (only `--out` replaced), start-up, play and finalise.

Prints wall and CPU seconds (user, system) and peak RSS of the child, the load average before
and after (the machine is shared: CPU seconds are the steadier figure), SmolLM2's requests and
tokens (prompt computed / served by the prefix cache, completion) from episodes.jsonl, and each
agent's top-1 accuracy with its interval from summary.json. The target (issue 17): within 5
minutes on 2 cores.

    .venv/bin/python bench/demo_time.py [--out /tmp/demo_time] [--code DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clinicgym.runs import layout
from clinicgym.runs.records import read_summary

ROOT = Path(__file__).resolve().parents[1]


def makefile_args(code: Path) -> list[str]:
    """The demo's `clinicgym run` arguments, read from the Makefile's DEMO_AGENTS and DEMO_ARGS
    so the bench times what `make demo` runs; `--out` is left to the caller."""
    found: dict[str, str] = {}
    for line in (code / "Makefile").read_text().splitlines():
        for key in ("DEMO_AGENTS", "DEMO_ARGS"):
            if line.startswith(f"{key} ?="):
                found[key] = line.split("?=", 1)[1].strip()
    args = shlex.split(found["DEMO_AGENTS"]) + shlex.split(found["DEMO_ARGS"])
    if "--out" in args:
        i = args.index("--out")
        del args[i : i + 2]
    return args


def model_usage(run: Path) -> dict[str, int]:
    """Requests and tokens of the model agents (events that carry token counts)."""
    out = {"requests": 0, "prompt_computed": 0, "prompt_cached": 0, "completion": 0}
    with open(run / layout.EPISODES) as f:
        for line in f:
            for ev in json.loads(line)["events"]:
                meta = ev.get("meta") or {}
                if ev["actor"] != "clinician" or "prompt_tokens" not in meta:
                    continue
                out["requests"] += 1
                cached = meta.get("cached_tokens") or 0
                out["prompt_cached"] += cached
                out["prompt_computed"] += (meta.get("prompt_tokens") or 0) - cached
                out["completion"] += meta.get("completion_tokens") or 0
    return out


def main() -> None:
    """Run the demo once in a child process and print its figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help="run directory (default: a temp dir)")
    p.add_argument("--code", type=Path, default=ROOT, help="checkout to time (default: this)")
    a = p.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="demo_time-")) / "run"
    cli = Path(sys.executable).parent / "clinicgym"
    cmd = [str(cli), "run", *makefile_args(a.code), "--out", str(out), "--quiet"]
    env = dict(os.environ)
    if a.code != ROOT:
        env["PYTHONPATH"] = str(a.code.parent)
    print("$", " ".join(cmd[1:]), flush=True)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()[0]
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"wall {wall // 60:.0f}:{wall % 60:04.1f}  user {ru.ru_utime:.0f} s  sys {ru.ru_stime:.0f} s"
    )
    print(f"peak RSS {ru.ru_maxrss / 2**20:.2f} GB  load average {load0:.1f} -> {load1:.1f}")
    u = model_usage(out)
    print(
        f"model requests {u['requests']}, prompt tokens computed {u['prompt_computed']:,} / "
        f"cached {u['prompt_cached']:,}, completion tokens {u['completion']:,}"
    )
    summary = read_summary(layout.RunPaths(out).summary)
    for agent, s in summary.agents.items():
        acc = s.metrics["diagnostic_accuracy"]
        lo, hi = acc["ci95"] or (float("nan"), float("nan"))
        print(f"{agent:>12}  top-1 {acc['mean']:.0%} [{lo:.0%}-{hi:.0%}]  n={acc['n']}")
    print(f"target: 5:00 wall on 2 cores -> {'met' if wall <= 300 else 'missed'}")


if __name__ == "__main__":
    main()
