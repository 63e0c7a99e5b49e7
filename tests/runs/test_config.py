"""Run spec files: TOML and YAML read into RunSpec, CLI flags override them, errors name the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinicgym.runs.cli import app
from clinicgym.runs.config import CLI_FIELDS, read_config, resolve_spec
from clinicgym.runs.errors import ConfigError
from clinicgym.runs.spec import RunSpec

SMALL_KB = str(Path(__file__).parents[1] / "data" / "kb_small")


def test_toml_file_resolves_paths_relative_to_the_file_and_flags_override(tmp_path):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "run.toml"
    path.write_text(
        'agents = ["scripted", "random"]\ncases = 5\nseed = 11\nconcurrency = 3\n'
        'executor = "local"\nepisode_retries = 4\nout = "out/r"\n'
        'agent_concurrency = { "random" = 1 }\n'
    )
    spec = resolve_spec(path, {})
    assert spec.agents == ["scripted", "random"] and spec.cases == 5 and spec.seed == 11
    assert spec.episode_retries == 4 and spec.agent_concurrency == {"random": 1}
    assert spec.out == (tmp_path / "conf" / "out" / "r").resolve()
    over = resolve_spec(path, {"seed": 99, "episode_retries": 0})
    assert over.seed == 99 and over.episode_retries == 0 and over.cases == 5


def test_yaml_file_reads_the_same_fields(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("agents: [oracle]\ncases: 2\nexecutor: ray\nray_workers: 3\nout: r\n")
    spec = resolve_spec(path, {})
    assert spec.executor == "ray" and spec.ray_workers == 3 and spec.agents == ["oracle"]


def test_unknown_keys_and_bad_values_are_named(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('agent = ["scripted"]\nretries = 2\n')
    with pytest.raises(ConfigError) as e:
        read_config(path)
    msg = str(e.value)
    assert str(path) in msg and "'agent' (did you mean 'agents'?)" in msg
    assert "'retries' (did you mean 'episode_retries'?)" in msg
    path.write_text('agents = ["scripted"]\nexecutor = "spark"\nout = "x"\n')
    with pytest.raises(ConfigError, match=r"executor.*'spark'"):
        resolve_spec(path, {})
    path.write_text("agents = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_config(tmp_path / "missing.toml")


def test_every_cli_flag_of_run_maps_to_a_spec_field():
    import typer.main

    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    params = {p.name for p in command.params} - {"config", "quiet", "click_ctx", "model"}
    assert params == set(CLI_FIELDS)
    assert {f for f, _ in CLI_FIELDS.values()} <= set(RunSpec.model_fields)


def test_run_with_config_records_the_resolved_spec_in_the_manifest(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        f'agents = ["oracle"]\ncases = 2\nseed = 5\nkb_dir = "{SMALL_KB}"\nout = "r"\n'
        "episode_retries = 3\n"
    )
    args = ["run", "--config", str(path), "--seed", "6", "--retries", "0", "--quiet"]
    r = CliRunner().invoke(app, [*args, "--executor", "local"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["spec"]["seed"] == 6 and manifest["spec"]["episode_retries"] == 0
    assert manifest["spec"]["executor"] == "local" and manifest["spec"]["cases"] == 2
    bad = CliRunner().invoke(app, ["run", "--config", str(tmp_path / "nope.toml")])
    assert bad.exit_code == 2 and "cannot read the run spec file" in bad.output
