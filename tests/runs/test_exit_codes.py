"""`clinicgym run` exit statuses and messages (issue 19): 1 when an agent's numbers are
incomplete (stopped, every episode errored, errors above --max-error-rate), 2 with one line
and no traceback when the run directory cannot be written or is damaged or edited, 3 for a bug
inside clinicgym. Real files, a real read-only folder, a simulated full disk."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinicgym.agents.registry import agent_builder
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.runs.cli import app
from clinicgym.runs.runner import execute, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore

SMALL_KB = str(Path(__file__).parents[1] / "data" / "kb_small")


class _Down:
    """An agent whose server is unreachable."""

    def reset(self, observation, info):
        pass

    async def act(self, observation, info):
        raise ConnectionRefusedError(111, "Connection refused")


class _DownOnEvenSeeds(_Down):
    def reset(self, observation, info):
        self.down = info["seed"] % 2 == 0

    async def act(self, observation, info):
        if self.down:
            return await super().act(observation, info)
        return "DIAGNOSIS: anything"


agent_builder("exit-down")(lambda rest, kb, options: _Down)
agent_builder("exit-half-down")(lambda rest, kb, options: _DownOnEvenSeeds)


def _invoke(*args: str, out: Path, cases: int = 4, agent: str = "oracle"):
    argv = ["run", "-a", agent, "--cases", str(cases), "--kb", SMALL_KB, "--out", str(out)]
    r = CliRunner().invoke(app, [*argv, "--quiet", "--retries", "0", *args])
    return r, r.output  # stdout and stderr as the terminal shows them


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("error:", "bug:"))]


def test_exit_1_when_every_episode_of_an_agent_errored(tmp_path):
    r, text = _invoke("--stop-after-errors", "0", out=tmp_path / "r", agent="exit-down")
    assert r.exit_code == 1, text
    assert (
        "incomplete exit-down: 4 of 4 episodes (100%) ended in infrastructure errors, every "
        "one of its episodes errored" in text
    )


def test_exit_1_when_errors_pass_max_error_rate_and_0_below_it(tmp_path):
    out = tmp_path / "r"
    r, text = _invoke("--max-error-rate", "0.1", out=out, cases=8, agent="exit-half-down")
    summary = json.loads((out / "summary.json").read_text())["agents"]["exit-half-down"]
    share = summary["errors"] / summary["episodes"]
    assert 0.1 < share < 1, summary  # some, not all, seeds are even
    assert r.exit_code == 1, text
    assert f"({share:.0%}) ended in infrastructure errors, above --max-error-rate 10%" in text
    # the same run with a looser limit: nothing to run, nothing to report, exit 0
    r, text = _invoke("--max-error-rate", "0.9", out=out, cases=8, agent="exit-half-down")
    assert r.exit_code == 0 and "0 episodes run now" in text and "incomplete" not in text


def test_exit_2_and_one_line_for_a_full_disk_then_the_run_resumes(tmp_path, monkeypatch):
    out = tmp_path / "r"
    write = RunStore._write  # where every episode line is written (append and group commit)
    appended = []

    def full_after_two(self, episodes, lines=None):
        if len(appended) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.episodes_path))
        write(self, episodes, lines)
        appended.extend(e.episode_id for e in episodes)

    monkeypatch.setattr(RunStore, "_write", full_after_two)
    r, text = _invoke("--concurrency", "1", out=out)
    assert r.exit_code == 2, text
    assert _error_lines(text) == [
        f"error: {out / 'episodes.jsonl'}: the disk is full (No space left on device). Free "
        "some space and run the same command again: the episodes already stored are kept and "
        "the run resumes."
    ]
    assert "Traceback" not in text
    monkeypatch.undo()  # space freed: the same command resumes
    r, text = _invoke("--concurrency", "1", out=out)
    assert r.exit_code == 0 and "Resuming" in text and "2 of 4 episodes already stored" in text


def _as_unprivileged_user() -> list[str]:
    """A prefix that runs a command as `nobody` when we are root (root ignores chmod)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be simulated")
    prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    # an interpreter under /root (a pyenv build with a shared libpython) cannot start as nobody
    probe = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True, text=True)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"this Python cannot run as nobody ({why}): no read-only folder to simulate")
    return prefix


def test_exit_2_and_one_line_for_a_read_only_output_folder(tmp_path):
    prefix = _as_unprivileged_user()
    base = Path(tempfile.mkdtemp(prefix="clinicgym-ro-"))  # a folder `nobody` may enter
    try:
        os.chmod(base, 0o755)
        parent = base / "readonly"
        parent.mkdir()
        os.chmod(parent, 0o555)  # r-x: it can be listed, nothing can be created in it
        cmd = [*prefix, sys.executable, "-m", "clinicgym", "run", "-a", "oracle", "--cases"]
        cmd += ["2", "--kb", SMALL_KB, "--out", str(parent / "run"), "--quiet"]
        env = {**os.environ, "HOME": str(base), "COLUMNS": "300"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=base, timeout=300)
    finally:
        os.chmod(base / "readonly", 0o755)
        shutil.rmtree(base)
    assert done.returncode == 2, done.stderr
    assert _error_lines(done.stderr) == [
        f"error: {parent / 'run'}: cannot write there (Permission denied). Make the folder "
        "writable, or choose another --out directory."
    ]
    assert "Traceback" not in done.stderr + done.stdout


def _unfinished_run(out: Path, played: int) -> RunSpec:
    """A run that stopped (a crash) after `played` episodes: stored, never sealed."""
    spec = RunSpec(agents=["oracle"], cases=4, kb_dir=SMALL_KB, out=out, concurrency=1)
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    ctx.plan = ctx.plan[:played]
    try:
        asyncio.run(execute(ctx, store))
    finally:
        store.close()
    return spec


def test_a_corrupted_middle_line_is_one_line_and_retry_errored_replays_it(tmp_path):
    out = tmp_path / "r"
    _unfinished_run(out, played=3)
    log = out / "episodes.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1][:50] + b"\x00\xff garbage \xfe" + lines[1][80:]  # a damaged block
    log.write_bytes(b"".join(lines))
    r, text = _invoke(out=out)
    assert r.exit_code == 2 and "Traceback" not in text, text
    (line,) = _error_lines(text)
    assert line.startswith(f"error: {log}, line 2: not a valid episode (")
    assert line.endswith(
        "and --retry-errored moves unreadable lines to unreadable.jsonl and plays their episodes again"
    )
    r, text = _invoke("--retry-errored", out=out)
    assert r.exit_code == 0, text
    assert f"1 unreadable lines of {log} (line 2) moved to {out / 'unreadable.jsonl'}" in text
    assert (out / "unreadable.jsonl").read_bytes() == lines[1]
    ids = [json.loads(x)["episode_id"] for x in log.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 4  # the lost episode was played again, once


def test_an_edited_sealed_run_is_never_resealed(tmp_path):
    out = tmp_path / "r"
    r, text = _invoke(out=out)
    assert r.exit_code == 0, text
    manifest = json.loads((out / "manifest.json").read_text())
    log = out / "episodes.jsonl"
    log.write_text(log.read_text().replace('"turns":', '"turns": ', 1))  # one edit
    r, text = _invoke(out=out)
    assert r.exit_code == 2, text
    assert _error_lines(text) == [
        f"error: {out}: episodes.jsonl changed after the run was sealed ({manifest['sealed']}), "
        "so it is not resumed: that would seal the edited file as the run's own. Restore the "
        "file, or play the run again in a new --out directory."
    ]
    assert json.loads((out / "manifest.json").read_text()) == manifest  # not re-sealed
    r = CliRunner().invoke(app, ["runs", "list", str(tmp_path)])
    assert r.exit_code == 0 and "modified" in r.output, r.output
    r, text = _invoke("--retry-errored", out=out)  # nor by a retry
    assert r.exit_code == 2 and "changed after the run was sealed" in text


def test_exit_3_and_one_line_for_a_bug_inside_clinicgym(tmp_path, monkeypatch):
    def buggy(self, action, turn):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(ConsultationEnv, "_apply", buggy)
    out = tmp_path / "r"
    r, text = _invoke("--concurrency", "1", out=out)
    assert r.exit_code == 3, text
    (line,) = _error_lines(text)
    episode = f"oracle|{json.loads((out / 'manifest.json').read_text())['cases'][0]['id']}|r0"
    assert line.startswith(f"bug: clinicgym bug in episode {episode}: bug in env.step: oracle on ")
    assert "ZeroDivisionError: division by zero. The run stopped" in line
    assert f"The traceback is in {out / 'bug.txt'}" in line and "Traceback" not in text
    assert "in buggy" in (out / "bug.txt").read_text()
    assert not (out / "episodes.jsonl").exists() or not (out / "episodes.jsonl").read_text()
