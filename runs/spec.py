"""The run spec: one typed record every CLI flag maps onto, written into the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IDENTITY_FIELDS = (
    "agents",
    "cases",
    "seed",
    "repeats",
    "max_turns",
    "end_on_diagnose",
    "weighting",
    "settings",
    "conditions",
    "kb_dir",
    "cohort",
    "cases_from",
    "cases_format",
    "policy_packs",
    "scenarios",
    "max_tokens",
    "temperature",
    "model_seed",
    "patient",
    "modality",
    "judge",
    "suite",
)
"""Fields that define which episodes a run holds; resuming requires them unchanged."""


class RunSpec(BaseModel):
    """What to run: agents x cases x repeats, how, and where to store it."""

    model_config = ConfigDict(extra="forbid")
    agents: list[str] = Field(min_length=1)
    """Agent spec strings, e.g. 'scripted', 'hf:smollm2', 'openai/gpt-4o', 'openai:MODEL@URL'."""
    names: dict[str, str] = {}
    """Display names by agent spec (`--name`, given in the order of `--agent`); an agent
    without one shows as its spec without a base URL. Not part of the run's identity, so a
    resumed run may rename its agents."""
    cases: int = Field(default=30, ge=1, le=1_000_000)
    seed: int = 0
    repeats: int = Field(default=1, ge=1, le=100)
    max_turns: int = Field(default=20, ge=1, le=200)
    end_on_diagnose: bool = True
    weighting: Literal["auto", "presentation", "balanced", "population"] = "auto"
    """'presentation': presentation-first cases (patients/cases/presentation.py); 'balanced' and
    'population': the condition-first sampler of earlier suite versions; 'auto': presentation
    where the KB has presentations, else balanced."""
    settings: list[str] = []
    conditions: list[str] = []
    kb_dir: str | None = None
    """A knowledge-base directory to use instead of the bundled one."""
    cohort: str | None = None
    """A cohort directory (`clinicgym cohort generate`): cases are its first `cases` rows."""
    cases_from: str | None = None
    """An external case file: AgentClinic JSONL (MedQA- or NEJM-shaped) or a DDXPlus release
    (directory or patients CSV/zip); cases are its first `cases` entries (all of them when
    `--cases` is not given), imported instead of sampled."""
    cases_format: Literal["agentclinic", "agentclinic_nejm", "ddxplus"] | None = None
    """The format of `cases_from`; None detects it."""
    strict_cases: bool = False
    """`cases_from`: fail the run if any line cannot be imported (default: the line is skipped
    and reported by file, line and field, and the rest play)."""
    case_images: str | None = None
    """A local image file or folder for NEJM-shaped `cases_from` cases (matched by the image id
    in `image_url`, the case id or the line number); without it they play text-only."""
    policy_packs: list[str] = []
    """Policy packs monitored at every step: 'hipaa-privacy@2', 'gdpr' (latest) or a file."""
    scenarios: list[str] = []
    """Scenarios applied to every episode: 'crisis', 'third_party:role=employer', 'suite'."""
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    """Reply budget per model turn, passed to model backends (spec settings win)."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature for model backends; None: the backend's default (greedy for hf)."""
    model_seed: int | None = None
    """Sampling seed for model backends, mixed with each episode's seed and turn."""
    prices: dict[str, tuple[float, float]] = {}
    """USD per million prompt and completion tokens, by agent spec: the summary's cost_usd."""
    patient: str = "grounded"
    """'grounded' (template wording), or a model spec that words the grounded patient's answers
    behind the answer guard, e.g. 'hf:smollm2' or 'openai:MODEL@URL'."""
    patient_cache: str | None = None
    """SQLite file of recorded patient wordings; default `<out>/patient_cache.sqlite`."""
    patient_cache_mode: Literal["record", "replay", "off"] = "record"
    """'replay' fails loudly when a wording was not recorded (reproducible reruns, RL)."""
    modality: Literal["text", "image", "both"] = "text"
    """How results with artefacts reach the model: report text, a generated image, or both."""
    judge: str | None = None
    """LLM judge for policy checks that need one: a chat backend spec, 'openai:MODEL@URL'."""
    suite: str | None = None
    """A named case suite, 'core' or 'core@1' (docs/runs.md), or a pinned suite directory: its
    frozen cases, and the repeats, turn budget, scenarios, packs and modality it fixes."""
    concurrency: int = Field(default=8, ge=1, le=4096)
    """Episodes in flight at once (all agents together)."""
    agent_concurrency: dict[str, int] = {}
    """Episodes in flight at once for one agent spec (a rate-limited API), within `concurrency`."""
    executor: Literal["local", "ray"] = "local"
    """'local': asyncio in this process; 'ray': episodes spread over a Ray cluster's workers."""
    ray_address: str | None = None
    """None: start a private Ray on 127.0.0.1; 'auto' or 'ray://HOST:10001': join a cluster."""
    ray_workers: int | None = Field(default=None, ge=1, le=100_000)
    """Ray actors playing episodes; None: one per CPU the cluster offers."""
    workers: int | None = Field(default=None, ge=1, le=256)
    """Local executor: processes playing episodes (1: this process only); None: chosen for
    the machine and the run's size (runs/executors.py `default_workers`)."""
    episode_retries: int = Field(default=2, ge=0, le=20)
    """Times an errored episode (agent, backend or env failure) is played again, same seed,
    before it is stored as errored; never counted as a model failure either way."""
    stop_after_errors: int = Field(default=10, ge=0, le=1_000_000)
    """Stop scheduling an agent whose first N stored episodes all errored (a wrong URL, a
    server that is down): its remaining episodes are left unplayed, so the same command resumes
    them once it is fixed. 0: never stop."""
    max_error_rate: float = Field(default=0.2, ge=0, le=1)
    """`clinicgym run` exits with status 1 when an agent's share of errored (infrastructure)
    episodes is above this: its numbers leave too much out to be read as they are."""
    retry_errored: bool = False
    """On resume, set the stored errored episodes aside (to `errored.jsonl`, kept for the
    record) so that they are played again; completed episodes are never replayed."""
    out: Path

    def agent_options(self) -> dict[str, object]:
        """Run-wide settings handed to every agent builder (backends pass them to the model)."""
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "model_seed": self.model_seed,
        }

    @field_validator("agents")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dupes = sorted({a for a in v if v.count(a) > 1})
        if dupes:
            raise ValueError(f"agent specs must be unique; repeated: {dupes}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _names_in_order(cls, data: object) -> object:
        """`names` given as a list (one `--name` per `--agent`, in order) -> by spec."""
        if isinstance(data, dict) and isinstance(data.get("names"), list | tuple):
            names, agents = list(data["names"]), list(data.get("agents") or [])
            if len(names) != len(agents):
                raise ValueError(
                    f"--name given {len(names)} times for {len(agents)} agents: give one "
                    "--name per --agent, in the same order"
                )
            data = {**data, "names": dict(zip(agents, names, strict=True))}
        return data

    @model_validator(mode="after")
    def _names_known(self) -> RunSpec:
        unknown = sorted(set(self.names) - set(self.agents))
        if unknown:
            raise ValueError(f"names: {unknown} are not agents of this run ({self.agents})")
        given = [n.strip() for n in self.names.values()]
        empty = sorted(a for a, n in self.names.items() if not n.strip())
        dupes = sorted({n for n in given if n and given.count(n) > 1})
        if empty or dupes:
            raise ValueError(
                f"names: {f'empty for {empty}' if empty else ''}"
                f"{'; ' if empty and dupes else ''}{f'shown twice: {dupes}' if dupes else ''}"
                "; give each agent its own --name"
            )
        return self

    def display_names(self) -> dict[str, str]:
        """Agent spec -> the name tables and boards show: its --name, else the spec without
        a base URL (`agents.backends.registry.display_name`)."""
        from clinicgym.agents.backends.registry import display_name

        out: dict[str, str] = {}
        for a in self.agents:
            name = self.names.get(a, "").strip() or display_name(a)
            n = 2
            while name in out.values():  # two servers of one model: 'openai:m', 'openai:m [2]'
                name = f"{display_name(a)} [{n}]"
                n += 1
            out[a] = name
        return out

    @model_validator(mode="after")
    def _agent_limits(self) -> RunSpec:
        unknown = sorted(set(self.agent_concurrency) - set(self.agents))
        bad = {a: n for a, n in self.agent_concurrency.items() if n < 1}
        if unknown or bad:
            raise ValueError(
                f"agent_concurrency: {f'unknown agents {unknown}' if unknown else ''}"
                f"{'; ' if unknown and bad else ''}{f'limits below 1: {bad}' if bad else ''}; "
                f"it takes agent specs of this run ({self.agents}) and limits >= 1"
            )
        return self

    def identity(self) -> dict[str, object]:
        """The fields that fix which episodes belong to this run."""
        return self.model_dump(mode="json", include=set(IDENTITY_FIELDS))
