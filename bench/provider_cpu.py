"""Client CPU per request of the HTTP providers: `openai/`, `anthropic/` and `google/` specs.

The three share one aiohttp client (agents/backends/openai.py); Anthropic's Messages API and
Google's generateContent add a translation of the conversation and of the answer. This measures
what that translation costs: `tests/agents/fake_openai.py` runs in its own process (it answers
all three JSON shapes after a fixed latency) and each backend sends the same 13-message
conversation N times at concurrency 64; the figure is this process's CPU time per request.
Rounds alternate the backends, since the machine is shared and noisy.

    .venv/bin/python bench/provider_cpu.py [--requests 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "agents" / "fake_openai.py"
SPECS = ("openai/gpt-4o", "anthropic/claude-x", "google/gemini-x")
MESSAGES = [{"role": "system", "content": "You are a careful clinician. " * 30}] + [
    {"role": "user" if i % 2 == 0 else "assistant", "content": f"Turn {i}: any fever or cough?"}
    for i in range(12)
]


async def _measure(spec: str, n: int) -> tuple[float, float]:
    """(ms of CPU per request, wall seconds) for `n` requests through `spec`."""
    from clinicgym.agents.backends.registry import make_backend

    backend = make_backend(spec + "#concurrency=64")
    await backend.chat(MESSAGES, max_tokens=16)  # opens the session
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(backend.chat(MESSAGES, max_tokens=16) for _ in range(n)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await backend.aclose()
    return cpu / n * 1000, wall


def main() -> None:
    """Start the server, point every provider's base-URL variable at it, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--latency", type=float, default=0.01)
    args = ap.parse_args()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--latency", str(args.latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    url = proc.stdout.readline().strip()
    try:
        os.environ["OPENAI_BASE_URL"] = url
        os.environ["ANTHROPIC_BASE_URL"] = os.environ["GOOGLE_GEMINI_BASE_URL"] = url[:-3]
        for r in range(args.rounds):
            for spec in SPECS:
                ms, wall = asyncio.run(_measure(spec, args.requests))
                print(f"round {r}: {spec:20s} {ms:.3f} ms CPU/request ({wall:.1f} s wall)")
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
