"""`StructuredConsultationEnv`: the consultation as discrete actions and a numeric observation.

For classic RL (PPO and friends), fast tests and millions of steps. It plays the same KB cases
as the text env, with the same answers: each case is compiled once into small arrays (what the
patient affirms or denies, which facts it holds back until asked twice, the examination and test
results of its chart), and those arrays are the patient replay cache every later episode on the
case reads. The compilation follows the grounded patient's and the chart's rules, and a test
holds it to `GroundedPatient.answer_concept` and `Chart` answer for answer. No sentence model and
no pydantic record on the hot path; `record=True` (implied by monitors) also drives the real
`GroundedPatient` and `Chart`, writes the transcript as `Event`s the monitors see and returns the
`Episode` that scoring reads, at the text env's speed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from clinicgym.envs._transcript import OPENING_FIELDS, Transcript
from clinicgym.envs.action import (
    Action,
    Ask,
    Diagnose,
    Examine,
    OrderTest,
    RankedDiagnosis,
    Refer,
)
from clinicgym.envs.episode import Episode, Event, TerminationReason
from clinicgym.envs.protocols import Monitor, Patient
from clinicgym.patients.cases.case import Case
from clinicgym.patients.cases.presentation import default_sampler
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.knowledge.bands import ENCODED_AGE_BANDS, SETTINGS
from clinicgym.patients.knowledge.kb import EXAM_SYSTEMS, KnowledgeBase, default_kb
from clinicgym.patients.patient.chart import SYSTEM_ALIASES, Chart

GENETIC_TEST = "genetic_testing"
DEFAULT_SUITE_SIZE = 2000
"""Cases in the default training suite (KB sampler, `suite_seed`): drawn lazily, then cached."""
CACHE_SIZE = 8192
"""Compiled cases kept in a replay cache (about 10 KB each)."""
_STATUS = {1.0: "affirmed", -1.0: "denied", 0.0: "unknown"}
ANSWER_FIELDS = frozenset({"intent", "answers", "revealed", "repeated"})
"""What an answer's event keeps of the patient's reply (no guard: this patient is not worded)."""


class StepReward(Protocol):
    """The reward the env is handed (scoring's `ConsultationReward` fits): per-step shaping from
    the answers a step gave and the monitors' violations, then a terminal score."""

    def reset(self, case: Case, opening: Iterable[tuple[str, str]] = ()) -> None: ...

    def step(
        self,
        answers: Iterable[tuple[str, str]] = (),
        severities: Iterable[str] = (),
        *,
        last: bool = False,
    ) -> float: ...

    def terminal(self, guesses: Sequence[str], turns: int, case: Case) -> Any:
        """An object with a `total` float and an `as_dict()`."""
        ...


# ---- the catalogue: actions and observation layout over one KB ------------------------------


class Catalogue:
    """Action ids and observation slots for one KB (built once per KB version)."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self.ask = sorted(f.id for f in kb.findings.values() if f.category != "exam")
        self.exam = sorted(f.id for f in kb.findings.values() if f.category == "exam")
        self.systems = ("vitals", *EXAM_SYSTEMS)
        self.vitals = sorted(kb.vitals)
        self.tests = sorted(kb.tests)
        self.genes = sorted({g.gene for c in kb.conditions.values() for g in c.genetics})
        self.refer = sorted(
            {(c.escalation.to, c.escalation.level) for c in kb.conditions.values() if c.escalation}
        )
        self.conditions = sorted(kb.conditions)
        self.ask_index = {f: i for i, f in enumerate(self.ask)}
        self.exam_index = {f: i for i, f in enumerate(self.exam)}
        self.test_index = {t: i for i, t in enumerate(self.tests)}
        self.condition_index = {c: i for i, c in enumerate(self.conditions)}
        self.exam_by_system: dict[str, np.ndarray] = {
            s: np.array(
                [i for i, f in enumerate(self.exam) if kb.findings[f].system == s], dtype=np.intp
            )
            for s in EXAM_SYSTEMS
        }
        # action ranges
        a = 0
        self.a_ask = a
        a += len(self.ask)
        self.a_exam = a
        a += len(self.systems)
        self.a_test = a
        a += len(self.tests) + 1  # + genetic testing
        self.a_refer = a
        a += len(self.refer)
        self.a_diagnose = a
        a += len(self.conditions)
        self.n_actions = a
        # observation slots
        o = 0
        self.o_hist = slice(o, o := o + len(self.ask))
        self.o_asked = slice(o, o := o + len(self.ask))
        self.o_exam = slice(o, o := o + len(self.exam))
        self.o_systems = slice(o, o := o + len(self.systems))
        self.o_vitals = slice(o, o := o + len(self.vitals))
        self.o_tests = slice(o, o := o + len(self.tests))
        self.o_genes = slice(o, o := o + len(self.genes) + 1)  # + genetic testing done
        self.o_refer = slice(o, o := o + len(self.refer))
        self.o_demo = slice(o, o := o + 2 + len(ENCODED_AGE_BANDS) + len(SETTINGS))
        self.o_turn = o
        self.n_obs = o + 1
        self.names = self._action_names()

    def _action_names(self) -> list[str]:
        names = [f"ask:{f}" for f in self.ask]
        names += [f"examine:{s}" for s in self.systems]
        names += [f"order:{t}" for t in self.tests] + [f"order:{GENETIC_TEST}"]
        names += [f"refer:{to} ({level})" for to, level in self.refer]
        names += [f"diagnose:{c}" for c in self.conditions]
        return names

    def feature_names(self) -> list[str]:
        """One name per observation slot, in order."""
        out = [f"finding:{f}" for f in self.ask] + [f"asked:{f}" for f in self.ask]
        out += [f"exam:{f}" for f in self.exam] + [f"examined:{s}" for s in self.systems]
        out += [f"vital:{v}" for v in self.vitals] + [f"test:{t}" for t in self.tests]
        out += [f"gene:{g}" for g in self.genes] + [f"ordered:{GENETIC_TEST}"]
        out += [f"referred:{to} ({level})" for to, level in self.refer]
        out += ["age/100", "male"] + [f"age:{lo}-{hi}" for lo, hi in ENCODED_AGE_BANDS]
        out += [f"setting:{s}" for s in SETTINGS] + ["turn/max_turns"]
        return out

    def encode(self, action: Action | str) -> int | None:
        """The action id of a text-env action (the scripted baseline's output), or None if it has
        no structured counterpart. Asks match a finding id or its KB question word for word;
        diagnoses use the first-ranked entry (a condition id, name or synonym)."""
        if isinstance(action, str):
            return self.names.index(action) if action in self.names else None
        kb = self.kb
        if isinstance(action, Ask):
            fid = self._questions().get(action.question.strip(), action.question.strip())
            i = self.ask_index.get(fid)
            return None if i is None else self.a_ask + i
        if isinstance(action, Examine):
            q = action.system.strip().lower().replace(" ", "_")
            s = q if q in self.systems else SYSTEM_ALIASES.get(action.system.strip().lower())
            return None if s is None else self.a_exam + self.systems.index(s)
        if isinstance(action, OrderTest):
            q = action.test.strip().lower()
            if q.startswith("genetic"):
                return self.a_test + len(self.tests)
            for tid, t in kb.tests.items():
                if q in (tid, t.name.lower(), *(s.lower() for s in t.synonyms)):
                    return self.a_test + self.test_index[tid]
            return None
        if isinstance(action, Refer):
            for i, (to, level) in enumerate(self.refer):
                if to.lower() in action.to.lower() and level == action.urgency:
                    return self.a_refer + i
            return None
        if isinstance(action, Diagnose):
            return self._diagnosis_action(action.diagnoses[0].name)
        return None

    def _diagnosis_action(self, name: str) -> int | None:
        q = name.strip().lower()
        for cid, c in self.kb.conditions.items():
            if q in (cid, c.name.lower(), c.icd10.lower(), *(s.lower() for s in c.synonyms)):
                return self.a_diagnose + self.condition_index[cid]
        return None

    def _questions(self) -> dict[str, str]:
        q = getattr(self, "_q", None)
        if q is None:
            q = self._q = {f.question: f.id for f in self.kb.findings.values() if f.question}
        return q


_CATALOGUES: dict[str, Catalogue] = {}


def catalogue_for(kb: KnowledgeBase) -> Catalogue:
    """The shared `Catalogue` of a KB (cached by KB version)."""
    c = _CATALOGUES.get(kb.version)
    if c is None:
        c = _CATALOGUES[kb.version] = Catalogue(kb)
    return c


# ---- one compiled case: the patient replay cache -------------------------------------------


@dataclass
class CompiledCase:
    """A case as arrays over the catalogue: every answer the patient and chart can give."""

    case: Case
    hist: np.ndarray
    """Per askable finding: +1 affirmed, -1 denied, 0 unknown (open-world records only)."""
    reluctant: np.ndarray
    """Per askable finding: held back the first time it is asked (persona)."""
    exam: np.ndarray
    """Per exam finding: +1 found, -1 not found when its system is examined."""
    exam_answers: dict[str, list[dict[str, str]]]
    """System -> the chart's structured answers (as `Chart.examine` gives them)."""
    vitals: np.ndarray
    """Per vital sign: +1 abnormal, -1 normal, 0 not recorded."""
    vital_answers: list[dict[str, str]]
    tests: np.ndarray
    """Per KB test: +1 abnormal, -1 normal, 0 not on this chart."""
    genes: np.ndarray
    """Per KB gene: +1 variant found, -1 none (after genetic testing)."""
    opening: list[int]
    """Askable findings the patient states before the first turn (complaint, volunteered)."""
    opening_answers: list[tuple[str, str]]
    demo: np.ndarray
    """Age/100, male, age band one-hot, setting one-hot."""
    fact_ids: dict[str, str] = field(default_factory=dict)
    """Concept -> fact id (first fact per concept), for the revealed-fact record."""


def compile_case(case: Case, cat: Catalogue) -> CompiledCase:
    """Compile a case over the catalogue with the grounded patient's and the chart's rules."""
    by_concept = case.facts_by_concept()
    hist = np.zeros(len(cat.ask), dtype=np.float32)
    reluctant = np.zeros(len(cat.ask), dtype=bool)
    held = set(case.persona.reluctant)
    for i, fid in enumerate(cat.ask):
        facts = by_concept.get(fid)
        if not facts:
            hist[i] = -1.0 if case.closed_world else 0.0
            continue
        f = facts[0]
        hist[i] = 1.0 if f.present else -1.0
        reluctant[i] = f.present and f.id in held
    exam = np.full(len(cat.exam), -1.0, dtype=np.float32)
    exam_answers: dict[str, list[dict[str, str]]] = {s: [] for s in EXAM_SYSTEMS}
    vitals = np.zeros(len(cat.vitals), dtype=np.float32)
    vital_answers: list[dict[str, str]] = []
    tests = np.zeros(len(cat.tests), dtype=np.float32)
    genes = np.full(len(cat.genes), -1.0, dtype=np.float32)
    vital_index = {v: i for i, v in enumerate(cat.vitals)}
    gene_index = {g: i for i, g in enumerate(cat.genes)}
    for f in case.facts:
        if f.category == "exam" and f.system in exam_answers:
            status = "affirmed" if f.present else "denied"
            exam_answers[f.system].append({"concept": f.concept, "status": status})
            if f.present and f.concept in cat.exam_index:
                exam[cat.exam_index[f.concept]] = 1.0
        elif f.category == "vital":
            vital_answers.append(
                {"concept": f.concept, "status": "abnormal" if f.abnormal else "normal"}
            )
            if f.concept in vital_index:
                vitals[vital_index[f.concept]] = 1.0 if f.abnormal else -1.0
        elif f.category == "genomics":
            gene = f.concept.removeprefix("gene.")
            if gene in gene_index:
                genes[gene_index[gene]] = 1.0
        elif f.how_revealed == "order" and f.concept in cat.test_index:
            tests[cat.test_index[f.concept]] = 1.0 if f.abnormal else -1.0
    said = [f for f in case.facts if f.category == "chief_complaint"]
    volunteered = set(case.persona.volunteer)
    said += [f for f in case.facts if f.id in volunteered]
    opening = sorted({cat.ask_index[f.concept] for f in said if f.concept in cat.ask_index})
    return CompiledCase(
        case=case,
        hist=hist,
        reluctant=reluctant,
        exam=exam,
        exam_answers=exam_answers,
        vitals=vitals,
        vital_answers=vital_answers,
        tests=tests,
        genes=genes,
        opening=opening,
        opening_answers=[(f.concept, "affirmed") for f in said],
        demo=_demographics(case),
        fact_ids={c: fs[0].id for c, fs in by_concept.items()},
    )


def _demographics(case: Case) -> np.ndarray:
    """The observation's demographic slots: age/100, male, age band and setting one-hots."""
    demo = np.zeros(2 + len(ENCODED_AGE_BANDS) + len(SETTINGS), dtype=np.float32)
    demo[0] = min(case.age, 120) / 100.0
    demo[1] = 1.0 if case.sex == "male" else 0.0
    band = next(i for i, (lo, hi) in enumerate(ENCODED_AGE_BANDS) if lo <= case.age <= hi)
    demo[2 + band] = 1.0
    if case.setting in SETTINGS:
        demo[2 + len(ENCODED_AGE_BANDS) + SETTINGS.index(case.setting)] = 1.0
    return demo


# ---- the environment ------------------------------------------------------------------------


def action_id(action: Any, n: int) -> int | str:
    """The action id `action` names (an integer in 0..n-1: see the env's Action Space), or why
    it names none, as one line for the error observation; never raises."""
    if isinstance(action, bool | np.bool_):
        return f"action {action!r} is a bool, not an action id (an integer 0..{n - 1})"
    if isinstance(action, np.ndarray):
        if action.shape != () or action.dtype.kind not in "iu":
            return (
                f"action is an array of shape {action.shape} and dtype {action.dtype}, not an "
                f"action id (an integer 0..{n - 1}, or a 0-d integer array)"
            )
        action = action[()]
    if isinstance(action, int) or (isinstance(action, np.integer) and action.dtype.kind in "iu"):
        a = int(action)
        if 0 <= a < n:
            return a
        shown = str(a) if a.bit_length() <= 64 else f"an integer of {a.bit_length()} bits"
        return f"action {shown} is outside 0..{n - 1}"
    return (
        f"action {_shown(action)} ({type(action).__name__}) is not an action id: an action is "
        f"an integer 0..{n - 1}"
    )


def _shown(value: Any) -> str:
    """At most 60 characters of a value's repr, even when its repr fails."""
    try:
        text = repr(value)
    except Exception:  # a hostile or huge value must not crash the env
        return f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


class StructuredConsultationEnv(gym.Env[np.ndarray, int]):
    """
    ## Description
    The consultation of `clinicgym/Consultation-v0` with discrete actions over the KB and a
    numeric observation of what has been learned so far. Same cases, same patient answers, same
    chart; the case (diagnosis included) stays hidden.

    ## Action Space
    `Discrete(n)`, in blocks (see `action_names()`): ask about history finding i, examine
    system j (vital signs first), order test k (the last is genetic testing), refer to an
    escalation target, diagnose condition c (ends the episode). `action_masks()` marks actions
    that can still tell something new (for maskable policies); masked actions stay legal.
    An action is an integer in 0..n-1: a Python `int`, a NumPy integer scalar (`np.int64(3)`)
    or a 0-d NumPy integer array (`np.array(3)`, what Stable-Baselines3's `predict` returns for
    one observation), as `Discrete.contains` has it, except bools. Anything else (floats, even
    3.0, NaN and infinities; strings, bytes, bools, None; other arrays; out-of-range or huge
    integers) never raises: the step is an error observation (`info["error"]` says why, the
    observation is unchanged) and uses a turn, like an unusable action in the text env.

    ## Observation Space
    `Box(-1, 1, (n,), float32)`, in blocks (see `feature_names()`): per askable finding +1
    affirmed / -1 denied / 0 not known; per askable finding 1 answered / 0.5 asked without an
    answer (held back, unknown) / 0 not asked; per exam finding +1 found / -1 absent once its
    system is examined; systems examined; vital signs +1 abnormal / -1 normal; tests +1 abnormal
    / -1 normal; genes +1 variant / -1 none, and whether genetic testing was done; referrals
    made; age/100, sex, age band and setting one-hots; turn / max_turns.

    ## Rewards
    From the `reward` handed in (the registered id uses scoring's `ConsultationReward`): per-step
    shaping (information gain, violation penalties: off by default), then the terminal score
    with its turn and differential guards on the last step. Without a reward, 0 everywhere.

    ## Episode End
    `terminated` on a diagnose action; `truncated` after `max_turns` actions. The last step's
    `info["outcome"]` holds the case id, the guessed condition id ('' if none), whether it was
    right and the score parts (one type per key, so vector envs can stack them);
    with `record=True` also `info["episode"]`, the `Episode` the run store and scorers read.

    ## Arguments
    `cases` (a list of Cases, or a `CaseSampler` whose suite is `suite_seed` x `n_cases`;
    default: the bundled KB's sampler), `kb`, `reward`, `max_turns` (20), `monitors`, `record`,
    `patient_factory` (record mode), `lean_info` (per-step info holds only the turn and the
    last step's outcome: cheaper under vector envs, which stack every key of every step).
    `reset(options={"case": Case})` plays a given case;
    `{"case_index": i}` picks from the list or suite.

    ## Version History
    * v0: initial version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        cases: Sequence[Case] | CaseSampler | None = None,
        *,
        kb: KnowledgeBase | None = None,
        reward: StepReward | None = None,
        max_turns: int = 20,
        suite_seed: int = 0,
        n_cases: int = DEFAULT_SUITE_SIZE,
        monitors: Sequence[Monitor] = (),
        record: bool = False,
        patient_factory: Callable[[Case], Patient] | None = None,
        lean_info: bool = False,
        render_mode: str | None = None,
    ) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if n_cases < 1:
            raise ValueError(f"n_cases must be >= 1, got {n_cases}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode {render_mode!r} is not one of {self.metadata['render_modes']}"
            )
        self.kb = kb or (cases.kb if isinstance(cases, CaseSampler) else default_kb())
        self.cases: Sequence[Case] | CaseSampler = (
            cases if cases is not None else default_sampler(self.kb)
        )
        if not isinstance(self.cases, CaseSampler) and len(self.cases) == 0:
            raise ValueError("StructuredConsultationEnv was given an empty list of cases")
        self.cat = catalogue_for(self.kb)
        self.reward = reward
        self.max_turns = max_turns
        self.suite_seed = suite_seed
        self.n_cases = n_cases if isinstance(self.cases, CaseSampler) else len(self.cases)
        self.monitors = list(monitors)
        self.record = record or bool(self.monitors)
        self.patient_factory = patient_factory
        self.lean_info = lean_info
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(self.cat.n_actions)
        self.observation_space = spaces.Box(-1.0, 1.0, (self.cat.n_obs,), np.float32)
        self._cache: OrderedDict[Any, CompiledCase] = OrderedDict()
        self._c: CompiledCase | None = None
        self._obs = np.zeros(self.cat.n_obs, dtype=np.float32)
        self._mask = np.ones(self.cat.n_actions, dtype=bool)
        self._turn = 0
        self._done = False
        self._seed = 0
        self._actions: list[int] = []
        self._referrals: list[dict[str, Any]] = []
        # record mode
        self._patient: Patient | None = None
        self._chart: Chart | None = None
        self._transcript = Transcript(self.monitors)

    # ---- Gymnasium API ------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        self._seed = int(seed) if seed is not None else int(self.np_random.integers(2**31))
        c = self._c = self._pick(options)
        cat = self.cat
        obs = self._obs
        obs[:] = 0.0
        hist = obs[cat.o_hist]
        asked = obs[cat.o_asked]
        for i in c.opening:
            hist[i] = 1.0
            asked[i] = 1.0
        obs[cat.o_demo] = c.demo
        self._mask[:] = True
        self._mask[[cat.a_ask + i for i in c.opening]] = False
        self._turn = 0
        self._done = False
        self._actions = []
        self._referrals = []
        if self.reward is not None:
            self.reward.reset(c.case, c.opening_answers)
        result: dict[str, Any] = {
            "answers": [{"concept": k, "status": s} for k, s in c.opening_answers]
        }
        if self.record:
            self._start_record(c.case, options)
        info = {
            "case_id": c.case.id,
            "turn": 0,
            "seed": self._seed,
            "patient": {"age": c.case.age, "sex": c.case.sex, "setting": c.case.setting},
            "result": result,
        }
        return obs.copy(), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        c = self._c
        if c is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._done:
            raise gym.error.ResetNeeded("the episode is over; call reset()")
        cat = self.cat
        obs = self._obs
        self._turn += 1
        turn = self._turn
        info: dict[str, Any] = {"case_id": c.case.id, "turn": turn}
        a = action_id(action, cat.n_actions)
        answers: list[tuple[str, str]] = []
        result: dict[str, Any]
        guess: str | None = None
        if isinstance(a, str):
            info["error"] = a
            result = {"error": a}
            info["action"] = None
            if self.record:
                self._transcript.unusable(turn, "", a)
        else:
            info["action"] = cat.names[a]
            result, answers, guess = self._act(a, turn)
        if self.lean_info:  # vector envs stack every info key on every step: keep it small
            info = {k: info[k] for k in ("turn", "error") if k in info}
        else:
            info["result"] = result
        terminated = guess is not None
        truncated = not terminated and turn >= self.max_turns
        done = terminated or truncated
        obs[cat.o_turn] = turn / self.max_turns
        severities = [v.severity for v in self._transcript.violations(turn)] if self.record else []
        reward = 0.0
        if self.reward is not None:
            reward += self.reward.step(answers, severities, last=done)
        if done:
            reward += self._finish(guess, turn, info)
        if self.record:
            info["violations"] = [v.model_dump() for v in self._transcript.violations(turn)]
        return obs.copy(), reward, terminated, truncated, info

    def _act(self, a: int, turn: int) -> tuple[dict[str, Any], list[tuple[str, str]], str | None]:
        """Play a valid action id: its result, the answers it gave, the condition it guessed."""
        cat = self.cat
        self._actions.append(a)
        self._mask[a] = False
        if a < cat.a_exam:
            return (*self._ask(a - cat.a_ask, turn), None)
        if a < cat.a_test:
            return (*self._examine(a - cat.a_exam, turn), None)
        if a < cat.a_refer:
            return (*self._order(a - cat.a_test, turn), None)
        if a < cat.a_diagnose:
            return self._refer(a - cat.a_refer, turn), [], None
        self._mask[a] = True
        guess = cat.conditions[a - cat.a_diagnose]
        if self.record:
            self._record_diagnosis(guess, turn)
        return {"diagnoses": [{"name": self.kb.conditions[guess].name}]}, [], guess

    def _finish(self, guess: str | None, turn: int, info: dict[str, Any]) -> float:
        """End the episode: `info["outcome"]` (and `info["episode"]` in record mode) filled in;
        the terminal reward."""
        c = self._c
        assert c is not None
        self._done = True
        guesses = [self.kb.conditions[guess].name] if guess else []
        score = self.reward.terminal(guesses, turn, c.case) if self.reward else None
        info["outcome"] = {
            "case_id": c.case.id,
            "diagnosis": guess or "",
            "correct": guess is not None and guess == c.case.diagnosis.condition_id,
            "turns": turn,
            "score": score.as_dict() if score is not None else None,
        }
        if self.record:
            diagnosed = guess is not None
            reason = TerminationReason.DIAGNOSED if diagnosed else TerminationReason.TURN_BUDGET
            info["episode"] = self.episode(reason)
        return score.total if score is not None else 0.0

    def render(self) -> str | None:
        """The actions so far, one per line ('ansi')."""
        if self.render_mode is None:
            return None
        return "\n".join(f"[{i + 1:02d}] {self.cat.names[a]}" for i, a in enumerate(self._actions))

    # ---- what each action does ----------------------------------------------------------

    def _ask(self, i: int, turn: int) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        c, cat, obs = self._c, self.cat, self._obs
        assert c is not None
        concept = cat.ask[i]
        asked = obs[cat.o_asked]
        if self.record:
            status = self._record_ask(concept, turn)
        elif c.reluctant[i] and asked[i] == 0.0:
            status = "withheld"
        else:
            status = _STATUS[float(c.hist[i])]
        answered = status in ("affirmed", "denied")
        if answered:
            obs[cat.o_hist][i] = 1.0 if status == "affirmed" else -1.0
            asked[i] = 1.0
        else:
            asked[i] = 0.5
            if status == "withheld":
                self._mask[cat.a_ask + i] = True  # asking again gets the answer
        return (
            {"intent": "finding", "answers": [{"concept": concept, "status": status}]},
            [(concept, status)] if answered else [],
        )

    def _examine(self, j: int, turn: int) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        c, cat, obs = self._c, self.cat, self._obs
        assert c is not None
        system = cat.systems[j]
        obs[cat.o_systems][j] = 1.0
        pairs: list[tuple[str, str]] = []
        if system == "vitals":
            obs[cat.o_vitals] = c.vitals
            answers = c.vital_answers
        else:
            idx = cat.exam_by_system[system]
            obs[cat.o_exam][idx] = c.exam[idx]
            answers = c.exam_answers[system]
            pairs = [(cat.exam[k], "affirmed" if c.exam[k] > 0 else "denied") for k in idx.tolist()]
        if self.record:
            self._record_chart(system, turn, examine=True)
        return {"ok": True, "target": system, "answers": [dict(a) for a in answers]}, pairs

    def _order(self, k: int, turn: int) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        c, cat, obs = self._c, self.cat, self._obs
        assert c is not None
        if k == len(cat.tests):
            genes = obs[cat.o_genes]
            genes[:-1] = c.genes
            genes[-1] = 1.0
            if self.record:
                self._record_chart("genetic testing", turn, examine=False)
            return {"ok": True, "target": GENETIC_TEST, "answers": []}, []
        tid = cat.tests[k]
        value = float(c.tests[k])
        if self.record:
            self._record_chart(tid, turn, examine=False)
        if value == 0.0:
            return {"ok": False, "target": None, "answers": []}, []
        obs[cat.o_tests][k] = value
        status = "abnormal" if value > 0 else "normal"
        return (
            {"ok": True, "target": tid, "answers": [{"concept": tid, "status": status}]},
            [(tid, status)],
        )

    def _refer(self, r: int, turn: int) -> dict[str, Any]:
        to, level = self.cat.refer[r]
        self._obs[self.cat.o_refer][r] = 1.0
        self._referrals.append({"to": to, "urgency": level, "turn": turn})
        if self.record:
            self._transcript.clinician(turn, Refer(to=to, urgency=level))  # type: ignore[arg-type]
            self._transcript.referral(turn, to, level)
        return {"referral": {"to": to, "urgency": level}}

    # ---- cases ----------------------------------------------------------------------------

    def _pick(self, options: dict[str, Any]) -> CompiledCase:
        if "case" in options:
            case = options["case"]
            if not isinstance(case, Case):
                case = Case.model_validate(case)
            return self._compiled(("case", case.id, case.content_hash()), lambda: case)
        idx = options.get("case_index")
        if idx is None:
            idx = int(self.np_random.integers(self.n_cases))
        if not 0 <= idx < self.n_cases:
            raise ValueError(f"case_index {idx} is outside 0..{self.n_cases - 1}")
        cases = self.cases
        if isinstance(cases, CaseSampler):  # shared by every env of the process
            key = (_sampler_key(cases), self.suite_seed, idx)
            return _compiled(
                _SUITE_CACHE, key, lambda: cases.sample(self.suite_seed, idx), self.cat
            )
        return self._compiled(("list", idx), lambda: cases[idx])

    def _compiled(self, key: Any, make: Callable[[], Case]) -> CompiledCase:
        return _compiled(self._cache, key, make, self.cat)

    def case_at(self, index: int) -> Case:
        """Case `index` of this env's list or suite: what `{"case_index": index}` plays."""
        return self._pick({"case_index": index}).case

    # ---- helpers for agents and trainers ----------------------------------------------------

    def action_masks(self) -> np.ndarray:
        """Actions that can still tell something new (diagnoses always); for maskable PPO."""
        return self._mask.copy()

    def action_names(self) -> list[str]:
        """One name per action id, e.g. 'ask:fever', 'examine:respiratory', 'diagnose:asthma'."""
        return list(self.cat.names)

    def feature_names(self) -> list[str]:
        """One name per observation slot."""
        return self.cat.feature_names()

    def encode_action(self, action: Action | str) -> int | None:
        """The action id of a text-env action or an action name; None if it has no counterpart."""
        return self.cat.encode(action)

    @property
    def case(self) -> Case | None:
        """The case being played (ground truth: for scorers and tests, never for the agent)."""
        return self._c.case if self._c is not None else None

    # ---- record mode: the real patient and chart, events, monitors -------------------------

    def _start_record(self, case: Case, options: dict[str, Any]) -> None:
        factory = self.patient_factory or _grounded_patient(self.kb)
        self._patient = factory(case)
        self._chart = Chart(case, self.kb)
        self._transcript.reset(case, options)
        self._transcript.patient(0, self._patient.opening(), OPENING_FIELDS)

    def _record_ask(self, concept: str, turn: int) -> str:
        """Ask the real patient; its status is the truth (tests hold the arrays to it)."""
        assert self._patient is not None
        finding = self.kb.findings.get(concept)
        question = (finding.question if finding else None) or concept
        self._transcript.clinician(turn, Ask(question=question))
        reply = self._patient.answer_concept(concept, turn)  # type: ignore[attr-defined]
        self._transcript.patient(turn, reply, ANSWER_FIELDS)
        return reply.answers[0].status if reply.answers else "unknown"

    def _record_chart(self, target: str, turn: int, *, examine: bool) -> None:
        assert self._chart is not None
        if examine:
            self._transcript.clinician(turn, Examine(system=target))
            res = self._chart.examine(target)
        else:
            name = self.kb.tests[target].name if target in self.kb.tests else target
            self._transcript.clinician(turn, OrderTest(test=name))
            res = self._chart.order(name)
        self._transcript.chart(turn, res)

    def _record_diagnosis(self, condition: str, turn: int) -> None:
        action = Diagnose(diagnoses=[RankedDiagnosis(name=self.kb.conditions[condition].name)])
        self._transcript.clinician(turn, action)
        self._transcript.diagnosis(turn, action.diagnoses, ends=True)

    def episode(self, reason: TerminationReason) -> Episode:
        """The episode so far as the run store keeps it (record mode only)."""
        if not self.record or self._c is None:
            raise ValueError("episode() needs record=True (or monitors) and a reset")
        case = self._c.case
        versions = {"kb": self.kb.version, "env": "structured-v0"}
        return self._transcript.episode(
            case,
            case.content_hash(),
            seed=self._seed,
            turns=self._turn,
            reason=reason,
            versions=versions,
        )

    @property
    def events(self) -> list[Event]:
        """The transcript so far (record mode)."""
        return list(self._transcript.events)


_SUITE_CACHE: OrderedDict[Any, CompiledCase] = OrderedDict()
"""Compiled suite cases, shared by the envs of one process (vectorised envs compile once)."""


def _sampler_key(sampler: CaseSampler) -> tuple[Any, ...]:
    """What a sampler's case (seed, index) depends on besides the seed and index."""
    slots = tuple((p.id, s) for p, s in getattr(sampler, "slots", ()))  # presentation-first
    return (
        type(sampler).__name__,
        sampler.kb.version,
        sampler.weighting,
        tuple(c.id for c in sampler.pool),
        slots,
    )


def _compiled(
    cache: OrderedDict[Any, CompiledCase], key: Any, make: Callable[[], Case], cat: Catalogue
) -> CompiledCase:
    """The compiled case under `key`, compiled on a miss; least recently used cases drop out."""
    hit = cache.get(key)
    if hit is not None:
        cache.move_to_end(key)
        return hit
    compiled = cache[key] = compile_case(make(), cat)
    if len(cache) > CACHE_SIZE:
        cache.popitem(last=False)
    return compiled


def _grounded_patient(kb: KnowledgeBase) -> Callable[[Case], Patient]:
    """The text env's patient (it embeds case-local facts, so record mode loads MiniLM)."""
    from clinicgym.patients.patient.matching import matcher_for
    from clinicgym.patients.patient.patient import GroundedPatient

    matcher = matcher_for(kb)
    return lambda case: GroundedPatient(case, matcher)
