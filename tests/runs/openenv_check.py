"""Run inside the OpenEnv venv (tests/runs/openenv_venv.sh) by tests/runs/test_openenv.py: two
real servers on 127.0.0.1 (uvicorn), one without a gate and one gated at 'high', played with
OpenEnv's own WebSocket client (typed `ConsultationClient`), three sessions at once. Prints `ok`
and the figures on success; any failed check raises."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.request
from typing import Any

import uvicorn

from clinicgym.runs.integrations.openenv_server import (
    ConsultAction,
    ConsultationClient,
    ConsultObservation,
    ConsultState,
    create_openenv_app,
)

PACKS = ["ai-transparency@2", "prescribing-safety@2"]


def _serve(app: Any) -> tuple[str, uvicorn.Server]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 300
    while not server.started:
        if time.time() > deadline:
            raise RuntimeError("the server did not start in 300 s")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


async def _consult(url: str, seed: int, lines: list[str]) -> dict[str, Any]:
    # generous time-outs: a cold first session loads the patient's encoder on a loaded machine
    async with ConsultationClient(
        base_url=url, connect_timeout_s=60, message_timeout_s=300
    ) as client:
        first = await client.reset(seed=seed)
        assert isinstance(first.observation, ConsultObservation), type(first.observation)
        assert first.observation.text.startswith("New consultation"), first.observation.text
        steps = []
        for line in lines:
            res = await client.step(ConsultAction(message=line))
            steps.append(res)
            if res.done:
                break
        state = await client.state()
        assert isinstance(state, ConsultState)
        return {"case": first.observation.case_id, "steps": steps, "state": state}


async def main() -> None:
    plain_url, plain = _serve(create_openenv_app(max_turns=6, policy_packs=PACKS))
    gated_url, gated = _serve(create_openenv_app(max_turns=6, policy_packs=PACKS, gate="high"))
    try:
        schema = json.load(urllib.request.urlopen(f"{plain_url}/schema", timeout=30))
        assert "message" in json.dumps(schema["action"]), schema
        lines = ["Any fever?", "PRESCRIBE: codeine 30 mg", "DIAGNOSIS: Migraine (40%)"]
        t0 = time.perf_counter()
        await _consult(plain_url, 0, lines[:1])  # warm: the first session loads what all share
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        runs = await asyncio.gather(
            _consult(plain_url, 3, lines),
            _consult(plain_url, 3, lines),
            _consult(plain_url, 4, lines),
            _consult(gated_url, 3, lines),
        )
        wall = time.perf_counter() - t0
        a, b, c, g = runs
        assert a["case"] == b["case"] != c["case"], [r["case"] for r in runs]
        assert [s.reward for s in a["steps"]] == [s.reward for s in b["steps"]]
        assert len(a["steps"]) == 3 and a["steps"][-1].done and a["state"].step_count == 3
        assert a["state"].done and not a["state"].gated
        first = a["steps"][0].observation.violations
        assert any(v["severity"] == "high" for v in first), first
        assert len(g["steps"]) == 1 and g["steps"][0].done and g["state"].gated
        assert g["steps"][0].observation.gated is True and g["steps"][0].observation.score
        print(
            f"ok: 4 sessions at once in {wall:.2f} s (a first session {warm:.1f} s); "
            f"case {a['case']} "
            f"rewards {[s.reward for s in a['steps']]}; gated after 1 step: "
            f"{[v['rule_id'] for v in g['steps'][0].observation.violations]}"
        )
    finally:
        plain.should_exit = gated.should_exit = True


if __name__ == "__main__":
    asyncio.run(main())
