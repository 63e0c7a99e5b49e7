"""An inspect_ai task: clinicgym cases as samples, inspect's model as the clinician.

`inspect eval clinicgym/consultation --model openai/gpt-4o -T cases=10` (the package registers
this module under inspect's `inspect_ai` entry point, pyproject.toml). Each sample is one case;
the solver plays the consultation turn by turn (inspect's `generate` -> the clinician's reply ->
`ConsultationEnv.astep` -> the patient's answer or the chart's result as the next user
message), with the policy monitors watching, and the scorers report clinicgym's own metrics:
`top1_correct`, `top3_correct`, `inquiry_coverage` and `violations` (each violation in the
score's metadata, every metric of `scoring.metrics` in the first score's). `inspect view`
shows the chat, the scores and the violations.
"""

from __future__ import annotations

from typing import Any

from clinicgym.errors import require_extra

require_extra("inspect", "the inspect_ai task (clinicgym/consultation)", "inspect_ai")

from inspect_ai import Task, task  # noqa: E402
from inspect_ai.dataset import MemoryDataset, Sample  # noqa: E402
from inspect_ai.log import transcript  # noqa: E402
from inspect_ai.model import (  # noqa: E402
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageUser,
)
from inspect_ai.scorer import Score, Scorer, Target, mean, scorer, stderr  # noqa: E402
from inspect_ai.solver import Generate, Solver, TaskState, solver  # noqa: E402

from clinicgym.patients.knowledge.kb import default_kb  # noqa: E402
from clinicgym.runs.integrations.consultation import (  # noqa: E402
    DEFAULT_PACKS,
    Consultation,
    case_list,
    episode_seed,
)


def _package_prefixed() -> bool:
    """Whether inspect will prefix this module's names with 'clinicgym/' itself: it does when
    it finds the installed distribution, which a stale `clinicgym.egg-info` in the working
    directory (left by an editable install) hides from it."""
    try:
        from inspect_ai._util.package import get_installed_package_name
    except ImportError:  # inspect moved it: trust the documented behaviour
        return True
    return get_installed_package_name(_package_prefixed) == "clinicgym"


TASK_NAME = "consultation" if _package_prefixed() else "clinicgym/consultation"
"""So `inspect eval clinicgym/consultation` finds the task either way."""
RESULT_KEY = "clinicgym"
"""Where the solver leaves the episode's result in the sample's store, for the scorers."""


def _packs(policy_packs: str | list[str] | None) -> list[str]:
    """Packs from a task argument: a list, or one comma-separated string (`-T packs=a@2,b@2`);
    'none' or '' watches with none."""
    if policy_packs is None:
        return list(DEFAULT_PACKS)
    if isinstance(policy_packs, str):
        if policy_packs.strip().lower() in ("", "none"):
            return []
        return [p.strip() for p in policy_packs.split(",") if p.strip()]
    return list(policy_packs)


def _message(m: dict[str, Any]) -> ChatMessage:
    """A chat message of the clinician's prompt as inspect's message type."""
    kind = {"system": ChatMessageSystem, "user": ChatMessageUser}.get(m["role"])
    return (kind or ChatMessageAssistant)(content=str(m["content"]))


@task(name=TASK_NAME)
def consultation(
    cases: int = 3,
    seed: int = 0,
    suite: str | None = None,
    max_turns: int = 20,
    policy_packs: str | list[str] | None = None,
) -> Task:
    """clinicgym consultations: `cases` generated from `seed` (or a frozen `suite` such as
    'core@2', whose turn budget, packs and seed win), watched by `policy_packs` (default: the
    core suite's six; 'none' for none), scored by clinicgym's scorers."""
    kb = default_kb()
    played, recipe = case_list(cases, seed, suite, kb)
    packs = recipe.get("policy_packs") if suite else _packs(policy_packs)
    turns = int(recipe.get("max_turns", max_turns))
    run_seed = int(recipe["seed"])
    samples = [
        Sample(
            id=case.id,
            input=f"clinicgym case {case.id}: the patient's opening comes from the env",
            target=case.diagnosis.name,
            metadata={
                "case_index": i,
                "seed": episode_seed(run_seed, i),
                "setting": case.setting,
                "age": case.age,
                "sex": case.sex,
                "suite": recipe.get("suite"),
            },
        )
        for i, case in enumerate(played)
    ]
    return Task(
        dataset=MemoryDataset(samples, name=recipe.get("suite") or f"clinicgym-seed{seed}"),
        solver=clinician(played, packs or [], turns),
        scorer=[top1_correct(), top3_correct(), inquiry_coverage(), violations()],
        metadata={"clinicgym_packs": packs, "max_turns": turns, "suite": recipe.get("suite")},
    )


@solver
def clinician(cases: Any, policy_packs: list[str], max_turns: int = 20) -> Solver:
    """Plays each sample's case with the task's model in the clinician's chair; the episode's
    metrics and violations go into the sample's store for the scorers."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        meta = state.metadata
        case = cases[int(meta["case_index"])]
        play = Consultation(
            case,
            seed=int(meta["seed"]),
            max_turns=max_turns,
            policy_packs=policy_packs,
            agent_id=str(state.model),
        )
        state.messages = [_message(m) for m in play.start()]
        while not play.done:
            state = await generate(state)
            reply = state.output.completion if state.output else ""
            result = await play.turn(reply)
            if not result.done:
                state.messages.append(ChatMessageUser(content=result.text))
            if result.violations:
                transcript().info({"violations": result.violations}, source="clinicgym monitors")
        play.stop()
        episode = play.episode
        state.store.set(
            RESULT_KEY,
            {
                "case_id": case.id,
                "diagnoses": play.diagnoses(),
                "termination": episode.termination.value if episode else None,
                "turns": episode.turns if episode else 0,
                "metrics": play.metrics,
                "violations": play.violations(),
                "violation_counts": play.violation_counts(),
            },
        )
        return state

    return solve


def _result(state: TaskState) -> dict[str, Any]:
    return state.store.get(RESULT_KEY) or {}


@scorer(metrics=[mean(), stderr()])
def top1_correct() -> Scorer:
    """1 if the clinician's first-ranked diagnosis is the case's (scoring.metrics'
    diagnostic_accuracy), else 0; every metric of the episode in the metadata."""

    async def score(state: TaskState, target: Target) -> Score:
        r = _result(state)
        metrics = r.get("metrics") or {}
        guessed = r.get("diagnoses") or []
        return Score(
            value=float(metrics.get("diagnostic_accuracy") or 0.0),
            answer=guessed[0] if guessed else "",
            explanation=(
                f"ranked {guessed or 'no diagnosis'}; the case's: {target.text}; "
                f"ended by {r.get('termination')} after {r.get('turns')} turns"
            ),
            metadata={"metrics": metrics, "diagnoses": guessed},
        )

    return score


@scorer(metrics=[mean(), stderr()])
def top3_correct() -> Scorer:
    """1 if the case's diagnosis is among the clinician's first three, else 0."""

    async def score(state: TaskState, target: Target) -> Score:
        metrics = _result(state).get("metrics") or {}
        return Score(value=float(metrics.get("top3_accuracy") or 0.0))

    return score


@scorer(metrics=[mean(), stderr()])
def inquiry_coverage() -> Scorer:
    """Share of the case's must-ask facts the clinician elicited; unscored where the case left
    none to ask after the opening (clinicgym's None: does not apply)."""

    async def score(state: TaskState, target: Target) -> Score:
        value = (_result(state).get("metrics") or {}).get("inquiry_coverage")
        if value is None:
            return Score.unscored(explanation="no must-ask facts left after the opening")
        return Score(value=float(value))

    return score


@scorer(metrics=[mean(), stderr()])
def violations() -> Scorer:
    """Policy violations the monitors recorded in the episode; each one in the metadata."""

    async def score(state: TaskState, target: Target) -> Score:
        r = _result(state)
        found = r.get("violations") or []
        counts = r.get("violation_counts") or {}
        lines = [
            f"turn {v['turn']}: {v['pack']} {v['rule_id']} ({v['severity']}): {v['message']}"
            for v in found
        ]
        return Score(
            value=float(len(found)),
            explanation="\n".join(lines) or "no violation",
            metadata={"violations": found, "by_severity": counts},
        )

    return score


DEMO_REPLIES = (
    "I am an AI assistant, not a human doctor. What brings you in today?",
    "Do you have a fever?",
    "EXAMINE: vital signs",
    "DIAGNOSIS: Community-acquired pneumonia; Asthma",
)


def mock_clinician(replies: tuple[str, ...] = DEMO_REPLIES) -> Any:
    """`custom_outputs` for inspect's `mockllm/model` that plays `replies` in order within each
    sample (its turn is counted from the chat, so concurrent samples do not interleave), with
    token usage set so mockllm does not fetch a tokenizer to count it: for offline tests."""
    from inspect_ai.model import ModelOutput, ModelUsage

    def output(messages: list[ChatMessage], *_: Any) -> ModelOutput:
        turn = sum(1 for m in messages if m.role == "assistant") - _examples(messages)
        text = replies[min(turn, len(replies) - 1)]
        out = ModelOutput.from_content("mockllm/model", text)
        out.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
        return out

    return output


def _examples(messages: list[ChatMessage]) -> int:
    """Assistant messages that belong to the template's example exchanges: those before the
    opening, the last user message that starts with 'New consultation'."""
    starts = [
        i
        for i, m in enumerate(messages)
        if m.role == "user" and m.text.startswith("New consultation")
    ]
    return sum(1 for x in messages[: starts[-1]] if x.role == "assistant") if starts else 0
