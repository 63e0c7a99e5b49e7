"""Patient answer latency: the embedded (grounded) patient, and SmolLM2 wording behind the guard.

* embedded, cold: every question new to the encoder cache (paraphrases from the question bank,
  each asked once of a fresh case), so each answer pays a MiniLM forward pass;
* embedded, warm: the same questions again (the encoder cache hit, as when agents repeat
  questions across episodes);
* LLM-worded: the bundled SmolLM2-135M-Instruct words each answer (greedy, up to 64 tokens),
  the answer guard checks it, one rewrite, then the template; answers are awaited one at a
  time (no batching across episodes), so this is the per-answer latency a single episode sees.

Baseline in the same run: one MiniLM forward pass. Prints median and p95 in milliseconds.

    python bench/patient_latency.py [--questions 200] [--llm-questions 20] [--no-llm]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np

from clinicgym.patients.cases.case import Persona
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.patients.patient.encoder import default_encoder
from clinicgym.patients.patient.guard import AnswerGuard
from clinicgym.patients.patient.llm_patient import LLMWordedPatient
from clinicgym.patients.patient.matching import matcher_for
from clinicgym.patients.patient.patient import GroundedPatient
from clinicgym.patients.patient.question_bank import load_bank


def _stats(ms: list[float]) -> str:
    return f"median {statistics.median(ms):7.2f} ms, p95 {float(np.percentile(ms, 95)):7.2f} ms (n={len(ms)})"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--llm-questions", type=int, default=20)
    ap.add_argument("--no-llm", action="store_true")
    args = ap.parse_args()
    kb = default_kb()
    matcher = matcher_for(kb)
    enc = default_encoder()
    bank = load_bank(kb)
    questions = [q for qs in bank.findings.values() for q in qs][: args.questions]
    cases = CaseSampler(kb).sample_many(20, seed=0)
    base = []
    for i in range(100):
        t0 = time.perf_counter()
        enc.encode([f"baseline question number {i} about symptoms?"])
        base.append((time.perf_counter() - t0) * 1000)
    print(f"baseline, one MiniLM forward pass: {_stats(base)}")
    for label in ("cold", "warm"):
        ms = []
        for i, q in enumerate(questions):
            case = cases[i % len(cases)].model_copy(update={"persona": Persona()})
            p = GroundedPatient(case, matcher)
            t0 = time.perf_counter()
            p.answer(q)
            ms.append((time.perf_counter() - t0) * 1000)
        print(f"embedded patient, {label:4s}:         {_stats(ms)}")
    if args.no_llm:
        return
    from clinicgym.agents.backends.registry import make_backend

    t0 = time.perf_counter()
    backend = make_backend("hf:smollm2")
    print(f"SmolLM2 load: {time.perf_counter() - t0:.1f} s")

    async def chat(messages: list[dict[str, str]]) -> str:
        return (await backend.chat(messages, max_tokens=64, temperature=0.0)).text

    async def run() -> tuple[list[float], int, int]:
        ms, calls, replaced = [], 0, 0
        for i, q in enumerate(questions[: args.llm_questions]):
            case = cases[i % len(cases)].model_copy(update={"persona": Persona()})
            p = LLMWordedPatient(
                GroundedPatient(case, matcher), chat, AnswerGuard(case, matcher, kb)
            )
            t0 = time.perf_counter()
            r = await p.aanswer(q)
            ms.append((time.perf_counter() - t0) * 1000)
            calls += p.calls
            replaced += r.guarded
        await backend.aclose()
        return ms, calls, replaced

    ms, calls, replaced = asyncio.run(run())
    print(
        f"LLM-worded (SmolLM2) patient:      {_stats(ms)}; {calls} model calls, {replaced} fell back to the template"
    )


if __name__ == "__main__":
    main()
