"""Modality consistency: the same finding shown as text, as a table and as an image, and the
decisions compared.

For each case with a generated picture (a chest X-ray or head CT drawn from its report, see
`patients/cases/artefacts.py`), the agent plays the case three times with the same seed. Its first
turn is taken for it: the study is ordered, so every variant shows the same result at the same
point, and only how it is shown differs:

* `text`: the report, as the env's text modality gives it ("Result: Chest X-ray: ...");
* `table`: the findings drawn in the picture, one row each (finding, side, location, detail),
  as the env's image modality gives it with the picture replaced by the table;
* `image`: the picture alone ("Result: Chest X-ray. Image attached." and the pixels).

The decisions compared are the first-ranked diagnosis at the end (as a KB condition where it
names one) and the next action right after the result (its tool and what the env resolved it to:
`order_test:ct_head`, `ask:fever`, `diagnose`). A case *changed* when any decision differs
between any two variants. Shares carry Wilson intervals; accuracy differences against the text
variant carry Newcombe intervals. Consultations that fail are counted apart, never as changes.

A deterministic agent that reads only the structured result (`info["result"]`, as the scripted
baseline does) changes nothing: the check that the variants show the same finding.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from clinicgym.envs.action import OrderTest
from clinicgym.envs.episode import Episode
from clinicgym.patients.cases.artefacts import IMAGING_GENERATORS, PARSERS
from clinicgym.patients.cases.case import Artefact, Case
from clinicgym.patients.knowledge.kb import KnowledgeBase
from clinicgym.scoring.diagnosis import matches
from clinicgym.scoring.errors import ProbeError
from clinicgym.scoring.probes._play import DEFAULT_MAX_TURNS, AgentFactory, play, top_diagnosis
from clinicgym.scoring.probes.counterfactual import decision
from clinicgym.scoring.stats import newcombe_diff_ci, wilson_ci

Variant = Literal["text", "table", "image"]
VARIANTS: tuple[Variant, ...] = ("text", "table", "image")
ENV_MODALITY = {"text": "text", "table": "image", "image": "image"}
"""The env modality each variant is played in (the table replaces the image's picture)."""
IMAGE_MARKER = ". Image attached."
"""How the env's image modality ends the result line of a picture (envs/consultation.py)."""
FINDING_NAMES = {
    "consolidation": "consolidation",
    "patchy": "patchy opacities",
    "interstitial": "interstitial shadowing",
    "nodule": "nodule or mass",
    "hilar_nodes": "hilar lymphadenopathy",
    "effusion": "pleural effusion",
    "pneumothorax": "pneumothorax",
    "cardiomegaly": "cardiomegaly",
    "widened_mediastinum": "widened mediastinum",
    "hyperinflation": "hyperinflation",
    "sah": "subarachnoid blood",
    "ich": "intracerebral haematoma",
    "subdural": "subdural collection",
    "extradural": "extradural collection",
    "infarct": "infarct",
}
"""Each drawable finding kind as a table names it."""
TABLE_COLUMNS = ("finding", "side", "location", "detail")


class VariantDecision(BaseModel):
    """What the clinician decided when the result was shown one way."""

    diagnosis: str | None
    """The first-ranked diagnosis at the end (a KB condition id where it names one)."""
    next_action: str
    """The action right after the result: tool and resolved target, e.g. 'order_test:ct_head'."""
    correct: bool
    """The first-ranked diagnosis is the case's."""


class ModalityRow(BaseModel):
    """One case played in the three variants."""

    case_id: str
    study: str
    """The artefact shown (e.g. 'a-chest_xray')."""
    findings: list[dict[str, Any]]
    not_drawn: list[str] = []
    """Phrases of the report the picture (and table) do not show."""
    status: Literal["ok", "error"] = "ok"
    error: str | None = None
    decisions: dict[str, VariantDecision] = {}
    diagnosis_changed: bool | None = None
    action_changed: bool | None = None
    changed: bool | None = None


class ModalityProbe(BaseModel):
    """The modality-consistency probe of one agent over a sample of cases."""

    agent: str
    cases: int
    skipped: int = 0
    """Cases without a generated picture to show (never played)."""
    rows: list[ModalityRow] = []
    summary: dict[str, Any] = {}


# ---- the three variants ---------------------------------------------------------------------


def probe_study(case: Case, *, include_normal: bool = False) -> Artefact | None:
    """The case's picture to show: its first generated image with drawn findings (or, with
    `include_normal`, a normal one); None when it has none."""
    images = [
        a
        for a in case.artefacts
        if a.kind == "image" and a.image and a.image.get("generator") != "local_file"
    ]
    drawn = [a for a in images if (a.image or {}).get("findings")]
    if drawn:
        return drawn[0]
    return images[0] if include_normal and images else None


def imaging_conditions(kb: KnowledgeBase) -> list[str]:
    """KB conditions with an imaging result the generators draw findings from (a chest X-ray
    or head CT report with a side, zone or kind they know): the cases worth probing."""
    out = []
    for c in kb.conditions.values():
        for t in c.tests:
            generator = IMAGING_GENERATORS.get(t.id)
            if generator is not None and t.text and PARSERS[generator](t.text)[0]:
                out.append(c.id)
                break
    return out


def finding_rows(artefact: Artefact) -> list[dict[str, str]]:
    """The picture's drawn findings as table rows; a normal picture is one row saying so."""
    rows = []
    for f in (artefact.image or {}).get("findings", []):
        location = f.get("zone") and f"{f['zone']} zone"
        location = location or (f.get("territory") and f"{str(f['territory']).upper()} territory")
        location = location or f.get("site") or ""
        detail = [str(f["size"])] if f.get("size") else []
        detail += ["subtle"] if f.get("subtle") else []
        detail += ["Sylvian fissures"] if f.get("sylvian") else []
        rows.append(
            {
                "finding": FINDING_NAMES.get(str(f["kind"]), str(f["kind"]).replace("_", " ")),
                "side": str(f.get("side") or ""),
                "location": str(location),
                "detail": ", ".join(detail),
            }
        )
    return rows or [{"finding": "no abnormality seen", "side": "", "location": "", "detail": ""}]


def findings_table(artefact: Artefact) -> str:
    """The drawn findings as a pipe table (what the `table` variant shows)."""
    head = "| " + " | ".join(c.capitalize() for c in TABLE_COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|"
    body = ["| " + " | ".join(r[c] for c in TABLE_COLUMNS) + " |" for r in finding_rows(artefact)]
    return "\n".join([head, rule, *body])


def as_table(
    observation: dict[str, Any], info: dict[str, Any], artefact: Artefact
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An image-modality result turned into the table variant: the picture's line ends with
    the findings table instead of 'Image attached.', and no pixels are shown."""
    lines = str(observation.get("text", "")).split("\n")
    at = next((i for i, line in enumerate(lines) if line.endswith(IMAGE_MARKER)), None)
    if at is None:
        raise ProbeError(f"modality: the result shows no picture to tabulate ({lines[:2]})")
    lines[at] = lines[at].removesuffix(IMAGE_MARKER) + "\n" + findings_table(artefact)
    obs = {**observation, "text": "\n".join(lines)}
    if "image" in obs:
        obs["image"] = np.zeros_like(obs["image"])
    shown = {k: v for k, v in info.items() if k != "image"}
    shown["table"] = [*info.get("table", []), *finding_rows(artefact)]
    return obs, shown


class _StudyFirst:
    """Wraps an agent: its first turn orders the study (taken for it); the result is shown to
    it in the variant's form, and from then on it plays the case itself."""

    def __init__(self, inner: Any, study: Artefact, variant: Variant) -> None:
        self.inner = inner
        self.study = study
        self.variant = variant
        self.agent_id = getattr(inner, "agent_id", "agent")
        self._turn = 0

    def read_case(self, case: Case) -> None:
        if hasattr(self.inner, "read_case"):
            self.inner.read_case(case)

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        self._turn = 0
        self.inner.reset(observation, info)

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> Any:
        self._turn += 1
        if self._turn == 1:
            return OrderTest(test=self.study.title)
        if self._turn == 2:
            shown = info.get("result", {}).get("artefacts", [])
            if self.study.id not in shown:
                raise ProbeError(f"modality: ordering '{self.study.title}' showed {shown}")
            if self.variant == "table":
                observation, info = as_table(observation, info, self.study)
        return await self.inner.act(observation, info)


# ---- decisions ------------------------------------------------------------------------------


def next_action(episode: Episode) -> str:
    """The clinician's action after the study's result: its tool and what the env resolved it
    to (the examined system, the test, the question's concept), or 'none' if it never acted."""
    acted = [i for i, e in enumerate(episode.events) if e.actor == "clinician"]
    if len(acted) < 2:
        return "none"
    event = episode.events[acted[1]]
    if event.action is None:
        return "unparseable"
    tool = str(event.action.tool)
    reply = next((e for e in episode.events[acted[1] + 1 :] if e.actor != "clinician"), None)
    result = reply.result if reply is not None and reply.result else {}
    target = result.get("target")
    if tool == "refer":
        target = str(getattr(event.action, "urgency", "")) or None
    if target is None and tool == "ask":
        target = ",".join(str(a.get("concept")) for a in result.get("answers", [])) or None
    return f"{tool}:{target}" if target and tool != "diagnose" else tool


def variant_decision(episode: Episode, case: Case, kb: KnowledgeBase) -> VariantDecision:
    """The decisions of one variant's consultation."""
    top = top_diagnosis(episode)
    return VariantDecision(
        diagnosis=decision(episode, case, kb).diagnosis,
        next_action=next_action(episode),
        correct=top is not None and matches(top, case.diagnosis),
    )


# ---- the probe ------------------------------------------------------------------------------


async def _case(
    factory: AgentFactory,
    case: Case,
    study: Artefact,
    kb: KnowledgeBase,
    *,
    seed: int,
    max_turns: int,
    sem: asyncio.Semaphore,
) -> ModalityRow:
    async def go(variant: Variant) -> Any:
        async with sem:
            return await play(
                factory,
                case,
                kb,
                seed=seed,
                max_turns=max_turns,
                modality=ENV_MODALITY[variant],
                wrap=lambda a: _StudyFirst(a, study, variant),
                label=f"modality {case.id} {variant}",
            )

    played = await asyncio.gather(*(go(v) for v in VARIANTS))
    image = study.image or {}
    row = ModalityRow(
        case_id=case.id,
        study=study.id,
        findings=list(image.get("findings", [])),
        not_drawn=list(image.get("not_drawn", [])),
    )
    failed = next((p for p in played if p.episode is None), None)
    if failed is not None:
        return row.model_copy(update={"status": "error", "error": failed.error})
    decisions = {
        v: variant_decision(p.episode, case, kb) for v, p in zip(VARIANTS, played, strict=True)
    }
    dx = {d.diagnosis for d in decisions.values()}
    act = {d.next_action for d in decisions.values()}
    return row.model_copy(
        update={
            "decisions": decisions,
            "diagnosis_changed": len(dx) > 1,
            "action_changed": len(act) > 1,
            "changed": len(dx) > 1 or len(act) > 1,
        }
    )


async def modality_probe(
    factory: AgentFactory,
    cases: Sequence[Case],
    kb: KnowledgeBase,
    *,
    agent: str = "agent",
    seed: int = 0,
    max_turns: int = DEFAULT_MAX_TURNS,
    concurrency: int = 4,
    include_normal: bool = False,
) -> ModalityProbe:
    """Play every case with a picture as text, table and image; compare the decisions (see the
    module docstring). Cases without a generated picture are skipped and counted."""
    if not cases:
        raise ProbeError("modality: no cases to probe")
    if max_turns < 3:
        raise ProbeError(f"modality: max_turns must be >= 3 (order, then act), got {max_turns}")
    sem = asyncio.Semaphore(concurrency)
    jobs, skipped = [], 0
    for i, case in enumerate(cases):
        study = probe_study(case, include_normal=include_normal)
        if study is None:
            skipped += 1
            continue
        jobs.append(_case(factory, case, study, kb, seed=seed + i, max_turns=max_turns, sem=sem))
    if not jobs:
        raise ProbeError(
            f"modality: none of the {len(cases)} cases has a generated picture with drawn "
            "findings (chest X-ray or head CT); pass include_normal=True to use normal ones"
        )
    rows = list(await asyncio.gather(*jobs))
    out = ModalityProbe(agent=agent, cases=len(cases), skipped=skipped, rows=rows)
    out.summary = summarise_modality(rows)
    return out


def _share(k: int, n: int) -> dict[str, Any]:
    """k of n with its Wilson interval (None where n is 0)."""
    if n == 0:
        return {"k": 0, "n": 0, "share": None, "ci": None}
    lo, hi = wilson_ci(k, n)
    return {"k": k, "n": n, "share": k / n, "ci": [lo, hi]}


def summarise_modality(rows: Sequence[ModalityRow]) -> dict[str, Any]:
    """Shares of cases changed (any decision, the diagnosis, the next action; and per pair of
    variants) with Wilson intervals; accuracy per variant (Wilson) and against the text variant
    (Newcombe). Failed cases are counted in `errors` only."""
    ok = [r for r in rows if r.status == "ok"]
    n = len(ok)
    out: dict[str, Any] = {
        "cases": len(rows),
        "scored": n,
        "errors": len(rows) - n,
        "changed": _share(sum(bool(r.changed) for r in ok), n),
        "diagnosis_changed": _share(sum(bool(r.diagnosis_changed) for r in ok), n),
        "action_changed": _share(sum(bool(r.action_changed) for r in ok), n),
        "pairs": {},
        "accuracy": {},
        "accuracy_vs_text": {},
    }
    for a, b in itertools.combinations(VARIANTS, 2):
        k = sum(
            r.decisions[a].diagnosis != r.decisions[b].diagnosis
            or r.decisions[a].next_action != r.decisions[b].next_action
            for r in ok
        )
        out["pairs"][f"{a}-{b}"] = _share(k, n)
    correct = {v: sum(r.decisions[v].correct for r in ok) for v in VARIANTS}
    for v in VARIANTS:
        out["accuracy"][v] = _share(correct[v], n)
        if v != "text" and n:
            lo, hi = newcombe_diff_ci(correct["text"], n, correct[v], n)
            d = (correct[v] - correct["text"]) / n
            out["accuracy_vs_text"][v] = {"diff": d, "ci": [lo, hi]}
    return out


def format_summary(probe: ModalityProbe) -> str:
    """The summary as a few aligned lines (for the bench script and the command line)."""
    s = probe.summary

    def line(label: str, share: dict[str, Any]) -> str:
        if share["share"] is None:
            return f"{label:<28} -"
        lo, hi = share["ci"]
        count = f"{share['k']:>3}/{share['n']:<3}"
        return f"{label:<28} {count} {share['share']:6.1%}  [{lo:.1%}, {hi:.1%}]"

    lines = [
        f"{probe.agent}: {s['scored']} cases scored, {s['errors']} failed, "
        f"{probe.skipped} without a picture",
        line("changed (any decision)", s["changed"]),
        line("  top-1 diagnosis changed", s["diagnosis_changed"]),
        line("  next action changed", s["action_changed"]),
        *(line(f"  {pair} differ", share) for pair, share in s["pairs"].items()),
        *(line(f"accuracy, {v}", share) for v, share in s["accuracy"].items()),
    ]
    for v, d in s["accuracy_vs_text"].items():
        lo, hi = d["ci"]
        lines.append(f"{'accuracy, ' + v + ' - text':<28} {d['diff']:+.1%}  [{lo:+.1%}, {hi:+.1%}]")
    return "\n".join(lines)
