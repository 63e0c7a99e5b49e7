"""The review server in headless Chromium (Debian's, driven by Playwright; nothing downloaded):
annotate a patient turn and a violation, reload and see them; a transcript's markup never runs;
an episode in flight streams into the page and can be annotated while it runs; bound beyond
loopback, a request without the token is refused."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from clinicgym.envs.episode import Event
from clinicgym.runs.review.db import AnnotationDB
from clinicgym.runs.review.live import LiveRecorder, episode_key
from clinicgym.runs.review.server import BackgroundServer, ServeSettings
from clinicgym.runs.store import RunStore
from tests.runs.review_support import IMG, SCRIPT, make_run, own_address

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",  # every request of these tests stays on this machine
]


@pytest.fixture(scope="module")
def sync_api():
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's chromium is not installed (apt-get install -y chromium; .ci/run does)"
        )
    return pytest.importorskip("playwright.sync_api", reason="pip install playwright")


@pytest.fixture
def browser(sync_api, tmp_path):
    """A fresh Chromium profile per test; every request it makes is recorded."""
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), args=ARGS, headless=True
        )
        context.set_default_timeout(15_000)
        context.requests = []  # type: ignore[attr-defined]
        context.on("request", lambda r: context.requests.append(r.url))  # type: ignore[attr-defined]
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "r1", ["unsafe", "xss"], cases=2)


def _key(run_dir, agent: str, flagged: bool = False) -> str:
    for ep in RunStore(run_dir).iter_episodes():
        if ep.agent_id == agent and (not flagged or any(e.violations for e in ep.events)):
            return episode_key(ep.episode_id)
    raise AssertionError(f"no {agent} episode{' with a violation' if flagged else ''}")


def test_annotate_a_patient_turn_and_a_violation_then_reload(browser, run_dir, tmp_path):
    db = AnnotationDB(tmp_path / "ann.sqlite")
    with BackgroundServer([run_dir], db, ServeSettings(port=0)) as url:
        page = browser.new_page()
        page.goto(url + "/")
        page.fill("#annotator", "dr.web")
        with page.expect_navigation():
            page.click("form.who button[type=submit]")
        assert page.input_value("#annotator") == "dr.web", page.inner_text("body")
        page.goto(f"{url}/runs/r1?agent=unsafe&rule=any")
        page.click(f"a[href='/runs/r1/episodes/{_key(run_dir, 'unsafe', True)}']")
        page.wait_for_selector("#transcript")

        violation = page.locator("form.annotate:has(input[name=kind][value=violation])").first
        violation.locator("input[name=verdict][value=disagree]").check()
        violation.locator("input[name=note]").fill("the reply was accurate")
        violation.locator("button[type=submit]").click()
        saved_v = violation.locator(".saved")
        saved_v.filter(has_text="disagree with").wait_for()

        patient = page.locator("form.patient-form:has(select[name=fact_id])").first
        patient.locator("input[name=verdict][value=unrealistic]").check()
        patient.locator("textarea[name=correction]").fill("It's <i>much</i> worse at night.")
        patient.locator("button[type=submit]").click()
        patient.locator(".saved").filter(has_text="say:").wait_for()

        page.reload()
        page.wait_for_selector("#transcript")
        saved = page.locator(".saved").all_inner_texts()
        assert any("disagree with" in s and "the reply was accurate" in s for s in saved)
        assert any("It's <i>much</i> worse at night." in s for s in saved)  # shown as text
        assert page.locator("#transcript i").count() == 0
        page.close()
    mine = [a for a in db.all() if a.annotator == "dr.web"]
    db.close()
    assert sorted(a.label.kind for a in mine) == ["patient_turn", "violation"]
    assert all(len(a.episode_hash) == 64 and len(a.run_hash) == 64 for a in mine)
    assert all(u.startswith(url) for u in browser.requests)  # no CDN, nothing off this machine


def test_markup_in_a_transcript_does_not_run(browser, run_dir, tmp_path):
    db = AnnotationDB(tmp_path / "ann.sqlite")
    with BackgroundServer([run_dir], db, ServeSettings(port=0)) as url:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/runs/r1/episodes/{_key(run_dir, 'xss')}")
        page.wait_for_selector("#transcript")
        text = page.inner_text("#transcript")
        assert SCRIPT in text and IMG in text and "<b>pneumonia</b>" in text
        page.wait_for_timeout(300)  # give an onerror handler time to fire, had it been parsed
        assert page.evaluate("window.__pwned") is None
        assert page.locator("#transcript .text *").count() == 0  # the words stay text
        assert page.locator("#transcript script, #transcript img").count() == 0
        assert not errors
        page.close()
    db.close()


def test_a_live_episode_streams_in_and_is_annotated_while_it_runs(browser, run_dir, tmp_path):
    store = RunStore(run_dir)
    episode = next(e for e in store.iter_episodes() if e.agent_id == "xss")
    case = next(c for c in store.cases() if c.id == episode.case_id)
    live_id = f"xss|{episode.case_id}|r7"
    key = episode_key(live_id)
    rec = LiveRecorder(run_dir, episode_id=live_id, agent_id="xss")
    rec.reset(case)
    history: list[Event] = []

    def play(events: list[Event]) -> None:
        for ev in events:
            rec.observe(ev, history)
            history.append(ev)

    db = AnnotationDB(tmp_path / "ann.sqlite")
    try:
        with BackgroundServer([run_dir], db, ServeSettings(port=0)) as url:
            page = browser.new_page()
            page.goto(url + "/")
            page.fill("#annotator", "dr.live")
            with page.expect_navigation():
                page.click("form.who button[type=submit]")
            page.goto(f"{url}/runs/r1/episodes/{key}")  # not stored yet: the live page
            assert f"/runs/r1/live/{key}" in page.url
            play(episode.events[:2])
            page.wait_for_selector("#ev-1")
            assert page.locator("#transcript article.event").count() == 2
            assert page.evaluate("window.__pwned") is None  # streamed turns are escaped too
            first = page.locator("#ev-0 form.patient-form")
            first.locator("input[name=verdict][value=inconsistent]").check()
            first.locator("input[name=note]").fill("contradicts the chart")
            first.locator("button[type=submit]").click()
            first.locator(".saved").filter(has_text="inconsistent").wait_for()
            play(episode.events[2:])
            page.wait_for_selector(f"#ev-{len(episode.events) - 1}")
            store.append(episode.model_copy(update={"episode_id": live_id, "repeat": 7}))
            store.close()
            rec.close()
            page.wait_for_selector("#stored-link")
            page.click("#stored-link")
            page.wait_for_selector("#transcript")
            assert page.url.endswith(f"/runs/r1/episodes/{key}")
            assert "contradicts the chart" in page.inner_text("#ev-0")
            page.close()
        (label,) = [a for a in db.all() if a.episode_id == live_id]
        assert label.annotator == "dr.live" and len(label.episode_hash) == 64  # sealed
    finally:
        rec.close()
        db.close()


def test_beyond_loopback_a_request_without_the_token_is_refused(browser, run_dir, tmp_path):
    host = own_address()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address to bind")
    token = "tok-" + "z" * 24
    db = AnnotationDB(tmp_path / "ann.sqlite")
    with BackgroundServer([run_dir], db, ServeSettings(host=host, port=0, token=token)) as url:
        assert url.startswith(f"http://{host}:")
        page = browser.new_page()
        refused = page.goto(url + "/runs/r1")
        assert refused is not None and refused.status == 401
        assert "needs its access token" in page.inner_text("body")
        assert "r1" not in page.inner_text("body")
        with httpx.Client(trust_env=False) as c:  # a script without the token: refused too
            assert c.get(url + "/").status_code == 401
            assert c.get(url + "/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        opened = page.goto(f"{url}/?token={token}")
        assert opened is not None and opened.status == 200
        assert "token=" not in page.url  # the token moved into an HttpOnly cookie
        assert page.evaluate("document.cookie").find(token) == -1
        listed = page.goto(url + "/runs/r1")
        assert listed is not None and listed.status == 200
        assert "stored episodes" in page.inner_text("body")
        page.close()
    db.close()
