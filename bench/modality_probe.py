"""The modality-consistency probe on imaging cases: figures for docs/multimodal.md.

1. The scripted baseline, which reads the structured result and never the text or pixels: it
   must change no decision between text, table and image. A real check: the script exits 1 if
   it changes any (the variants would then not show the same finding).
2. A loopback model (tests/agents/fake_openai.py `finding_reader`: diagnoses from finding words
   and guesses from a bare picture) over HTTP, once with `#vision=1` (the picture is sent as an
   image part) and once text-only (it gets "Image attached." and nothing else); the requests
   that carried a picture are counted from what the server received.
3. The cost of sending a picture: PNG encoding of one 128 px image against rendering it, in the
   same run.

    .venv/bin/python bench/modality_probe.py [--cases 30] [--seed 0] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import runpy
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from clinicgym.agents.images import encode_png
from clinicgym.agents.registry import make_agent_factory
from clinicgym.patients.cases.artefacts import render
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.runs.modality_probe import imaging_cases
from clinicgym.scoring.probes.modality import format_summary, modality_probe, probe_study

ROOT = Path(__file__).parents[1]


def _fake_openai() -> Any:
    """The loopback server of the tests (one definition for tests and figures)."""
    return SimpleNamespace(**runpy.run_path(str(ROOT / "tests" / "agents" / "fake_openai.py")))


def _probe(spec: str, cases: list, kb: Any, args: argparse.Namespace) -> Any:
    factory: Any = make_agent_factory(spec, kb)

    async def go() -> Any:
        try:
            return await modality_probe(
                factory, cases, kb, agent=spec, seed=args.seed, concurrency=args.concurrency
            )
        finally:
            if hasattr(factory, "aclose"):
                await factory.aclose()

    t0 = time.perf_counter()
    result = asyncio.run(go())
    print(format_summary(result))
    print(f"  ({time.perf_counter() - t0:.1f} s wall)\n")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    kb = default_kb()
    cases = imaging_cases(kb, args.cases, args.seed)
    print(f"{len(cases)} cases of {len({c.diagnosis.condition_id for c in cases})} conditions\n")

    scripted = _probe("scripted", cases, kb, args)
    consistent = scripted.summary["changed"]["k"] == 0 and scripted.summary["errors"] == 0

    fake = _fake_openai()
    with fake.FakeOpenAIServer(fake.finding_reader()) as srv:
        for spec in ("openai:reader@{url}#vision=1", "openai:reader@{url}"):
            start = len(srv.requests)
            _probe(spec.format(url=srv.url), cases, kb, args)
            sent = sum(bool(srv.images(i)) for i in range(start, len(srv.requests)))
            print(f"  requests: {len(srv.requests) - start}, with a picture: {sent}\n")

    study = next(s for s in (probe_study(c) for c in cases) if s is not None)
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        pixels = render(study)
    t_render = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(n):
        png = encode_png(pixels)
    t_png = (time.perf_counter() - t0) / n
    print(f"render 128 px {study.id:<16} {t_render * 1e3:6.2f} ms")
    print(
        f"encode PNG ({len(png):,} bytes)     {t_png * 1e3:6.2f} ms  "
        f"({t_png / t_render:.2f} x render; base64 adds a third)"
    )
    if not consistent:
        print("FAIL: the scripted baseline changed a decision between variants", file=sys.stderr)
        return 1
    print("scripted: no decision changed between text, table and image (as it must)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
