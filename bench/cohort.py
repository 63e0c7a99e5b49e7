"""Bench: generating and realising N synthetic cases, as a ratio to SDV's own sampling time.

One GaussianCopula (or --synthesizer) fit on a KB seed, then, in the same process and run:

  sdv      SDV's own `sample(N)` with our constraints (the baseline)
  generate our KB-checked sampling into the plan: SDV draws (N plus the rows the KB rejects),
           normalising, KB rules, exact-copy check
  decode   rows -> records, column by column (CohortSchema.decode)
  realise  records -> a CaseTable: each case's synthetic PHI, persona and PGx results drawn
           (patients/cases/realise.py); what is left is deterministic wording
  read     every Case built from the table (facts worded and validated, artefacts): what an
           episode pays for its own case, here paid for all N

Prints seconds, rows/s and each stage as a ratio to `sdv`. The target: realisation (decode +
realise) adds no more than 2x to sampling. Reading all N Cases is printed too, per case and in
total, so nothing is hidden. The machine is shared, so run it more than once and read the
ratios (measured in one process, back to back), not the absolute times.

    .venv/bin/python bench/cohort.py --n 10000 --seed-rows 2000
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed-rows", type=int, default=2_000)
    ap.add_argument("--synthesizer", default="gaussian_copula")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kb", default=None, help="KB directory (default: the bundled KB)")
    args = ap.parse_args()

    import numpy as np

    from clinicgym.patients.cases.realise import realise, realise_draws
    from clinicgym.patients.cases.sampler import CaseSampler
    from clinicgym.patients.cohorts.cohort import CohortSchema
    from clinicgym.patients.cohorts.synthesis import (
        CohortSynthesizer,
        SynthesizerConfig,
        generate,
        plan_sampling,
    )
    from clinicgym.patients.knowledge.kb import default_kb, load_kb
    from clinicgym.patients.knowledge.uniforms import uniform_rows

    kb = load_kb(args.kb) if args.kb else default_kb()
    schema = CohortSchema.for_kb(kb)
    sampler = CaseSampler(kb)
    t0 = time.perf_counter()
    seed_records = [
        sampler.sample_record(np.random.default_rng([args.seed, i])) for i in range(args.seed_rows)
    ]
    seed = schema.table(seed_records)
    t_seed = time.perf_counter() - t0
    config = SynthesizerConfig(name=args.synthesizer, epochs=args.epochs)
    t0 = time.perf_counter()
    synth = CohortSynthesizer(schema, config).fit(seed)
    t_fit = time.perf_counter() - t0
    print(
        f"KB {kb.version}: {len(kb.conditions)} conditions, {len(schema.columns)} columns; "
        f"seed {args.seed_rows} rows in {t_seed:.1f} s; {args.synthesizer} fit {t_fit:.1f} s"
    )

    synth.sample(200, 99)  # warm-up: first-call costs (imports, caches) are not sampling
    t0 = time.perf_counter()
    raw = synth.sample(args.n, args.seed)
    t_sdv = time.perf_counter() - t0
    assert len(raw) == args.n

    plan = plan_sampling(args.n, seed, schema)
    t0 = time.perf_counter()
    table, stats = generate(synth, plan, seed=args.seed, train=seed)
    t_gen = time.perf_counter() - t0

    t0 = time.perf_counter()
    filled: Counter = Counter()
    records = schema.decode(table, args.seed, filled=filled)
    t_decode = time.perf_counter() - t0

    t0 = time.perf_counter()
    ids = [f"b-{i}" for i in range(len(records))]
    draws = uniform_rows(args.seed, 1, 0, len(records), realise_draws())
    cases = realise(records, ids, draws)
    t_realise = time.perf_counter() - t0

    t0 = time.perf_counter()
    facts = 0  # cases are counted and dropped: 10,000 Cases with artefacts do not fit in RAM
    for case in cases:
        facts += len(case.facts)
    t_read = time.perf_counter() - t0
    facts /= len(cases)

    def line(name: str, secs: float, what: str) -> None:
        print(
            f"  {name:<22} {secs:8.2f} s  {args.n / secs:9.0f} rows/s  {secs / t_sdv:6.2f}x sdv   {what}"
        )

    print(f"{args.n} rows:")
    line("sdv sample", t_sdv, "SDV's own sampling, with our constraints (baseline)")
    line(
        "generate (KB-checked)",
        t_gen,
        f"drew {stats.drawn}, rejected {sum(stats.rejected.values())}, copies {stats.exact_copies}",
    )
    line("  of which SDV draws", stats.sample_seconds, "")
    line(
        "  of which KB checks", stats.check_seconds, "normalise, KB rules, exact-copy hashes, cells"
    )
    line("decode to records", t_decode, f"KB-filled cells {dict(filled) or 0}")
    line("realise (CaseTable)", t_realise, "PHI, persona, PGx drawn per case")
    line(
        "read every Case",
        t_read,
        f"{facts:.0f} facts per case, {t_read / args.n * 1000:.2f} ms a case (paid per episode)",
    )
    real = t_decode + t_realise
    print(
        f"  realisation (decode + realise): {real:.2f} s = {real / t_sdv:.2f}x SDV sampling "
        f"(target <= 2x)\n"
        f"  generate + realisation: {t_gen + real:.2f} s = {(t_gen + real) / t_sdv:.2f}x; "
        f"with every Case read: {(t_gen + real + t_read) / t_sdv:.2f}x"
    )


if __name__ == "__main__":
    main()
