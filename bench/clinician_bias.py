"""Clinician-side bias probe of a model, with what it cost: `clinicgym probe-bias` plus CPU time.

Plays the model (default: the embedded SmolLM2, `hf:smollm2`) on N cases without a bias and
with each of the 13 biases of agents/prompts/clinician_biases.yaml (same cases, same seeds),
prints per bias top-1 accuracy (Wilson 95%), the difference from no bias (Newcombe 95%), the
paired changes and, for cognitive biases, how often the planted look-alike came first; writes
the record with the wall and CPU seconds (this process: model load, patients and generation).

    python bench/clinician_bias.py --cases 6 --max-turns 8 --out docs/clinician_bias.json
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rich.console import Console

from clinicgym.runs.bias_probe import bias_table, run_bias_probe


def cpu_s() -> float:
    """User plus system CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    """Run the probe, print its table, write the JSON with the cost."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agent", default="hf:smollm2")
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases-from", type=Path, default=None)
    ap.add_argument("--bias", action="append", default=None, help="repeatable; default all")
    ap.add_argument("--max-turns", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path("clinician_bias.json"))
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a shared 2-core machine, 2 threads spin-wait and cost 5x CPU)",
    )
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t0, c0 = time.perf_counter(), cpu_s()
    result = run_bias_probe(
        args.agent,
        biases=args.bias,
        cases=args.cases,
        seed=args.seed,
        cases_from=args.cases_from,
        max_turns=args.max_turns,
        concurrency=args.concurrency,
        quiet=False,
    )
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    result.settings.update(
        max_turns=args.max_turns,
        torch_threads=args.threads,
        wall_s=round(wall, 1),
        cpu_s=round(cpu, 1),
        load_average=[round(x, 1) for x in os.getloadavg()],
    )
    result.write(args.out)
    console = Console(width=140)
    console.print(bias_table(result))
    episodes = len(result.episodes)
    console.print(
        f"{episodes} consultations ({len(result.cases)} cases x {len(result.arms)} arms), "
        f"max {args.max_turns} turns: {wall:.0f} s wall, {cpu:.0f} s CPU "
        f"({cpu / max(episodes, 1):.1f} CPU s per consultation); written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
