"""Run spec files: a TOML or YAML file whose keys are RunSpec fields, merged with CLI flags.

`clinicgym run --config run.toml` reads the file; every flag of `run` maps to one spec field
(`CLI_FIELDS`), and a flag given on the command line overrides the file. A `suite` fills in the
fields it fixes (runs/suite.py). Relative paths in a file are relative to the file. The
resolved spec is what the run directory's manifest.json records.

    # run.toml
    agents = ["scripted", "openai:qwen@http://127.0.0.1:8000/v1"]
    suite = "emergency@2"
    concurrency = 64
    agent_concurrency = { "openai:qwen@http://127.0.0.1:8000/v1" = 32 }
    executor = "local"
    episode_retries = 2
    out = "runs/emergency-qwen"
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from clinicgym.runs.errors import ConfigError
from clinicgym.runs.spec import RunSpec

PATH_FIELDS = ("kb_dir", "cohort", "cases_from", "case_images", "patient_cache", "out")
"""Spec fields holding paths: relative ones in a file are taken relative to the file."""


def _pairs(flag: str, cast: Callable[[str], Any]) -> Callable[[list[str]], dict[str, Any]]:
    """'SPEC=VALUE' items (repeatable flag) -> {SPEC: cast(VALUE)}; the spec may hold '='."""

    def parse(items: list[str]) -> dict[str, Any]:
        out = {}
        for item in items:
            key, eq, value = item.rpartition("=")
            try:
                if not eq or not key:
                    raise ValueError(item)
                out[key] = cast(value)
            except ValueError:
                raise ConfigError(
                    f"{flag} '{item}': expected 'SPEC=VALUE', e.g. "
                    f"'openai:m@http://127.0.0.1:8000/v1={'2.5,10' if flag == '--price' else '8'}'"
                ) from None
        return out

    return parse


def _price(value: str) -> tuple[float, float]:
    p_in, p_out = (float(x) for x in value.split(","))
    return p_in, p_out


def _str_or_none(v: Any) -> Any:
    return str(v) if v is not None else None


CLI_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "agent": ("agents", list),
    "name": ("names", list),
    "cases": ("cases", int),
    "seed": ("seed", int),
    "out": ("out", Path),
    "repeats": ("repeats", int),
    "max_turns": ("max_turns", int),
    "concurrency": ("concurrency", int),
    "agent_concurrency": ("agent_concurrency", _pairs("--agent-concurrency", int)),
    "setting": ("settings", list),
    "condition": ("conditions", list),
    "weighting": ("weighting", str),
    "kb": ("kb_dir", _str_or_none),
    "cohort": ("cohort", _str_or_none),
    "cases_from": ("cases_from", _str_or_none),
    "cases_format": ("cases_format", _str_or_none),
    "strict": ("strict_cases", bool),
    "case_images": ("case_images", _str_or_none),
    "max_tokens": ("max_tokens", lambda v: v),
    "temperature": ("temperature", lambda v: v),
    "model_seed": ("model_seed", lambda v: v),
    "price": ("prices", _pairs("--price", _price)),
    "pack": ("policy_packs", list),
    "scenario": ("scenarios", list),
    "judge": ("judge", _str_or_none),
    "patient": ("patient", str),
    "patient_cache": ("patient_cache", _str_or_none),
    "patient_cache_mode": ("patient_cache_mode", str),
    "modality": ("modality", str),
    "suite": ("suite", _str_or_none),
    "executor": ("executor", str),
    "ray_address": ("ray_address", _str_or_none),
    "ray_workers": ("ray_workers", lambda v: v),
    "workers": ("workers", lambda v: v),
    "retries": ("episode_retries", int),
    "stop_after_errors": ("stop_after_errors", int),
    "max_error_rate": ("max_error_rate", float),
    "retry_errored": ("retry_errored", bool),
}
"""`clinicgym run` option (parameter name) -> (RunSpec field, how its value converts).
Only `--config`, `--quiet` and the hidden `--model` (an error that points to `--agent`) are not
spec fields."""


def read_config(path: Path | str) -> dict[str, Any]:
    """A spec file's fields (TOML by default; YAML for .yaml/.yml), paths made relative to it.
    Unknown keys are errors naming the file and the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the run spec file ({e.strerror})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            raw = yaml.safe_load(text) or {}
        else:
            raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        kind = "YAML" if path.suffix.lower() in (".yaml", ".yml") else "TOML"
        raise ConfigError(f"{path}: not valid {kind} ({e})".replace("\n", " ")) from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a table of run spec fields, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(RunSpec.model_fields))
    if unknown:
        flags = {f: p for p, (f, _) in CLI_FIELDS.items()}
        hints = [f"'{k}' (did you mean '{_field_for(k, flags)}'?)" for k in unknown]
        raise ConfigError(
            f"{path}: unknown keys {', '.join(hints)}; the keys are RunSpec fields: "
            + ", ".join(RunSpec.model_fields)
        )
    values = dict(raw)
    for k in PATH_FIELDS:
        if isinstance(values.get(k), str) and not Path(values[k]).is_absolute():
            values[k] = str((path.parent / values[k]).resolve())
    suite = values.get("suite")
    if isinstance(suite, str) and (path.parent / suite).is_dir():
        values["suite"] = str((path.parent / suite).resolve())
    return values


def _field_for(key: str, flags: dict[str, str]) -> str:
    fields = {p: f for f, p in flags.items()}
    return fields.get(key.replace("-", "_"), "?")


def resolve_spec(
    config: Path | str | None, flags: Mapping[str, Any], default_out: Path | None = None
) -> RunSpec:
    """The run's spec: the file's fields, overridden by `flags` (spec field -> value, only the
    flags given on the command line), a suite's fixed fields filled in, then validated."""
    from clinicgym.runs.suite import resolve_spec_fields

    values = read_config(config) if config else {}
    given = set(flags)
    if config:
        given |= set(values)
    values.update(flags)
    if not values.get("out"):
        values["out"] = default_out or Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")
    try:
        values = resolve_spec_fields(values, given)
        return RunSpec.model_validate(values)
    except ValidationError as e:
        where = f"{config}: " if config else ""
        problems = [
            f"{'.'.join(map(str, x['loc'])) or 'spec'}: {x['msg']}"
            + ("" if x["type"] == "missing" else f" (got {x.get('input')!r})")
            for x in e.errors()
        ]
        if any(x["loc"] == ("agents",) for x in e.errors()):
            problems.append("name agents with --agent or `agents = [...]` in the spec file")
        raise ConfigError(where + "; ".join(problems)) from None


def flags_from_click(ctx: Any) -> dict[str, Any]:
    """Spec field -> value for each `run` option given on the command line (or by an
    environment variable), converted; options left at their defaults are not included."""
    out = {}
    for name, (field, cast) in CLI_FIELDS.items():
        if name not in ctx.params:
            continue
        source = ctx.get_parameter_source(name)  # by name: typer may bundle its own click
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            continue
        out[field] = cast(ctx.params[name])
    return out


def spec_from_cli(ctx: Any, config: Path | None) -> RunSpec:
    """The spec `clinicgym run` plays: `--config FILE` overridden by the flags given."""
    return resolve_spec(config, flags_from_click(ctx))
