"""Cost of multi-modal artefacts: rendering images, showing them in the env, building them.

Figures, each against a baseline measured in the same run (so a busy machine shows as a busy
baseline, not as a slow renderer):

* `render`: median ms to render one chest radiograph or head CT at 128 and 256 pixels, against
  one MiniLM forward pass of a short question (the cost every patient answer pays anyway);
* `order step`: median `env.step("ORDER: chest X-ray")` with `modality="image"` against the same
  step with `modality="text"` (the extra is the picture);
* `build`: median `build_artefacts(case)` against sampling the case it is built for.

`--gallery PATH` also writes a PNG of example studies (matplotlib; for docs and review).

    python bench/artefacts.py [--repeats 200] [--gallery docs/img/artefacts.png]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.patients.cases.artefacts import (
    GENERATORS,
    build_artefacts,
    parse_chest_report,
    parse_head_ct_report,
)
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.patients.patient.encoder import default_encoder

STUDIES = {
    "chest: normal": ("chest_radiograph", "No focal consolidation, effusion or pneumothorax."),
    "chest: right lower lobe consolidation": (
        "chest_radiograph",
        "Consolidation in the right lower lobe.",
    ),
    "chest: left pneumothorax": ("chest_radiograph", "Left-sided pneumothorax, 3 cm rim."),
    "chest: heart failure": (
        "chest_radiograph",
        "Cardiomegaly, bilateral interstitial shadowing and small pleural effusions.",
    ),
    "head CT: normal": ("head_ct", "No intracranial haemorrhage, mass or infarct."),
    "head CT: subarachnoid blood": (
        "head_ct",
        "Hyperdense blood in the basal cisterns and both Sylvian fissures.",
    ),
    "head CT: right frontal haematoma": ("head_ct", "Right frontal intracerebral haemorrhage."),
    "head CT: left MCA infarct": ("head_ct", "Established infarct in the left MCA territory."),
}


def _params(generator: str, report: str, size: int, seed: int = 1) -> dict:
    parse = parse_chest_report if generator == "chest_radiograph" else parse_head_ct_report
    return {"generator": generator, "size": size, "seed": seed, "findings": parse(report)[0]}


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--gallery", type=Path, default=None)
    args = ap.parse_args()
    enc = default_encoder()
    words = iter(range(10**9))
    baseline = _median_ms(lambda: enc._forward([f"Any pain in your chest {next(words)}?"]), 50)
    print(f"baseline: one MiniLM forward pass  {baseline:7.2f} ms")
    for size in (128, 256):
        for name, (gen, report) in STUDIES.items():
            p = _params(gen, report, size)
            ms = _median_ms(lambda p=p, gen=gen: GENERATORS[gen](p), args.repeats)
            print(f"render {size}px {name:40s} {ms:7.2f} ms  ({ms / baseline:5.2f} x baseline)")

    kb = default_kb()
    sampler = CaseSampler(kb, conditions=["community_acquired_pneumonia"])
    case = next(
        c
        for c in (sampler.sample(0, i) for i in range(50))
        if any(f.concept == "chest_xray" and f.abnormal for f in c.facts)
    )
    step = {}
    for modality in ("text", "image"):
        env = ConsultationEnv([case], kb=kb, modality=modality, max_turns=3)

        def order(env=env) -> None:
            env.reset(seed=0)
            t = time.perf_counter()
            env.step("ORDER: chest X-ray")
            order.elapsed = time.perf_counter() - t  # type: ignore[attr-defined]

        times = []
        for _ in range(max(20, args.repeats // 4)):
            order()
            times.append(order.elapsed)  # type: ignore[attr-defined]
        step[modality] = statistics.median(times) * 1000
    print(
        f"order step, text modality   {step['text']:7.2f} ms\n"
        f"order step, image modality  {step['image']:7.2f} ms  "
        f"({step['image'] / step['text']:5.2f} x text)"
    )
    all_cases = CaseSampler(kb)
    idx = iter(range(10**9))
    sample_ms = _median_ms(lambda: all_cases.sample(5, next(idx)), 60)
    built = all_cases.sample(5, 0)
    build_ms = _median_ms(lambda: build_artefacts(built, kb), 60)
    print(
        f"sample one KB case          {sample_ms:7.2f} ms\n"
        f"build its artefacts         {build_ms:7.2f} ms  ({build_ms / sample_ms:5.2f} x sample; "
        f"{len(built.artefacts)} artefacts)"
    )
    if args.gallery:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 4, figsize=(12, 6.4))
        for ax, (name, (gen, report)) in zip(axes.flat, STUDIES.items(), strict=True):
            ax.imshow(GENERATORS[gen](_params(gen, report, 256)), cmap="gray", vmin=0, vmax=255)
            ax.set_title(name, fontsize=9)
            ax.axis("off")
        fig.tight_layout()
        args.gallery.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.gallery, dpi=60)
        print(f"gallery written to {args.gallery}")


if __name__ == "__main__":
    main()
