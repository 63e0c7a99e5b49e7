"""The text env for LLM trainers: chat messages in and out, rewards from scoring.

`ClinicSession` plays one consultation of `ConsultationEnv` as a chat: the system prompt and
each observation are worded by the LLM clinician's prompt template (`agents/prompts/clinician.j2`),
so a model is trained on exactly the prompt it is evaluated with. Each step's reward comes from
scoring's `ConsultationReward` (terminal score with guards; shaping if the `RewardSpec` asks).

Two shapes on top of it, for the libraries that drive environments:

* `ClinicOpenEnv`: OpenEnv's `Environment` shape: `reset(seed=, episode_id=)` and
  `step(action)` return a typed `ClinicObservation` (`done`, `reward`, `metadata` and the
  text), `state` returns a `ClinicState`; `reset_async`/`step_async`/`close` too.
* `ClinicProtocol`: verifiers' `MultiTurnEnv` shape: a dataset of chat prompts, async
  `setup_state(state)`, `env_response(messages, state) -> messages`, a stop condition
  `consultation_done(state)` and a rubric function `consultation_reward(state)`. Subclass it
  together with `verifiers.MultiTurnEnv` to run it under verifiers (docs/rl.md).

Neither library is imported: the shapes are plain Python and pydantic, tested here with their
own driving loops.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clinicgym.agents.llm_clinician import PromptTemplate
from clinicgym.envs.action import Action
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.envs.episode import Episode, TerminationReason
from clinicgym.patients.cases.case import Case
from clinicgym.patients.cases.presentation import default_sampler
from clinicgym.patients.cases.sampler import CaseSampler
from clinicgym.patients.knowledge.kb import KnowledgeBase, default_kb
from clinicgym.runs.rl.errors import RLError
from clinicgym.scoring.metrics import episode_metrics
from clinicgym.scoring.reward import ConsultationReward, RewardSpec, answers_from_result

EPISODE_TAG = re.compile(r"^\[episode (\d+)\]\n")
"""How a dataset prompt names its episode seed (the first line of the first user message): a
trainer hands the rollout only prompts, and all completions of one prompt must play one case."""


def tag(seed: int, text: str) -> str:
    """`text` with the episode tag on its first line."""
    return f"[episode {seed}]\n{text}"


def seed_of(messages: Sequence[dict[str, Any]] | str) -> int:
    """The episode seed a tagged prompt names (the first user message, or a plain string)."""
    if isinstance(messages, str):
        text = messages
    else:
        text = next((str(m.get("content", "")) for m in messages if m.get("role") == "user"), "")
    m = EPISODE_TAG.match(text)
    if m is None:
        raise RLError(
            f"prompt {text[:60]!r} has no '[episode N]' tag on its first line; build prompts "
            "with ConsultationRollout.dataset() or ClinicProtocol.dataset()"
        )
    return int(m.group(1))


@dataclass
class Turn:
    """What one clinician turn led to."""

    text: str
    """The next user message (on the last turn: the closing observation, not sent on)."""
    reward: float
    done: bool
    info: dict[str, Any] = field(default_factory=dict)


class ClinicSession:
    """One text consultation at a time as a chat, with rewards from scoring."""

    def __init__(
        self,
        kb: KnowledgeBase | None = None,
        cases: Sequence[Case] | CaseSampler | None = None,
        *,
        reward: RewardSpec | None = None,
        max_turns: int = 10,
        policy_packs: Sequence[str] = (),
        scenarios: Sequence[str] = (),
        template: PromptTemplate | None = None,
    ) -> None:
        self.kb = kb or (cases.kb if isinstance(cases, CaseSampler) else default_kb())
        self.cases = cases if cases is not None else default_sampler(self.kb)
        self.spec = reward or RewardSpec()
        self.max_turns = max_turns
        self.policy_packs = list(policy_packs)
        self.scenarios = list(scenarios)
        self.template = template or PromptTemplate()
        self.reward = ConsultationReward(self.spec, self.kb)
        self.env: ConsultationEnv | None = None
        self.case: Case | None = None
        self.seed = 0
        self.done = False
        self.total = 0.0
        self.score: dict[str, Any] | None = None
        self.episode: Episode | None = None
        self._context: dict[str, Any] = {}
        self.messages: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {}
        """The text env's last `info` (for baselines that read `info["result"]`)."""
        self.observation: dict[str, Any] = {}
        """The text env's last observation."""

    def _new_env(self) -> ConsultationEnv:
        # through the factory behind the registered id, so packs and scenarios are validated as
        # in `clinicgym run`; the reward is this session's, so the env computes none
        from clinicgym.runs.factory import make_consultation_env

        return make_consultation_env(
            cases=self.cases,
            kb=self.kb,
            max_turns=self.max_turns,
            policy_packs=self.policy_packs,
            scenarios=self.scenarios,
            reward_fn=None,
        )

    def reset(self, seed: int, case_index: int | None = None) -> list[dict[str, Any]]:
        """Start the consultation for `seed`; returns the opening chat (system, user)."""
        self.env = self._new_env()
        options = {"case_index": case_index} if case_index is not None else {}
        obs, info = self.env.reset(seed=seed, options=options)
        self.observation, self.info = obs, info
        self.case = self.env.case
        assert self.case is not None
        self.seed = seed
        self.done = False
        self.total = 0.0
        self.score = None
        self.episode = None
        opening = (
            answers_from_result(info.get("result", {}), self.reward.belief)
            if self.reward.belief
            else []
        )
        self.reward.reset(self.case, opening)
        self._context = {
            "patient": info["patient"],
            "use_tools": False,
            "tools": [],
            "help": info.get("help", ""),
        }
        system = self.template.render("system", **self._context)
        self.messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": self._turn_text(obs)},
        ]
        return list(self.messages)

    def _turn_text(self, obs: dict[str, Any]) -> str:
        return self.template.render(
            "turn",
            **self._context,
            observation=obs["text"],
            turn=int(obs["turn"]),
            turns_left=int(obs["turns_left"]),
        )

    def step(self, text: str | Action) -> Turn:
        """Play the clinician's turn: text (any action format the text env parses) or an
        `Action` (a tool call already parsed, so a question is never read as a command)."""
        env = self.env
        if env is None or self.case is None:
            raise RLError("call reset() before step()")
        if self.done:
            raise RLError("the consultation is over; call reset()")
        said = text if isinstance(text, str) else text.render()
        self.messages.append({"role": "assistant", "content": said})
        obs, _r, terminated, truncated, info = env.step(text)
        self.observation, self.info = obs, info
        done = terminated or truncated
        belief = self.reward.belief
        answers = answers_from_result(info.get("result", {}), belief) if belief else []
        severities = [v["severity"] for v in info.get("violations", [])]
        reward = self.reward.step(answers, severities, last=done)
        if done:
            reward += self._finish(info["episode"])
        self.total += reward
        out = Turn(text=self._turn_text(obs), reward=reward, done=done, info=info)
        if not done:
            self.messages.append({"role": "user", "content": out.text})
        return out

    def stop(self) -> float:
        """End an unfinished consultation (a token budget ran out): scored as undiagnosed at the
        turn reached; returns the reward of this last step."""
        if self.done or self.env is None:
            return 0.0
        reward = self.reward.step((), (), last=True) + self._finish(
            self.env.episode(TerminationReason.TURN_BUDGET)
        )
        self.total += reward
        return reward

    def _finish(self, episode: Episode) -> float:
        assert self.case is not None
        self.done = True
        episode.metrics = episode_metrics(episode, self.case)
        self.episode = episode
        guesses = [d.name for d in episode.outcome.diagnoses]
        score = self.reward.terminal(guesses, episode.turns, self.case)
        self.score = score.as_dict()
        return score.total


# ---- OpenEnv shape --------------------------------------------------------------------------


class ClinicAction(BaseModel):
    """The clinician's turn: any text the env parses (a question, 'DIAGNOSIS: a; b', ...)."""

    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1)
    metadata: dict[str, Any] = {}


class ClinicObservation(BaseModel):
    """What the clinician sees after a step, with the step's reward."""

    model_config = ConfigDict(extra="forbid")
    text: str
    """The next user message (the prompt template around the env's observation)."""
    messages: list[dict[str, Any]] = []
    """The chat so far (system prompt first)."""
    turn: int = 0
    done: bool = False
    reward: float | None = None
    metadata: dict[str, Any] = {}
    """Case id, seed; on the last step the score parts and the episode's metrics."""


class ClinicState(BaseModel):
    """The episode's bookkeeping (never the case)."""

    model_config = ConfigDict(extra="allow")
    episode_id: str | None = None
    step_count: int = 0
    seed: int | None = None
    total_reward: float = 0.0
    done: bool = False


class ClinicOpenEnv:
    """The text consultation in OpenEnv's `Environment` shape (reset/step/state, typed records)."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, session: ClinicSession | None = None, **session_kwargs: Any) -> None:
        self.session = session or ClinicSession(**session_kwargs)
        self._state = ClinicState()

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any
    ) -> ClinicObservation:
        """Start a consultation; the same seed plays the same case."""
        seed = int(seed) if seed is not None else 0
        messages = self.session.reset(seed, kwargs.get("case_index"))
        self._state = ClinicState(episode_id=episode_id or f"episode-{seed}", seed=seed)
        return ClinicObservation(
            text=messages[-1]["content"],
            messages=messages,
            metadata={"seed": seed, "case_id": self.session.case.id if self.session.case else None},
        )

    def step(
        self, action: ClinicAction | str, timeout_s: float | None = None, **kwargs: Any
    ) -> ClinicObservation:
        """Play one clinician turn."""
        text = action.message if isinstance(action, ClinicAction) else str(action)
        out = self.session.step(text)
        st = self._state
        st.step_count += 1
        st.total_reward += out.reward
        st.done = out.done
        meta: dict[str, Any] = {"seed": st.seed, "error": out.info.get("error")}
        if out.done:
            ep = self.session.episode
            meta.update(score=self.session.score, metrics=ep.metrics if ep else {})
        return ClinicObservation(
            text=out.text,
            messages=list(self.session.messages),
            turn=st.step_count,
            done=out.done,
            reward=out.reward,
            metadata=meta,
        )

    async def reset_async(
        self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any
    ) -> ClinicObservation:
        return self.reset(seed=seed, episode_id=episode_id, **kwargs)

    async def step_async(
        self, action: ClinicAction | str, timeout_s: float | None = None, **kwargs: Any
    ) -> ClinicObservation:
        return self.step(action, timeout_s=timeout_s, **kwargs)

    @property
    def state(self) -> ClinicState:
        """The current episode's bookkeeping."""
        return self._state

    def close(self) -> None:
        """Nothing to release: the session holds no process or connection."""

    def get_metadata(self) -> dict[str, str]:
        """Name, description and version, as OpenEnv's metadata endpoint reports them."""
        from clinicgym import __version__

        return {
            "name": "clinicgym-consultation",
            "description": "A clinician-patient consultation scored by clinicgym.",
            "version": __version__,
        }


# ---- verifiers shape ------------------------------------------------------------------------


class ClinicProtocol:
    """The text consultation in verifiers' `MultiTurnEnv` shape. Per-rollout state lives in the
    `state` dict (verifiers' rule): `state["clinic"]` is that rollout's `ClinicSession`."""

    def __init__(self, **session_kwargs: Any) -> None:
        self.session_kwargs = session_kwargs

    def dataset(self, n: int, seed: int = 0) -> list[dict[str, Any]]:
        """`n` rows of {'prompt', 'answer', 'info'}: the opening chat of episode seeds
        seed..seed+n-1, tagged (see `EPISODE_TAG`); the answer stays in the env."""
        session = ClinicSession(**self.session_kwargs)
        rows = []
        for s in range(seed, seed + n):
            messages = session.reset(s)
            messages[1] = {"role": "user", "content": tag(s, messages[1]["content"])}
            rows.append({"prompt": messages, "answer": "", "info": {"seed": s}})
        return rows

    async def setup_state(self, state: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Start this rollout's consultation from the prompt's episode seed."""
        info = state.get("info") or {}
        seed = int(info["seed"]) if "seed" in info else seed_of(state["prompt"])
        session = ClinicSession(**self.session_kwargs)
        session.reset(seed)
        state["clinic"] = session
        return state

    async def env_response(
        self, messages: list[dict[str, Any]], state: dict[str, Any], **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Play the model's last message; the patient's reply (or results) as a user message.
        The last reply is also `state["final_env_response"]`, verifiers' signal to stop."""
        session: ClinicSession = state["clinic"]
        last = messages[-1]
        out = session.step(str(last.get("content") or ""))
        state["clinic_reward"] = session.total
        reply = [{"role": "user", "content": out.text}]
        if out.done:
            state["final_env_response"] = reply
        return reply

    async def consultation_done(self, state: dict[str, Any], **kwargs: Any) -> bool:
        """Stop condition: the consultation ended (diagnosis, end, or turn budget)."""
        session: ClinicSession | None = state.get("clinic")
        return session is not None and session.done

    async def consultation_reward(self, state: dict[str, Any], **kwargs: Any) -> float:
        """Rubric function: the episode's reward from scoring (unfinished: scored undiagnosed)."""
        session: ClinicSession = state["clinic"]
        if not session.done:
            session.stop()
        return session.total
