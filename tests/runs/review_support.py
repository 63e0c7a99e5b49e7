"""Shared by the review tests: small real runs (with policy violations and a model that writes
HTML into its turns), and a form reader for the review pages."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path
from typing import Any

import numpy as np

from clinicgym.agents.registry import agent_builder
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.cohorts.cohort import (
    CohortManifest,
    CohortSchema,
    SourceInfo,
    row_ids,
    write_cohort,
)
from clinicgym.patients.knowledge.kb import load_kb
from clinicgym.runs.review.annotation import Annotation, AnnotationContext, event_hash
from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore

SMALL_KB = Path(__file__).parents[1] / "data" / "kb_small"
PACKS = ["hipaa-privacy", "ai-transparency"]
SCRIPT = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned = 2">'


class XssAgent:
    """A model under test whose words carry markup: a transcript is untrusted input."""

    agent_id = "xss"

    def __init__(self) -> None:
        self.turn = 0

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        self.turn = 0

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> str:
        self.turn += 1
        if self.turn == 1:
            return f"{SCRIPT} Do you have a cough?"
        if self.turn == 2:
            return f"Any fever? {IMG}"
        return "DIAGNOSIS: <b>pneumonia</b>"


@agent_builder("xss")
def _xss(rest: str, kb: Any, options: Any) -> Any:
    return XssAgent


QUESTIONS = (
    "Do you have a cough?",
    "Any fever?",
    "Does light bother your eyes?",
    "Do you feel sick?",
    "Does it sting when you pass urine?",
)


class AskerAgent:
    """Asks the same few questions of every patient, then names a diagnosis (its patients'
    answers are what a clinician reviews)."""

    agent_id = "asker"

    def __init__(self) -> None:
        self.turn = 0

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        self.turn = 0

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> str:
        self.turn += 1
        if self.turn <= len(QUESTIONS):
            return QUESTIONS[self.turn - 1]
        return "DIAGNOSIS: migraine"


@agent_builder("asker")
def _asker(rest: str, kb: Any, options: Any) -> Any:
    return AskerAgent


def make_run(out: Path, agents: list[str], cases: int = 3, **kw: Any) -> Path:
    """A finished run directory on the small KB, monitored by the privacy and transparency
    packs unless `policy_packs` says otherwise."""
    kw.setdefault("policy_packs", PACKS)
    spec = RunSpec(agents=agents, cases=cases, kb_dir=str(SMALL_KB), out=out, **kw)
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    finalise(ctx, store)
    return out


def make_cohort(root: Path, rows: int = 8, seed: int = 5) -> Path:
    """A cohort directory on the small KB built straight from KB records (no synthesizer)."""
    kb = load_kb(SMALL_KB)
    schema = CohortSchema.for_kb(kb)
    sampler = CaseSampler(kb)
    records = [sampler.sample_record(np.random.default_rng([seed, i])) for i in range(rows * 2)]
    table = schema.table(records[:rows], row_ids("p", rows))
    source = schema.table(records, row_ids("s", rows * 2))
    write_cohort(
        root,
        manifest=CohortManifest(
            cohort_id=root.name,
            created="2026-01-01T00:00:00Z",
            clinicgym_version="0",
            sdv_version="0",
            kb_version=kb.version,
            kb_dir=str(SMALL_KB.resolve()),
            source=SourceInfo(kind="kb", rows=rows * 2, kb_seed=seed),
            synthesizer={"name": "gaussian_copula"},
            seed=seed,
            split={"train": rows, "holdout": rows},
            plan={},
            counts={"kept": rows},
        ),
        table=table,
        train=source.iloc[:rows],
        holdout=source.iloc[rows:],
    )
    return root


def annotation(
    label: Any, *, who: str = "dr.a", index: int = 3, episode: str = "scripted|c-1|r0", **kw: Any
) -> Annotation:
    """An annotation on a made-up run (for the database tests)."""
    return Annotation(
        annotator=who,
        run_id="run1",
        run_hash="a" * 64,
        episode_id=episode,
        episode_hash=kw.pop("episode_hash", "b" * 64),
        case_id="c-1",
        case_hash="c" * 64,
        event_index=-1 if label.kind == "episode" else index,
        event_hash="" if label.kind == "episode" else event_hash(1, "patient", "Yes, a cough."),
        label=label,
        context=AnnotationContext(agent_id="scripted", condition_id="x", turn=1),
        **kw,
    )


def own_address() -> str | None:
    """A non-loopback IPv4 address of this machine (finding it sends no packet)."""
    for probe in (("192.0.2.1", 9), ("10.255.255.255", 9)):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect(probe)  # UDP: picks the source address, sends nothing
            except OSError:
                continue
            addr = s.getsockname()[0]
            if not addr.startswith("127.") and addr != "0.0.0.0":
                return addr
    return None


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def episode_keys(html: str, run_id: str) -> list[str]:
    return list(dict.fromkeys(re.findall(rf"/runs/{run_id}/episodes/([0-9a-f]{{20}})", html)))


def forms(html: str, kind: str) -> list[dict[str, str]]:
    """The hidden fields of each annotation form of a kind on an episode page."""
    out = []
    for block in html.split('<form class="annotate')[1:]:
        block = block.split("</form>")[0]
        fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', block))
        if fields.get("kind") == kind:
            fields["_facts"] = ",".join(re.findall(r'<option value="(f\d+)">', block))
            out.append(fields)
    return out
