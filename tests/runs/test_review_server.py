"""The review server over HTTP on 127.0.0.1 (a real uvicorn): pages, filters, annotating,
CSRF, Host and path guards, the token, and the live stream of an episode in flight."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from clinicgym.envs.episode import Event
from clinicgym.runs.review.db import AnnotationDB
from clinicgym.runs.review.live import LiveRecorder, episode_key
from clinicgym.runs.review.server import BackgroundServer, ServeSettings
from clinicgym.runs.store import RunStore
from tests.runs.review_support import (
    IMG,
    SCRIPT,
    csrf_of,
    episode_keys,
    forms,
    make_run,
    own_address,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "r1", ["unsafe", "xss"], cases=2)


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    db = AnnotationDB(tmp_path_factory.mktemp("db") / "ann.sqlite")
    with BackgroundServer([run_dir], db, ServeSettings(port=0)) as url:
        yield url, db


@pytest.fixture
def client(server):
    url, _ = server
    with httpx.Client(base_url=url, timeout=10) as c:
        yield c


def _sign_in(client, who="dr.lee"):
    csrf = csrf_of(client.get("/").text)
    r = client.post("/annotator", data={"csrf": csrf, "annotator": who, "next": "/"})
    assert r.status_code == 303
    return csrf


def test_pages_filters_and_headers(client):
    r = client.get("/")
    assert r.status_code == 200 and "/runs/r1" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "same-origin"
    all_rows = client.get("/runs/r1").text
    assert len(episode_keys(all_rows, "r1")) == 4
    only = client.get("/runs/r1", params={"agent": "xss"}).text
    assert len(episode_keys(only, "r1")) == 2 and "2 of 4 stored episodes match" in only
    flagged = client.get("/runs/r1", params={"rule": "any"}).text
    assert 1 <= len(episode_keys(flagged, "r1")) <= 4
    unflagged = client.get("/runs/r1", params={"rule": "none"}).text
    assert len(episode_keys(flagged, "r1")) + len(episode_keys(unflagged, "r1")) == 4
    assert client.get("/static/review.js").status_code == 200


def test_transcripts_are_escaped(client):
    rows = client.get("/runs/r1", params={"agent": "xss"}).text
    page = client.get(f"/runs/r1/episodes/{episode_keys(rows, 'r1')[0]}").text
    assert SCRIPT not in page and IMG not in page and "<b>pneumonia</b>" not in page
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=" in page


def test_annotating_through_forms_and_json(client, server):
    _, db = server
    _sign_in(client)
    rows = client.get("/runs/r1", params={"agent": "unsafe", "rule": "any"}).text
    key = episode_keys(rows, "r1")[0]
    page = client.get(f"/runs/r1/episodes/{key}").text
    violation = forms(page, "violation")[0]
    data = {**violation, "verdict": "disagree", "note": "the claim was accurate"}
    r = client.post(f"/runs/r1/episodes/{key}/annotations", data=data)
    assert r.status_code == 303 and r.headers["location"].endswith(
        f"#ev-{violation['event_index']}"
    )
    patient = next(f for f in forms(page, "patient_turn") if f["_facts"])
    fact = patient["_facts"].split(",")[0]
    data = {
        **patient,
        "verdict": "unrealistic",
        "fact_id": fact,
        "correction": "It's <i>worse</i>.",
    }
    r = client.post(
        f"/runs/r1/episodes/{key}/annotations", data=data, headers={"Accept": "application/json"}
    )
    assert r.status_code == 200 and r.json()["ok"], r.text
    again = client.get(f"/runs/r1/episodes/{key}").text
    assert "disagree with" in again and "It&#39;s &lt;i&gt;worse&lt;/i&gt;." in again
    mine = db.for_episode("r1", next(a.episode_id for a in db.all()), annotator="dr.lee")
    assert {a.label.kind for a in mine} == {"violation", "patient_turn"}
    a = next(x for x in mine if x.label.kind == "patient_turn")
    assert len(a.run_hash) == len(a.episode_hash) == len(a.case_hash) == 64
    assert a.context.fact.id == fact and a.context.auto.acceptable is not None
    # a fact the turn did not convey, a stale turn, and no reviewer id are refused
    bad = client.post(
        f"/runs/r1/episodes/{key}/annotations",
        data={**data, "fact_id": "f99"},
        headers={"Accept": "application/json"},
    )
    assert bad.status_code == 400 and "was not conveyed on this turn" in bad.json()["error"]
    stale = client.post(
        f"/runs/r1/episodes/{key}/annotations",
        data={**data, "event_hash": "0" * 64},
        headers={"Accept": "application/json"},
    )
    assert stale.status_code == 400 and "reload the page" in stale.json()["error"]
    with httpx.Client(base_url=str(client.base_url)) as anonymous:
        token = csrf_of(anonymous.get(f"/runs/r1/episodes/{key}").text)
        r = anonymous.post(
            f"/runs/r1/episodes/{key}/annotations",
            data={**data, "csrf": token},
            headers={"Accept": "application/json"},
        )
        assert r.status_code == 400 and "reviewer id" in r.json()["error"]


def test_csrf_origin_and_host_guards(client):
    _sign_in(client)
    rows = client.get("/runs/r1").text
    key = episode_keys(rows, "r1")[0]
    form = {"kind": "episode", "event_index": "-1", "acceptable": "yes"}
    r = client.post(f"/runs/r1/episodes/{key}/annotations", data=form)
    assert r.status_code == 403 and "CSRF" in r.text
    csrf = csrf_of(client.get("/").text)
    r = client.post(
        f"/runs/r1/episodes/{key}/annotations",
        data={**form, "csrf": csrf},
        headers={"Origin": "http://evil.example"},
    )
    assert r.status_code == 403
    with httpx.Client(base_url=str(client.base_url)) as other:  # another browser session
        r = other.post(f"/runs/r1/episodes/{key}/annotations", data={**form, "csrf": csrf})
        assert r.status_code == 403
    r = client.get("/", headers={"Host": "evil.example:8800"})  # DNS rebinding
    assert r.status_code == 400 and "not allowed" in r.text


@pytest.mark.parametrize(
    "path",
    [
        "/static/../manifest.json",
        "/static/%2e%2e/%2e%2e/manifest.json",
        "/static/..%2f..%2fapp.py",
        "/runs/%2e%2e",  # httpx folds a literal "/runs/.." to "/" before sending
        "/runs/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/runs/r2",
        "/runs/r1/episodes/..%2f..%2fmanifest.json",
        "/runs/r1/episodes/" + "g" * 20,
        "/runs/r1/live/" + "0" * 20,
        "/runs/r1/live/..%2fepisodes/stream",
    ],
)
def test_nothing_outside_the_run_directories_is_served(client, path):
    r = client.get(path)
    assert r.status_code in (400, 404), (path, r.status_code)
    assert '"run_id"' not in r.text and "import" not in r.text


def test_a_token_is_required_when_set(run_dir, tmp_path):
    db = AnnotationDB(tmp_path / "t.sqlite")
    token = "t0ken-" + "x" * 20
    with BackgroundServer([run_dir], db, ServeSettings(port=0, token=token)) as url:
        assert httpx.get(url + "/runs/r1").status_code == 401
        assert httpx.get(url + "/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        with httpx.Client(base_url=url) as c:
            r = c.get("/runs/r1", params={"token": token, "agent": "xss"})
            assert r.status_code == 303 and r.headers["location"] == "/runs/r1?agent=xss"
            assert "HttpOnly" in r.headers["set-cookie"] and token not in r.headers["location"]
            assert c.get("/runs/r1").status_code == 200  # the cookie carries it now
        assert httpx.get(url + "/?token=wrong").status_code == 401


def test_an_episode_in_flight_streams_then_points_to_the_stored_one(run_dir, server, sampler):
    url, db = server
    store = RunStore(run_dir)
    episode = next(store.iter_episodes())
    case = next(c for c in store.cases() if c.id == episode.case_id)
    live_id = f"{episode.agent_id}|{episode.case_id}|r9"
    key = episode_key(live_id)
    rec = LiveRecorder(run_dir, episode_id=live_id, agent_id=episode.agent_id)
    rec.reset(case)
    history: list[Event] = []
    for ev in episode.events[:2]:
        rec.observe(ev, history)
        history.append(ev)
    got: list[tuple[str, dict]] = []

    def read_stream():
        with httpx.stream("GET", f"{url}/runs/r1/live/{key}/stream", timeout=20) as r:
            name = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name:
                    got.append((name, json.loads(line[6:])))
                    if name in ("done", "gone"):
                        return

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    assert httpx.get(f"{url}/runs/r1/live/{key}").status_code == 200
    listed = httpx.get(f"{url}/runs/r1/live.json").json()
    assert [x["key"] for x in listed] == [key]
    # annotate while it runs
    with httpx.Client(base_url=url) as c:
        csrf = _sign_in(c, "dr.live")
        page = c.get(f"/runs/r1/live/{key}").text
        assert 'data-stream="/runs/r1/live/' in page
        r = c.post(
            f"/runs/r1/episodes/{key}/annotations",
            data={"csrf": csrf, "kind": "episode", "event_index": "-1", "acceptable": "yes"},
            headers={"Accept": "application/json"},
        )
        assert r.json()["ok"], r.text
    time.sleep(0.5)
    for ev in episode.events[2:]:
        rec.observe(ev, history)
        history.append(ev)
    time.sleep(0.5)
    stored = episode.model_copy(update={"episode_id": live_id, "repeat": 9})
    store.append(stored)
    store.close()
    rec.close()
    reader.join(timeout=15)
    turns = [d["index"] for n, d in got if n == "turn"]
    assert turns == list(range(len(episode.events)))
    assert re.search(r'id="ev-0"', got[0][1]["html"])
    assert got[-1] == ("done", {"url": f"/runs/r1/episodes/{key}"})
    # the label made while live is sealed with the stored episode's hash and verdicts
    (a,) = [x for x in db.all() if x.episode_id == live_id]
    assert a.episode_hash and a.context.auto.acceptable is not None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def test_the_serve_command_makes_up_a_token_beyond_loopback(run_dir, tmp_path):
    host = own_address()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address to bind")
    port = _free_port(host)
    cmd = [sys.executable, "-m", "clinicgym.runs.cli", "review", "serve", str(run_dir)]
    cmd += ["--host", host, "--port", str(port), "--db", str(tmp_path / "a.sqlite")]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ}
    )
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "Open " not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line or proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
        m = re.search(r"Open (http://\S+/\?token=(\S+))", line)
        assert m and m.group(1).startswith(f"http://{host}:{port}/"), line
        assert len(m.group(2)) >= 16
        with httpx.Client(trust_env=False, timeout=10) as c:
            for _ in range(100):  # the line is printed just before uvicorn binds
                try:
                    refused = c.get(f"http://{host}:{port}/runs/r1")
                    break
                except httpx.ConnectError:
                    time.sleep(0.1)
            assert refused.status_code == 401
            opened = c.get(m.group(1), follow_redirects=True)
            assert opened.status_code == 200 and "/runs/r1" in opened.text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
