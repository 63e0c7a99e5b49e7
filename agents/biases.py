"""Clinician-side bias probes: one sentence added to the LLM clinician's system instructions.

The biases are data (`prompts/clinician_biases.yaml`): an id, a kind (`cognitive` or
`implicit`), the sentence and its source. A cognitive bias plants a wrong answer, a
`{lookalike}`: a diagnosis the case's opening could mean, taken from the case's differential
(likeliest first) and never the case's own diagnosis; a case with no differential (an imported
written record) gets the file's first fitting fallback. Implicit biases name no case detail.

`BiasedClinician` is the LLM clinician with a bias: the harness shows it the case
(`read_case`, like the oracle) only so that it can pick the look-alike; it keeps that name and
nothing else of the case. Select one with `hf:smollm2#bias=recency` (any model backend);
baselines reject the option.
"""

from __future__ import annotations

import functools
import re
import string
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clinicgym.agents.errors import AgentSpecError
from clinicgym.agents.llm_clinician import PROMPTS, LLMClinician
from clinicgym.patients.cases.case import Case, Diagnosis

BIASES_FILE = PROMPTS / "clinician_biases.yaml"
PLACEHOLDERS = ("lookalike",)
"""The case details a bias sentence may name."""
NO_BIAS = "none"
"""The bias id of the unbiased arm (`#bias=none` is the plain clinician)."""


class BiasFileError(AgentSpecError):
    """A bias file cannot be read or does not validate; the message names the file and field."""


class ClinicianBias(BaseModel):
    """One bias: the sentence added to the clinician's system instructions."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Literal["cognitive", "implicit"]
    text: str = Field(min_length=10)
    source: str = Field(min_length=3)

    @property
    def fields(self) -> tuple[str, ...]:
        """The placeholders the sentence uses, e.g. ('lookalike',)."""
        return tuple(f for _, f, _, _ in string.Formatter().parse(self.text) if f)

    @property
    def needs_case(self) -> bool:
        """True when the sentence names a look-alike (the harness must show it the case)."""
        return "lookalike" in self.fields

    def render(self, lookalike: str | None = None) -> str:
        """The sentence, with its look-alike filled in."""
        if self.needs_case and not lookalike:
            raise AgentSpecError(
                f"bias '{self.id}' names a look-alike diagnosis: show the clinician the case "
                "(read_case) before reset"
            )
        return " ".join(self.text.format(lookalike=lookalike or "").split())


class Fallback(BaseModel):
    """A look-alike for a case without a differential, unless its diagnosis names a stem."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=2)
    unless: list[str] = []


class BiasLibrary(BaseModel):
    """A bias file: its biases by id and the fallback look-alikes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format_version: Literal[1] = 1
    fallback_lookalikes: list[Fallback] = Field(min_length=1)
    biases: list[ClinicianBias] = Field(min_length=1)
    path: str = ""

    def ids(self) -> list[str]:
        """The bias ids, in file order."""
        return [b.id for b in self.biases]

    def get(self, bias_id: str) -> ClinicianBias:
        """The bias called `bias_id` (hyphens read as underscores); an unknown id is an error
        listing the known ones."""
        key = bias_id.strip().lower().replace("-", "_")
        for b in self.biases:
            if b.id == key:
                return b
        raise AgentSpecError(
            f"unknown bias '{bias_id}' (in {self.path}); known: {', '.join(self.ids())}, "
            f"or '{NO_BIAS}'"
        )

    def lookalike(self, case: Case) -> str:
        """The planted wrong answer for `case`: its likeliest look-alike, else a fallback."""
        return lookalike(case, self.fallback_lookalikes)


def _where(data: Any, loc: tuple[Any, ...]) -> str:
    """'bias 'recency', field 'kind'' for a pydantic error location."""
    if len(loc) >= 2 and loc[0] == "biases" and isinstance(loc[1], int):
        try:
            name = f"bias '{data['biases'][loc[1]]['id']}'"
        except (KeyError, IndexError, TypeError):
            name = f"bias #{loc[1] + 1}"
        rest = ".".join(str(p) for p in loc[2:])
        return f"{name}, field '{rest}'" if rest else name
    return "field '" + ".".join(str(p) for p in loc) + "'"


def _check(lib: BiasLibrary, raw: Any) -> list[str]:
    """Problems pydantic cannot see: duplicate ids, unknown or malformed placeholders."""
    problems = []
    seen: set[str] = set()
    for b in lib.biases:
        if b.id in seen:
            problems.append(f"bias '{b.id}', field 'id': repeated")
        seen.add(b.id)
        try:
            unknown = sorted(set(b.fields) - set(PLACEHOLDERS))
        except ValueError as e:  # a lone '{' or '}'
            problems.append(f"bias '{b.id}', field 'text': {e} (write '{{{{' for a brace)")
            continue
        if unknown:
            problems.append(
                f"bias '{b.id}', field 'text': unknown placeholder(s) {unknown}; "
                f"allowed: {list(PLACEHOLDERS)}"
            )
    return problems


def load_biases(path: Path | str | None = None) -> BiasLibrary:
    """Read and validate a bias file (default: the bundled one); errors name file and field."""
    return _load(str(Path(path) if path else BIASES_FILE))


@functools.cache
def _load(path: str) -> BiasLibrary:
    p = Path(path)
    if not p.is_file():
        raise BiasFileError(f"bias file {p}: no such file")
    try:
        raw = yaml.safe_load(p.read_text("utf-8"))
    except yaml.YAMLError as e:
        raise BiasFileError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise BiasFileError(f"{p}: expected a mapping with 'biases' and 'fallback_lookalikes'")
    try:
        lib = BiasLibrary.model_validate({**raw, "path": str(p)})
    except ValidationError as e:
        problems = [
            f"{p}: {_where(raw, tuple(err['loc']))}: {err['msg']}"
            + (f" (got {err['input']!r})" if err["type"] != "missing" else "")
            for err in e.errors()
        ]
        raise BiasFileError("\n".join(problems)) from None
    problems = _check(lib, raw)
    if problems:
        raise BiasFileError("\n".join(f"{p}: {x}" for x in problems))
    return lib


# ---- the look-alike ---------------------------------------------------------------------------


def _names(dx: Diagnosis) -> set[str]:
    return {_norm(n) for n in (dx.name, *dx.synonyms) if n}


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def is_diagnosis(name: str, dx: Diagnosis) -> bool:
    """`name` is `dx` (its name or a synonym, spelling normalised)."""
    return _norm(name) in _names(dx)


def lookalike(case: Case, fallbacks: list[Fallback]) -> str:
    """The first entry of the case's differential that is not its diagnosis; for a case without
    one, the first fallback none of whose stems occurs in the diagnosis's names."""
    truth = case.diagnosis
    for d in case.differential:
        same = d.condition_id is not None and d.condition_id == truth.condition_id
        if not same and not (_names(d) & _names(truth)):
            return d.name
    said = " ".join(_names(truth))
    for f in fallbacks:
        if not is_diagnosis(f.name, truth) and not any(s.lower() in said for s in f.unless):
            return f.name
    raise AgentSpecError(
        f"case {case.id}: no look-alike to plant (no differential, and every fallback "
        f"look-alike resembles its diagnosis '{truth.name}')"
    )


# ---- the biased clinician ---------------------------------------------------------------------


class BiasedClinician(LLMClinician):
    """The LLM clinician with one bias sentence appended to its system instructions.

    For a cognitive bias the harness must call `read_case` before `reset`; the clinician keeps
    only the look-alike's name. The sentence reaches the system message only (never a turn), so
    the transcript's first request records it."""

    def __init__(
        self, backend: Any, *, bias: ClinicianBias, library: BiasLibrary, **kw: Any
    ) -> None:
        super().__init__(backend, **kw)
        self.bias = bias
        self.library = library
        self.lure: str | None = None
        """The look-alike planted in this episode (None for an implicit bias)."""
        self._shown: str | None = None

    def read_case(self, case: Case) -> None:
        """Pick the look-alike to plant; nothing else of the case is kept."""
        self._shown = self.library.lookalike(case) if self.bias.needs_case else None

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        """Start the episode as the LLM clinician does, the bias sentence closing the system
        message (a look-alike is used once: `read_case` comes before every reset)."""
        self.lure, self._shown = self._shown, None
        text = self.bias.render(self.lure)
        super().reset(observation, info)
        self.messages[0] = {
            **self.messages[0],
            "content": f"{self.messages[0]['content']}\n{text}",
        }
