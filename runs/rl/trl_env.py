"""The text consultation as a TRL `environment_factory` class: the clinician's tools as methods.

TRL's `GRPOTrainer(environment_factory=...)` builds one `ClinicToolEnv` per rollout, calls
`reset(**row)` with the dataset row (its `episode_seed` picks the case), renders the public
methods as tool schemas from their signatures and docstrings, and runs the model's tool calls
against them until the model answers without one. Each tool plays one turn of the text env
(`ConsultationEnv`, built by `runs.factory.make_consultation_env` inside `ClinicSession`) and
returns what the env shows, worded by the clinician prompt template. `get_reward()` is the
episode's reward from scoring's `RewardSpec` (an unfinished consultation is scored as
undiagnosed at the turn reached); `violations`, `diagnostic_accuracy`, `turns` and
`tool_calls` are zero-weight reward functions, so TRL logs them as metrics beside the reward.

No trainer library is imported here: the class is plain Python, tested with a scripted loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from clinicgym.envs.action import Action, Diagnose, Examine, OrderTest, Prescribe, RankedDiagnosis
from clinicgym.envs.action import Ask as AskAction
from clinicgym.runs.rl.errors import RLError
from clinicgym.runs.rl.text import ClinicSession, seed_of

TOOL_NAMES = ("ask_patient", "examine", "order_test", "prescribe", "diagnose")
"""The tools `ClinicToolEnv` offers, in the order the system prompt lists them."""

_ENDED = "The consultation is over; no further actions are taken."


class ClinicToolEnv:
    """One consultation per `reset`, played through tool calls; TRL's environment contract."""

    def __init__(self, session: ClinicSession | None = None, **session_kwargs: Any) -> None:
        self._session = session or ClinicSession(**session_kwargs)
        self._started = False
        self._calls = 0

    @classmethod
    def factory(cls, **session_kwargs: Any) -> Callable[[], ClinicToolEnv]:
        """A zero-argument callable building envs with these `ClinicSession` settings (what
        `environment_factory=` takes)."""
        return functools.partial(cls, **session_kwargs)

    # ---- TRL's hooks ----------------------------------------------------------------------

    def reset(self, **kwargs: Any) -> str | None:
        """Start the consultation the dataset row names (`episode_seed`, optional `case_index`);
        returns the opening observation, which TRL appends to the row's last user message."""
        session = self._session
        if "episode_seed" in kwargs:
            seed = int(kwargs["episode_seed"])
        elif "prompt" in kwargs:
            seed = seed_of(kwargs["prompt"])
        else:
            raise RLError(
                "ClinicToolEnv.reset needs an 'episode_seed' column; build the dataset with "
                "clinicgym.runs.rl.trl_env.tool_dataset()"
            )
        case_index = kwargs.get("case_index")
        opening = session.reset(seed, None if case_index is None else int(case_index))
        self._started = True
        self._calls = 0
        prompt = kwargs.get("prompt")
        system = prompt[0] if isinstance(prompt, list) and prompt else {}
        if system.get("role") == "system" and system.get("content") != self.system_prompt:
            raise RLError(
                f"the dataset's system prompt for episode {seed} is not the one the env renders "
                "for its case; was the dataset built with other cases, KB or max_turns?"
            )
        return str(opening[-1]["content"])

    def get_reward(self) -> float:
        """The episode's reward from scoring; an unfinished consultation is scored now, as
        undiagnosed at the turn reached."""
        self._finish()
        return float(self._session.total)

    # ---- the tools (every public method is one; keep helpers private) ---------------------

    def ask_patient(self, question: str) -> str:
        """Ask the patient (or the parent of a child) one question and hear the answer.

        Args:
            question: The question, in plain words, e.g. "Do you have a fever?"

        Returns:
            The patient's reply.
        """
        return self._play(AskAction(question=_text(question, "question")))

    def examine(self, system: str) -> str:
        """Examine one body system, or take the vital signs, and read the findings.

        Args:
            system: The body system, e.g. "respiratory", "abdominal", or "vital signs".

        Returns:
            The examination findings.
        """
        return self._play(Examine(system=_text(system, "system")))

    def order_test(self, test: str) -> str:
        """Order a laboratory, bedside or imaging test and read its result.

        Args:
            test: The test's name, e.g. "full blood count" or "chest x-ray".

        Returns:
            The test result.
        """
        return self._play(OrderTest(test=_text(test, "test")))

    def prescribe(self, drug: str, dose: str = "") -> str:
        """Prescribe a drug; it is checked against allergies, interactions and contraindications.

        Args:
            drug: The drug's name.
            dose: The dose and how often, e.g. "500 mg three times a day".

        Returns:
            What happened to the prescription.
        """
        return self._play(Prescribe(drug=_text(drug, "drug"), dose=dose.strip() or None))

    def diagnose(self, diagnoses: list[str]) -> str:
        """Give the final ranked diagnoses, most likely first. This ends the consultation.

        Args:
            diagnoses: Diagnosis names, most likely first (at most three are free of charge).

        Returns:
            The closing message.
        """
        if isinstance(diagnoses, str):  # small models often send one string
            diagnoses = diagnoses.split(";")
        names = [str(d).strip() for d in diagnoses if str(d).strip()]
        if not names:
            raise RLError("diagnose needs at least one diagnosis name")
        return self._play(Diagnose(diagnoses=[RankedDiagnosis(name=n) for n in names[:20]]))

    # ---- what the trainer logs ------------------------------------------------------------

    @property
    def system_prompt(self) -> str:
        """The system message for the current case, listing the tools."""
        if not self._started:
            raise RLError("call reset() before reading the system prompt")
        return system_prompt(self._session)

    @property
    def session(self) -> ClinicSession:
        """The underlying chat session (its episode, score and messages)."""
        return self._session

    @property
    def tool_calls(self) -> int:
        """Tool calls that reached the env since the last reset (after the end included)."""
        return self._calls

    @property
    def metrics(self) -> dict[str, float]:
        """The finished episode's accuracy, turns and monitor violations (scored now if the
        consultation is unfinished)."""
        self._finish()
        ep = self._session.episode
        accuracy = float((ep.metrics or {}).get("diagnostic_accuracy") or 0.0) if ep else 0.0
        return {
            "diagnostic_accuracy": accuracy,
            "turns": float(ep.turns) if ep else 0.0,
            "violations": float(len(ep.violations)) if ep else 0.0,
            "tool_calls": float(self._calls),
        }

    # ---- internals ------------------------------------------------------------------------

    def _play(self, action: Action) -> str:
        if not self._started:
            raise RLError("call reset() before using a tool")
        self._calls += 1
        if self._session.done:
            raise RLError(_ENDED)
        turn = self._session.step(action)
        if turn.done and "consultation is over" not in turn.text:
            return f"{turn.text}\n{_ENDED}"
        return turn.text

    def _finish(self) -> None:
        if self._started and not self._session.done:
            self._session.stop()


def _text(value: Any, name: str) -> str:
    text = str(value).strip() if value is not None else ""
    if not text:
        raise RLError(f"'{name}' must be a non-empty string")
    return text


def system_prompt(session: ClinicSession) -> str:
    """The clinician system prompt in tool mode for the session's current case."""
    ctx = {**session._context, "use_tools": True, "tools": tool_descriptions()}
    return session.template.render("system", **ctx)


@functools.cache
def tool_descriptions() -> list[dict[str, str]]:
    """Name and first docstring line of each tool, for the prompt template's tool list."""
    out = []
    for name in TOOL_NAMES:
        doc = (getattr(ClinicToolEnv, name).__doc__ or name).strip().splitlines()[0]
        out.append({"name": name, "description": doc})
    return out


def tool_dataset(n: int, seed: int = 0, **session_kwargs: Any) -> list[dict[str, Any]]:
    """`n` rows for episode seeds seed..seed+n-1 (a `datasets.Dataset.from_list` input):
    {'prompt': [system, user ''], 'episode_seed': s} (and 'case_index' when the cases are a
    list). The env's `reset` supplies the opening."""
    if n < 1:
        raise RLError(f"a dataset needs at least one consultation, got {n}")
    session = ClinicSession(**session_kwargs)
    listed = session.cases if isinstance(session.cases, Sequence) else None
    rows = []
    for i, s in enumerate(range(seed, seed + n)):
        row: dict[str, Any] = {"episode_seed": s}
        if listed is not None:  # a suite: row i plays case i, cycling
            row["case_index"] = i % len(listed)
        session.reset(s, row.get("case_index"))
        row["prompt"] = [
            {"role": "system", "content": system_prompt(session)},
            {"role": "user", "content": ""},
        ]
        rows.append(row)
    return rows


# ---- metrics as zero-weight reward functions ------------------------------------------------


def _metric(name: str, environments: Sequence[Any] | None) -> list[float | None]:
    if environments is None:
        raise RLError(f"the {name} metric needs GRPOTrainer(environment_factory=ClinicToolEnv...)")
    return [e.metrics[name] if isinstance(e, ClinicToolEnv) else None for e in environments]


def violations(environments: Sequence[Any] | None = None, **kwargs: Any) -> list[float | None]:
    """Monitor violations per episode (a metric: give it weight 0 in `reward_weights`)."""
    return _metric("violations", environments)


def diagnostic_accuracy(
    environments: Sequence[Any] | None = None, **kwargs: Any
) -> list[float | None]:
    """Whether the first-ranked diagnosis was right (a metric: weight 0)."""
    return _metric("diagnostic_accuracy", environments)


def turns(environments: Sequence[Any] | None = None, **kwargs: Any) -> list[float | None]:
    """Clinician turns the env counted (a metric: weight 0)."""
    return _metric("turns", environments)


def tool_calls(environments: Sequence[Any] | None = None, **kwargs: Any) -> list[float | None]:
    """Tool calls that reached the env (a metric: weight 0)."""
    return _metric("tool_calls", environments)


METRICS = (diagnostic_accuracy, violations, turns, tool_calls)
"""The zero-weight reward functions `clinicgym rl grpo` logs beside the env's reward."""
