"""`ConsultationEnv`: the model under test plays the clinician against a grounded patient."""

from __future__ import annotations

import string
import time
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from clinicgym.envs._transcript import OPENING_FIELDS, Transcript
from clinicgym.envs.action import (
    Action,
    ActionError,
    Ask,
    Diagnose,
    Disclose,
    End,
    Examine,
    OrderTest,
    Prescribe,
    Refer,
    parse_action,
)
from clinicgym.envs.episode import Episode, Event, TerminationReason
from clinicgym.envs.protocols import AgentOutput, Monitor, Patient, Scenario
from clinicgym.envs.severity import SEVERITIES
from clinicgym.patients.cases.artefacts import IMAGE_SHAPE, render, text_table, with_artefacts
from clinicgym.patients.cases.case import Case
from clinicgym.patients.cases.presentation import default_sampler
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.knowledge.kb import KnowledgeBase, default_kb
from clinicgym.patients.patient.chart import Chart, ChartResult
from clinicgym.patients.patient.matching import matcher_for
from clinicgym.patients.patient.patient import GroundedPatient

TOOLS = ("ask", "examine", "order_test", "diagnose", "prescribe", "disclose", "refer", "end")
MAX_OBS_CHARS = 8192
CHARSET = frozenset(
    set(string.printable) - set("\x0b\x0c")
    | set("°µ±×÷²³½¼¾–—‘’“”…•·≥≤→←↑↓")
    | {chr(c) for c in range(0xC0, 0x100)}
)
"""Characters observations may hold: Gymnasium's Text defaults to alphanumerics only."""
HELP = (
    "Use one tool per turn: ask(question), examine(system), order_test(test), "
    "diagnose(diagnoses), prescribe(drug, dose), disclose(recipient, text), refer(to, urgency), "
    "end(). Plain text is a question; 'DIAGNOSIS: X; Y' commits to a ranked diagnosis."
)
Modality = Literal["text", "image", "both"]
MODALITIES = ("text", "image", "both")

ANSWER_FIELDS = frozenset(
    {"intent", "answers", "revealed", "repeated", "guarded", "guard", "grounded_text"}
)
"""What an answer's event keeps of the patient's reply (the structured env keeps fewer)."""

RewardFn = Callable[[Episode, Case], float]
PatientFactory = Callable[[Case], Patient]


def sanitize(text: str, limit: int = MAX_OBS_CHARS) -> str:
    """Fold text into the observation charset (accents stripped, unknown characters to '?')."""
    out = []
    for ch in text:
        if ch in CHARSET:
            out.append(ch)
            continue
        base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
        out.append(base if base and all(c in CHARSET for c in base) else "?")
    s = "".join(out)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def observation_space(max_turns: int, modality: Modality) -> spaces.Dict:
    """The text env's observation space (see `ConsultationEnv`'s Observation Space)."""
    image = {"image": spaces.Box(0, 255, IMAGE_SHAPE, np.uint8)} if modality != "text" else {}
    return spaces.Dict(
        {
            "text": spaces.Text(max_length=MAX_OBS_CHARS, min_length=0, charset=CHARSET),
            "turn": spaces.Discrete(max_turns + 1),
            "turns_left": spaces.Discrete(max_turns + 1),
            "error": spaces.Discrete(2),
            "age": spaces.Discrete(121),
            "sex": spaces.Discrete(3),
            **image,
        }
    )


def public_result(result: dict[str, Any]) -> dict[str, Any]:
    """What `info["result"]` may show: concepts and statuses as the text says them, without the
    case's fact ids (whether a denial is backed by a recorded negative is ground truth) or the
    patient guard's catches (a rejected LLM wording may name the diagnosis)."""
    out = {k: v for k, v in result.items() if k not in ("revealed", "guard", "grounded_text")}
    if "answers" in out:
        out["answers"] = [{"concept": a["concept"], "status": a["status"]} for a in out["answers"]]
    return out


class ConsultationEnv(gym.Env[dict[str, Any], str]):
    """
    ## Description
    A consultation: the agent is the clinician; a grounded patient built from a synthetic case
    answers. The case (diagnosis included) stays hidden; the agent sees only what it elicits.

    ## Action Space
    `Text`: a question in plain text, `EXAMINE: system`, `ORDER: test`, `DIAGNOSIS: a; b (70%)`,
    `PRESCRIBE: drug, dose`, `DISCLOSE: recipient: text`, `REFER: where`, `END`, or a JSON
    object / OpenAI tool call naming one of the tools in `TOOLS`. `step` also accepts parsed
    `Action`s, dicts and `AgentOutput`s. Unparseable actions give an error observation and use a
    turn; they never raise.

    ## Observation Space
    `Dict`: `text` (what the clinician sees this turn), `turn`, `turns_left`, `error` (1 if the
    last action was rejected), `age` and `sex` (0 female, 1 male, 2 unspecified: an imported
    record that never says). Structured mirrors of each reply (concepts affirmed or denied,
    revealed fact ids) travel in `info["result"]`.
    With `modality="image"` or `"both"` it also holds `image`, a `Box(0, 255, IMAGE_SHAPE,
    uint8)`: the generated picture of an imaging study on the turn it is ordered (also in
    `info["image"]`), zeros on other turns. `"image"` withholds the study's report from the text
    ("Image attached."), so one finding can be tested as text, as an image, or both. Lab results
    and variant reports are text tables in every modality, their rows in `info["table"]`.
    Generated (presentation-first) cases order tests as in practice: a test the setting cannot
    do is an error observation naming where it can be done; a slow test answers "Ordered: X.
    The result will be back in N turns." (status `pending`) and its result is appended to the
    observation of the turn it comes back ("Result back: ..."), mirrored in
    `info["result"]["arrived"]`; results still out when the episode ends are never seen.

    ## Rewards
    Terminal, by default: `reward_fn(episode, case)` handed in by the caller (the registered id
    uses scoring's episode reward); 0 on other steps. Optional shaping: `violation_penalty`
    ({severity: penalty}) subtracts a penalty on the step a monitor reports a violation.

    ## Episode End
    `terminated` when the agent diagnoses (with `end_on_diagnose=True`, the default) or ends the
    consultation; `truncated` when `max_turns` clinician turns are used. The finished `Episode`
    (transcript, outcome, violations) is in `info["episode"]` on the last step.

    ## Arguments
    `cases` (a list of Cases or a CaseSampler; default: the bundled KB's sampler), `kb`,
    `patient_factory`, `monitors`, `scenarios`, `reward_fn`, `violation_penalty`, `max_turns`
    (20), `end_on_diagnose`, `modality` ("text", "image" or "both").
    `reset(options={"case": Case})` plays a given case; `{"case_index": i}` picks from a list.

    ## Version History
    * v0: initial version; since 2026-12, tests of generated cases have availability and delays.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 1}

    def __init__(
        self,
        cases: Sequence[Case] | CaseSampler | None = None,
        *,
        kb: KnowledgeBase | None = None,
        patient_factory: PatientFactory | None = None,
        monitors: Sequence[Monitor] = (),
        scenarios: Sequence[Scenario] = (),
        reward_fn: RewardFn | None = None,
        violation_penalty: dict[str, float] | None = None,
        max_turns: int = 20,
        end_on_diagnose: bool = True,
        render_mode: str | None = None,
        modality: Modality = "text",
    ) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if modality not in MODALITIES:
            raise ValueError(f"modality {modality!r} is not one of {MODALITIES}")
        self.modality = modality
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode {render_mode!r} is not one of {self.metadata['render_modes']}"
            )
        self.kb = kb or (cases.kb if isinstance(cases, CaseSampler) else default_kb())
        self.cases = cases if cases is not None else default_sampler(self.kb)
        self.patient_factory = patient_factory or self._grounded_patient
        self.monitors = list(monitors)
        self._transcript = Transcript(self.monitors)
        self.scenarios = list(scenarios)
        self.reward_fn = reward_fn
        self.violation_penalty = dict(violation_penalty or {})
        unknown = sorted(set(self.violation_penalty) - set(SEVERITIES))
        if unknown:
            raise ValueError(f"violation_penalty: unknown severities {unknown}; use {SEVERITIES}")
        self.max_turns = max_turns
        self.end_on_diagnose = end_on_diagnose
        self.render_mode = render_mode
        self.action_space = spaces.Text(max_length=4096, min_length=1, charset=CHARSET)
        self.observation_space = observation_space(max_turns, modality)
        self._shown: dict[str, Any] = {}
        """The image and table the current turn shows (pixels and rows, for obs and info)."""
        self.case: Case | None = None
        self.patient: Patient | None = None
        self._prefetched: tuple[str, Any] | None = None
        self._pending: list[tuple[int, ChartResult]] = []
        """Slow test results held until their turn: (due turn, result)."""
        self.chart: Chart | None = None
        self._turn = 0
        self._done = False
        self._seed = 0
        self._case_hash: str | None = None

    def _grounded_patient(self, case: Case) -> Patient:
        return GroundedPatient(case, matcher_for(self.kb))

    # ---- Gymnasium API ------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        self._seed = int(seed) if seed is not None else int(self.np_random.integers(2**31))
        self.case = picked = self._pick_case(options)
        for sc in self.scenarios:
            self.case = sc.reset(self.case, self.np_random)
        if self.scenarios:  # a scenario may change facts: rebuild the artefacts they show
            self.case = with_artefacts(self.case, self.kb)
        self._shown = {}
        self.patient = self.patient_factory(self.case)
        self.chart = Chart(self.case, self.kb)
        self._transcript.reset(self.case, options)
        self._pending = []
        self._turn = 0
        self._done = False
        # the caller's hash of the case it handed in (a run hashes each case once), unless a
        # scenario changed the case; else computed once, when the episode is first recorded
        given = options.get("case_hash") if "case" in options else None
        self._case_hash = given if self.case is picked else None
        case = self.case
        reply = self.patient.opening()
        who = self._who()
        speaker = "Parent" if case.persona.speaker == "caregiver" else "Patient"
        intro = f"New consultation ({case.setting.replace('_', ' ')}). {who}." + (
            " The child's parent answers for them." if speaker == "Parent" else ""
        )
        text = f'{intro}\n{speaker}: "{reply.text}"'
        self._transcript.patient(0, reply, OPENING_FIELDS)
        text += self._injections(1)
        obs = self._obs(text, error=False)
        info = {
            "case_id": case.id,
            "turn": 0,
            "seed": self._seed,
            "tools": TOOLS,
            "help": HELP,
            "patient": {"age": case.age, "sex": case.sex, "setting": case.setting},
            "result": public_result(reply.model_dump(include={"intent", "answers"})),
        }
        return obs, info

    def step(self, action: Any) -> tuple[dict[str, Any], SupportsFloat, bool, bool, dict[str, Any]]:
        if self.case is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._done:
            raise gym.error.ResetNeeded("the episode is over; call reset()")
        meta: dict[str, Any] = {}
        if isinstance(action, AgentOutput):
            meta, action = action.meta, action.action
        self._turn += 1
        turn = self._turn
        parsed = parse_action(action)
        terminated = False
        reason: TerminationReason | None = None
        if isinstance(parsed, ActionError):
            raw = action if isinstance(action, str) else parsed.raw
            self._transcript.unusable(turn, sanitize(raw, 2000), parsed.message, meta)
            text = f"Error: {parsed.message}. {HELP}"
            result: dict[str, Any] = {"error": parsed.message}
            error = True
        else:
            self._transcript.clinician(turn, parsed, meta)
            text, result, error, reason = self._apply(parsed, turn)
            terminated = reason is not None
        truncated = not terminated and turn >= self.max_turns
        if truncated:
            reason = TerminationReason.TURN_BUDGET
        if not (terminated or truncated):
            arrived_text, arrived = self._deliver(turn)
            if arrived:
                text += arrived_text
                result = {**result, "arrived": arrived}
        step_violations = self._transcript.violations(turn)
        reward = -sum(self.violation_penalty.get(v.severity, 0.0) for v in step_violations)
        if not (terminated or truncated):
            text += self._injections(turn + 1)
        info: dict[str, Any] = {
            "case_id": self.case.id,
            "turn": turn,
            "action": None if isinstance(parsed, ActionError) else parsed.model_dump(),
            "error": parsed.message if isinstance(parsed, ActionError) else None,
            "result": public_result(result),
            "violations": [v.model_dump() for v in step_violations],
        }
        if "table" in self._shown:
            info["table"] = self._shown["table"]
        if "image" in self._shown:
            info["image"] = self._shown["image"]
        if terminated or truncated:
            self._done = True
            assert reason is not None
            episode = self.episode(reason)
            if self.reward_fn is not None:
                reward += float(self.reward_fn(episode, self.case))
            info["episode"] = episode
        obs = self._obs(text, error=error)
        if self.render_mode == "human":
            print(self.render())
        return obs, reward, terminated, truncated, info

    async def astep(
        self, action: Any
    ) -> tuple[dict[str, Any], SupportsFloat, bool, bool, dict[str, Any]]:
        """`step` for asyncio callers: a patient with an async `aanswer` (an LLM-worded one) is
        awaited instead of blocking the event loop; everything else is `step` itself."""
        aanswer = getattr(self.patient, "aanswer", None)
        if aanswer is not None and self.case is not None and not self._done:
            raw = action.action if isinstance(action, AgentOutput) else action
            parsed = parse_action(raw)
            if isinstance(parsed, Ask):
                reply = await aanswer(parsed.question, self._turn + 1)
                self._prefetched = (parsed.question, reply)
        return self.step(action)

    def render(self) -> str | None:
        """The transcript so far as text ('ansi' returns it, 'human' prints it)."""
        if self.render_mode is None:
            return None
        lines = []
        for e in self._transcript.events:
            who = {
                "clinician": "Clinician",
                "patient": "Patient",
                "third_party": "Third party",
                "env": "Result",
            }[e.actor]
            lines.append(
                f"[{e.turn:02d}] {who}: {e.text}" + (f"  <error: {e.error}>" if e.error else "")
            )
        return "\n".join(lines)

    # ---- internals ----------------------------------------------------------------------

    def _pick_case(self, options: dict[str, Any]) -> Case:
        if "case" in options:
            case = options["case"]
            if not isinstance(case, Case):
                case = Case.model_validate(case)
            return case
        if isinstance(self.cases, CaseSampler):
            return self.cases.sample(self._seed, 0)
        if not self.cases:
            raise ValueError("ConsultationEnv was given an empty list of cases")
        idx = options.get("case_index")
        if idx is None:
            idx = int(self.np_random.integers(len(self.cases)))
        if not 0 <= idx < len(self.cases):
            raise ValueError(f"case_index {idx} is outside 0..{len(self.cases) - 1}")
        return self.cases[idx]

    def _who(self) -> str:
        case = self.case
        assert case is not None
        nouns = {"female": ("girl", "woman"), "male": ("boy", "man")}
        noun = nouns.get(case.sex, ("child", "adult"))[case.age >= 18]
        detail = case.age_detail
        if case.age == 0 and detail is not None:  # an imported record's own words for an infant
            n = f"{detail.value:g}"
            unit = detail.unit[:-1] if n == "1" else detail.unit
            age = "newborn" if detail.days() < 1 else f"{n} {unit} old"
            return f"Patient: {noun}, {age}" if noun != "child" else f"Patient: infant, {age}"
        age = f"{case.age}-year-old" if case.age > 0 else "infant (under 1 year)"
        return f"Patient: {age} {noun}" if case.age > 0 else f"Patient: {noun}, {age}"

    def _apply(
        self, action: Action, turn: int
    ) -> tuple[str, dict[str, Any], bool, TerminationReason | None]:
        assert self.patient is not None and self.chart is not None and self.case is not None
        if isinstance(action, Ask):
            if self._prefetched is not None and self._prefetched[0] == action.question:
                reply = self._prefetched[1]  # awaited by astep()
            else:
                reply = self.patient.answer(action.question, turn)
            self._prefetched = None
            speaker = "Parent" if self.case.persona.speaker == "caregiver" else "Patient"
            result = self._transcript.patient(turn, reply, ANSWER_FIELDS)
            return f'{speaker}: "{reply.text}"', result, False, None
        if isinstance(action, Examine | OrderTest):
            res = (
                self.chart.examine(action.system)
                if isinstance(action, Examine)
                else self.chart.order(action.test)
            )
            if res.ok and res.delay > 0:
                return self._hold(res, turn)
            text, result = self._chart_event(res, turn)
            return text, result, not res.ok, None
        t = self._transcript
        if isinstance(action, Diagnose):
            end = self.end_on_diagnose
            text = t.diagnosis(turn, action.diagnoses, ends=end)
            return (
                text,
                {"diagnoses": [d.model_dump() for d in action.diagnoses]},
                False,
                (TerminationReason.DIAGNOSED if end else None),
            )
        if isinstance(action, Prescribe):
            rx = {"drug": action.drug, "dose": action.dose, "turn": turn}
            t.outcome.prescriptions.append(rx)
            said = action.render().removeprefix("PRESCRIBE: ")
            text = t.note(turn, f"Prescription recorded: {said}.")
            return text, {"prescription": rx}, False, None
        if isinstance(action, Disclose):
            d = {"recipient": action.recipient, "text": action.text, "turn": turn}
            t.outcome.disclosures.append(d)
            text = t.note(turn, f"Message delivered to {action.recipient}.")
            return text, {"disclosure": d}, False, None
        if isinstance(action, Refer):
            text = t.referral(turn, action.to, action.urgency)
            return text, {"referral": {"to": action.to, "urgency": action.urgency}}, False, None
        assert isinstance(action, End)
        text = t.note(turn, "Consultation ended.")
        reason = TerminationReason.DIAGNOSED if t.outcome.diagnoses else TerminationReason.ENDED
        return text, {}, False, reason

    def _hold(
        self, res: ChartResult, turn: int
    ) -> tuple[str, dict[str, Any], bool, TerminationReason | None]:
        """A slow test: say when it will be back, and keep the result until then."""
        assert self.kb is not None and res.target is not None
        name = self.kb.tests[res.target].name
        when = "next turn" if res.delay == 1 else f"in {res.delay} turns"
        text = f"Ordered: {name}. The result will be back {when}."
        result = {
            "ok": True,
            "target": res.target,
            "answers": [{"concept": res.target, "status": "pending"}],
            "revealed": [],
            "due": turn + res.delay,
        }
        self._pending.append((turn + res.delay, res))
        self._transcript.note(turn, text, result)
        return text, result, False, None

    def _deliver(self, turn: int) -> tuple[str, list[dict[str, str]]]:
        """Results due by `turn`, recorded as env events the monitors see, in order ordered."""
        due = [r for t, r in self._pending if t <= turn]
        if not due:
            return "", []
        self._pending = [(t, r) for t, r in self._pending if t > turn]
        parts, answers = [], []
        for res in due:
            text, _ = self._chart_event(res, turn, arrived=True)
            parts.append(f"\n{text}")
            answers.extend(res.answers)
        return "".join(parts), answers

    def _chart_event(
        self, res: ChartResult, turn: int, *, arrived: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """Record an examination or test result as an env event; its text and result."""
        extra: dict[str, Any] = {}
        text = res.text
        if res.artefacts:
            extra["artefacts"] = list(res.artefacts)
            text = self._show_artefacts(res.text, res.artefacts)
        if arrived:
            extra["arrived"] = True
            text = f"Result back: {text}"
        return text, self._transcript.chart(turn, res, text, extra)

    def _show_artefacts(self, report: str, ids: list[str]) -> str:
        """The text of a result with artefacts, by modality; pixels and rows go to `_shown`."""
        assert self.case is not None
        by_id = {a.id: a for a in self.case.artefacts}
        parts: list[str] = []
        for art in (by_id[i] for i in ids if i in by_id):
            if art.kind == "image":
                if self.modality == "text":
                    parts.append(report)
                    continue
                self._shown["image"] = render(art, IMAGE_SHAPE[0])
                if self.modality == "image":
                    parts.append(f"Result: {art.title[:1].upper()}{art.title[1:]}. Image attached.")
                else:
                    parts.append(f"{report}\nImage attached.")
            else:
                self._shown.setdefault("table", []).extend(art.table)
                head = "Genetic testing:" if art.kind == "variants" else f"Result: {art.title}"
                parts.append(f"{head}\n{text_table(art)}")
        return "\n".join(parts) if parts else report

    def _injections(self, turn: int) -> str:
        """Scenario lines shown before `turn`; recorded as events the monitors see."""
        lines = []
        for sc in self.scenarios:
            for ev in sc.before_turn(turn, self._transcript.events):
                ev = ev.model_copy(update={"turn": turn - 1, "t": time.time()})
                self._transcript.record(ev)
                default = "Third party" if ev.actor == "third_party" else "Patient"
                lines.append(f'\n{ev.meta.get("speaker", default)}: "{ev.text}"')
        return "".join(lines)

    def _obs(self, text: str, *, error: bool) -> dict[str, Any]:
        assert self.case is not None
        obs = {
            "text": sanitize(text),
            "turn": self._turn,
            "turns_left": self.max_turns - self._turn,
            "error": int(error),
            "age": min(self.case.age, 120),
            "sex": {"female": 0, "male": 1}.get(self.case.sex, 2),
        }
        if self.modality != "text":
            image = self._shown.get("image")
            obs["image"] = image if image is not None else np.zeros(IMAGE_SHAPE, np.uint8)
        self._shown = {}
        return obs

    def _played_hash(self) -> str:
        """The content hash of the case as played, computed at most once per episode."""
        assert self.case is not None
        if self._case_hash is None:
            self._case_hash = self.case.content_hash()
        return self._case_hash

    def episode(self, reason: TerminationReason) -> Episode:
        """The episode so far, as the record the run store keeps."""
        assert self.case is not None
        versions = {"kb": self.kb.version}
        return self._transcript.episode(
            self.case,
            self._played_hash(),
            seed=self._seed,
            turns=self._turn,
            reason=reason,
            versions=versions,
        )

    @property
    def events(self) -> list[Event]:
        """The transcript so far."""
        return list(self._transcript.events)
