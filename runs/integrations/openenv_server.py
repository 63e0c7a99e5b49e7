"""An OpenEnv server for the text consultation: reset, step and state over HTTP and WebSocket,
with typed actions and observations, one consultation per session, monitors as gates.

`create_openenv_app()` returns OpenEnv's FastAPI app (`openenv.core.env_server.create_app`)
over `ConsultationEnvironment`, which plays `runs/rl/text.py`'s `ClinicSession` (the prompt
template, the grounded patient, the policy monitors, rewards from scoring). Each WebSocket
session gets its own environment, so sessions run concurrently. With `gate="high"` (or any
severity) a violation at or above it ends the consultation at once, scored as it stands; each
step's violations are typed fields of the observation either way (OpenEnv sends an
observation's `metadata` to no client, so nothing the client needs is kept there).

    uvicorn clinicgym.runs.integrations.openenv_server:app --port 8000

Needs the `openenv` extra (openenv-core), installed apart from `verifiers` (docs/integrations.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from clinicgym.errors import require_extra

require_extra("openenv", "the OpenEnv server", "openenv")

from openenv.core.client_types import StepResult  # noqa: E402
from openenv.core.env_client import EnvClient  # noqa: E402
from openenv.core.env_server.http_server import create_app  # noqa: E402
from openenv.core.env_server.interfaces import Environment  # noqa: E402
from openenv.core.env_server.types import Action, Observation, State  # noqa: E402
from pydantic import Field  # noqa: E402

from clinicgym.envs.severity import SEVERITIES, Severity  # noqa: E402
from clinicgym.runs.rl.text import ClinicSession  # noqa: E402


class ConsultAction(Action):
    """The clinician's turn: any text the env parses ('Any fever?', 'ORDER: CRP',
    'DIAGNOSIS: Community-acquired pneumonia (70%)')."""

    message: str = Field(min_length=1, description="What the clinician says or does")


class ConsultObservation(Observation):
    """What the clinician sees next, with the step's reward and whether the consultation ended."""

    text: str = Field(default="", description="The next user message (prompt template applied)")
    system: str = Field(default="", description="The system prompt (on reset)")
    turn: int = Field(default=0, description="Clinician turns taken")
    case_id: str | None = Field(default=None, description="The case played (never its answer)")
    violations: list[dict[str, Any]] = Field(
        default=[], description="Policy violations of this step (rule_id, severity, ...)"
    )
    error: str | None = Field(default=None, description="Why the turn named no action, if so")
    gated: bool = Field(default=False, description="Ended by a violation at or above the gate")
    score: dict[str, Any] | None = Field(default=None, description="Reward parts, at the end")
    metrics: dict[str, Any] = Field(default={}, description="The episode's metrics, at the end")


class ConsultState(State):
    """The session's bookkeeping: never the case's diagnosis."""

    seed: int | None = None
    total_reward: float = 0.0
    done: bool = False
    gated: bool = False
    """The consultation was ended by a violation at or above the gate."""


class ConsultationEnvironment(Environment):
    """One consultation per instance (OpenEnv makes one per WebSocket session)."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(
        self, *, gate: Severity | None = None, session: ClinicSession | None = None, **kw: Any
    ) -> None:
        super().__init__()
        if gate is not None and gate not in SEVERITIES:
            raise ValueError(f"gate must be one of {SEVERITIES} or None, got {gate!r}")
        self.gate = gate
        self.session = session or ClinicSession(**kw)
        self._state = ConsultState()

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any
    ) -> ConsultObservation:
        """Start the consultation of `seed` (the same seed plays the same case)."""
        seed = int(seed) if seed is not None else 0
        messages = self.session.reset(seed, kwargs.get("case_index"))
        self._state = ConsultState(episode_id=episode_id or f"episode-{seed}", seed=seed)
        case = self.session.case
        return ConsultObservation(
            text=messages[-1]["content"],
            case_id=case.id if case else None,
            system=messages[0]["content"],
        )

    def step(
        self, action: ConsultAction, timeout_s: float | None = None, **kwargs: Any
    ) -> ConsultObservation:
        """Play one clinician turn; a violation at or above the gate ends the consultation."""
        st = self._state
        if st.done:
            raise ValueError("the consultation is over; call reset()")
        out = self.session.step(action.message)
        reward, done = out.reward, out.done
        violations = list(out.info.get("violations", []))
        gated = self._gated(violations) and not done
        if gated:
            reward += self.session.stop()
            done = True
        st.step_count += 1
        st.total_reward += reward
        st.done, st.gated = done, gated
        ep = self.session.episode if done else None
        case = self.session.case
        return ConsultObservation(
            text=out.text,
            turn=st.step_count,
            case_id=case.id if case else None,
            violations=violations,
            error=out.info.get("error"),
            gated=gated,
            score=self.session.score if done else None,
            metrics=ep.metrics if ep else {},
            done=done,
            reward=reward,
        )

    def _gated(self, violations: Sequence[dict[str, Any]]) -> bool:
        if self.gate is None:
            return False
        floor = SEVERITIES.index(self.gate)
        return any(SEVERITIES.index(v["severity"]) >= floor for v in violations)

    @property
    def state(self) -> ConsultState:
        """The session's bookkeeping."""
        return self._state


def create_openenv_app(
    *,
    gate: Severity | None = None,
    max_concurrent_envs: int = 8,
    session_factory: Callable[[], ClinicSession] | None = None,
    **session_kwargs: Any,
) -> Any:
    """OpenEnv's FastAPI app over the consultation: POST /reset, /step, GET /state, /schema,
    WS /ws; `session_kwargs` go to `ClinicSession` (kb, cases, max_turns, policy_packs, ...)."""

    if session_factory is None and session_kwargs.get("kb") is None:
        from clinicgym.patients.knowledge.kb import default_kb

        session_kwargs["kb"] = default_kb()  # loaded once here, not once per session

    def make() -> ConsultationEnvironment:
        session = session_factory() if session_factory else ClinicSession(**session_kwargs)
        return ConsultationEnvironment(gate=gate, session=session)

    return create_app(
        make,
        ConsultAction,
        ConsultObservation,
        env_name="clinicgym-consultation",
        max_concurrent_envs=max_concurrent_envs,
    )


class ConsultationClient(EnvClient[ConsultAction, ConsultObservation, ConsultState]):
    """OpenEnv's WebSocket client, typed for the consultation: `await client.reset(seed=3)`,
    `await client.step(ConsultAction(message="Any fever?"))`, `await client.state()`."""

    def _step_payload(self, action: ConsultAction) -> dict[str, Any]:
        return action.model_dump()

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[ConsultObservation]:
        obs = ConsultObservation(
            **{
                **payload.get("observation", {}),
                "done": payload.get("done", False),
                "reward": payload.get("reward"),
            }
        )
        return StepResult(observation=obs, reward=payload.get("reward"), done=obs.done)

    def _parse_state(self, payload: dict[str, Any]) -> ConsultState:
        return ConsultState(**payload)


def __getattr__(name: str) -> Any:
    """`app`, built on first use (so importing the module builds no KB)."""
    if name == "app":
        return create_openenv_app()
    raise AttributeError(name)
