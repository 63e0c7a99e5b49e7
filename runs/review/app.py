"""The review web app: runs, filtered episode lists, transcripts with the monitors' findings and
the scores beside each turn, annotation forms, and episodes in flight streamed as they happen.

Starlette, Jinja2 with autoescaping (a transcript is untrusted input: every model and patient
word is escaped), static files served from this package (no CDN), and the guards of
`security.py`. URLs name runs by their directory name and episodes by `episode_key`, never by
path, so nothing outside the run directories given at start can be read.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from clinicgym.runs.review.errors import ReviewDependencyError

try:
    import jinja2
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import (
        HTMLResponse,
        JSONResponse,
        RedirectResponse,
        Response,
        StreamingResponse,
    )
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ReviewDependencyError(
        "the review server needs Starlette and uvicorn: run `pip install 'clinicgym[review]'`"
    ) from e

from clinicgym.envs.episode import Episode, Event
from clinicgym.patients.cases.case import Case
from clinicgym.runs.review.annotation import (
    ANNOTATOR_PATTERN,
    PERSONA_FIELDS,
    Annotation,
    event_hash,
)
from clinicgym.runs.review.db import AnnotationDB
from clinicgym.runs.review.errors import AnnotationError, ReviewError
from clinicgym.runs.review.forms import turn_facts
from clinicgym.runs.review.rundir import KEY, OUTCOMES, EpisodeRow, RunView, event_hashes
from clinicgym.runs.review.security import (
    ANNOTATOR_COOKIE,
    GuardMiddleware,
    cookie_header,
    csrf_ok,
    csrf_token,
)
from clinicgym.scoring.metric_registry import shown_in

HERE = Path(__file__).parent
PAGE_SIZE = 200
SHOWN_METRICS = tuple(m.name for m in shown_in("review"))
"""Scores shown first beside a transcript (the rest are one click away; the metric registry)."""
FILTERS = ("agent", "outcome", "rule", "condition", "sex", "age_band", "ethnicity", "annotated")
HARMS = ("none", "mild", "moderate", "severe", "death")
STREAM_POLL_S = 0.2
STREAM_PING_S = 10.0
MAX_BODY = 256 * 1024
_ANNOTATOR = re.compile(ANNOTATOR_PATTERN)


def describe(a: Annotation) -> str:
    """A one-line account of a saved label."""
    lab = a.label
    when = a.created[:19].replace("T", " ")
    if lab.kind == "patient_turn":
        bits = [lab.verdict.replace("_", " ")]
        if lab.fact_id:
            bits.append(f"fact {lab.fact_id}")
        if lab.remove:
            bits.append("remove the fact")
        if lab.correction:
            bits.append(f"say: \u201c{lab.correction}\u201d")
        if lab.persona_field:
            bits.append(f"persona {lab.persona_field} = {lab.persona_value}")
        if lab.scope == "finding":
            bits.append("for every patient with this finding")
    elif lab.kind == "clinician_turn":
        bits = ["appropriate" if lab.appropriate else "not appropriate", f"harm: {lab.harm}"]
    elif lab.kind == "violation":
        bits = [f"{lab.verdict} with {lab.rule_id}"]
    elif lab.kind == "missed_violation":
        bits = [f"missed: {lab.rule_id} ({lab.severity})"]
    else:
        bits = [
            "acceptable" if lab.acceptable else "not acceptable",
            f"model's diagnosis correct: {lab.model_diagnosis_correct}",
        ]
        if lab.diagnosis:
            bits.append(f"my diagnosis: {lab.diagnosis}")
    note = getattr(lab, "note", "") or getattr(lab, "comment", "")
    if note:
        bits.append(f"note: {note}")
    return f"{'; '.join(bits)} (saved {when} UTC)"


class ReviewApp:
    """Request handlers over a set of run views and one annotation database."""

    def __init__(
        self, views: dict[str, RunView], db: AnnotationDB, *, secret: bytes | None = None
    ) -> None:
        self.views = views
        self.db = db
        self.secret = secret or secrets.token_bytes(32)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["pct"] = _pct
        self._rules: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    # ---- helpers ------------------------------------------------------------------------

    def view(self, request: Request) -> RunView:
        view = self.views.get(request.path_params["run_id"])
        if view is None:
            raise _NotFound(f"no run called {request.path_params['run_id']!r} is being reviewed")
        return view

    def annotator(self, request: Request) -> str | None:
        name = request.cookies.get(ANNOTATOR_COOKIE, "")
        return name if _ANNOTATOR.match(name) else None

    def base(self, request: Request) -> dict[str, Any]:
        session = request.scope.get("state", {}).get("session", "")
        return {
            "annotator": self.annotator(request),
            "csrf": csrf_token(self.secret, session),
            "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            "runs": self.views,
        }

    def render(self, name: str, code: int = 200, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(self.templates.get_template(name).render(**ctx), status_code=code)

    def rules(self, view: RunView) -> list[str]:
        """Rule ids of the run's policy packs (offered when reporting a missed violation)."""
        if view.run_id not in self._rules:
            ids: list[str] = []
            specs = view.manifest.spec.policy_packs
            if specs:
                try:
                    from clinicgym.policies.library import load_packs

                    ids = sorted({r.id for p in load_packs(specs) for r in p.rules})
                except Exception:
                    ids = []
            self._rules[view.run_id] = ids
        return self._rules[view.run_id]

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            return fn(*args)

    def check_post(self, request: Request, form: Any) -> None:
        session = request.scope.get("state", {}).get("session", "")
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host')}":
            raise _Forbidden(f"a form from {origin!r} cannot post here")
        if not csrf_ok(self.secret, session, form.get("csrf")):
            raise _Forbidden("the form's CSRF token is missing or stale: reload the page")

    # ---- pages --------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        def load() -> list[dict[str, Any]]:
            out = []
            for view in self.views.values():
                with self._lock:
                    rows = view.rows()
                    live = view.live()
                spec = view.manifest.spec
                out.append(
                    {
                        "id": view.run_id,
                        "created": view.manifest.created,
                        "agents": spec.agents,
                        "packs": spec.policy_packs,
                        "stored": len(rows),
                        "planned": view.manifest.planned_episodes(),
                        "live": len(live),
                        "annotated": len(self.db.annotated_episodes(view.run_id)),
                    }
                )
            return out

        runs = await run_in_threadpool(load)
        return self.render("index.html.j2", **self.base(request), run_list=runs)

    async def run_page(self, request: Request) -> Response:
        view = self.view(request)
        query = {k: request.query_params.get(k, "") for k in FILTERS}
        me = self.annotator(request)

        def load() -> tuple[list[EpisodeRow], list[Any], dict[str, set[str]]]:
            with self._lock:
                return view.rows(), view.live(), self.db.annotated_episodes(view.run_id)

        await run_in_threadpool(self._seal_run, view)
        rows, live, annotated = await run_in_threadpool(load)
        options = {
            "agent": sorted({r.agent for r in rows}),
            "outcome": list(OUTCOMES),
            "rule": ["any", "none", *sorted({x for r in rows for x in r.rules})],
            "condition": sorted({r.condition_id for r in rows if r.condition_id}),
            "sex": sorted({r.sex for r in rows if r.sex}),
            "age_band": sorted({r.age_band for r in rows if r.age_band}),
            "ethnicity": sorted({r.ethnicity for r in rows if r.ethnicity}),
            "annotated": ["by me", "by anyone", "not by me", "by no one"],
        }
        shown = [r for r in rows if _keep(r, query, annotated.get(r.episode_id, set()), me)]
        try:
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            page = 1
        pages = max(1, -(-len(shown) // PAGE_SIZE))
        page = min(page, pages)
        kept = {k: v for k, v in query.items() if v}
        return self.render(
            "run.html.j2",
            **self.base(request),
            view=view,
            rows=shown[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
            total=len(rows),
            matching=len(shown),
            page=page,
            pages=pages,
            page_query=lambda p: urlencode({**kept, "page": p}),
            query=query,
            options=options,
            live=live,
            annotated={k: len(v) for k, v in annotated.items()},
        )

    async def live_list(self, request: Request) -> Response:
        view = self.view(request)

        def load() -> list[Any]:
            with self._lock:
                return view.live()

        live = await run_in_threadpool(load)
        return JSONResponse(
            [
                {
                    "key": e.key,
                    "episode_id": e.episode_id,
                    "agent": e.agent_id,
                    "case_id": e.case_id,
                    "seconds": round(time.time() - e.started, 1),
                    "url": f"/runs/{view.run_id}/live/{e.key}",
                }
                for e in live
            ]
        )

    async def episode_page(self, request: Request) -> Response:
        view = self.view(request)
        key = _key(request)

        def load() -> tuple[Episode, EpisodeRow] | None:
            with self._lock:
                return view.episode(key)

        found = await run_in_threadpool(load)
        if found is None:
            if view.live_path(key).exists():
                return RedirectResponse(f"/runs/{view.run_id}/live/{key}", status_code=303)
            raise _NotFound(f"run {view.run_id} has no episode {key}")
        episode, row = found
        case = view.cases.get(episode.case_id)
        if case is None:
            raise _NotFound(f"run {view.run_id} has no case {episode.case_id} for this episode")
        await run_in_threadpool(self._seal, view, episode, row)
        me = self.annotator(request)
        labels = await run_in_threadpool(self._labels, view, episode.episode_id, me)
        metrics = view.metrics(episode)
        return self.render(
            "episode.html.j2",
            **self.base(request),
            view=view,
            key=key,
            live=False,
            page_url=f"/runs/{view.run_id}/episodes/{key}",
            episode_id=episode.episode_id,
            episode_hash=row.episode_hash,
            agent=episode.agent_id,
            status=f"{episode.status}, {episode.termination}",
            outcome=row.outcome,
            case=case,
            case_hash=episode.case_hash,
            events=[self._event(e, i, case, labels) for i, e in enumerate(episode.events)],
            metrics=metrics,
            shown_metrics=[m for m in SHOWN_METRICS if m in metrics],
            diagnoses=[d.name for d in episode.outcome.diagnoses],
            episode_label=labels.mine.get((-1, "episode", "")),
            **self._form_options(view),
        )

    async def live_page(self, request: Request) -> Response:
        view = self.view(request)
        key = _key(request)

        def load() -> Any:
            with self._lock:
                return view.row(key), view.read_live(key, with_events=False)

        row, live = await run_in_threadpool(load)
        if row is not None:
            return RedirectResponse(f"/runs/{view.run_id}/episodes/{key}", status_code=303)
        if live is None:
            raise _NotFound(f"run {view.run_id} has no episode {key} in flight")
        case = view.cases.get(live.case_id)
        if case is None:
            raise _NotFound(f"run {view.run_id} has no case {live.case_id}")
        me = self.annotator(request)
        labels = await run_in_threadpool(self._labels, view, live.episode_id, me)
        return self.render(
            "episode.html.j2",
            **self.base(request),
            view=view,
            key=key,
            live=True,
            page_url=f"/runs/{view.run_id}/live/{key}",
            episode_id=live.episode_id,
            episode_hash="",
            agent=live.agent_id,
            status="in flight",
            outcome="",
            case=case,
            case_hash=case.content_hash(),
            events=[],
            metrics={},
            shown_metrics=[],
            diagnoses=[],
            episode_label=labels.mine.get((-1, "episode", "")),
            **self._form_options(view),
        )

    async def stream(self, request: Request) -> Response:
        """Server-sent events: each event of an episode in flight as it is recorded (`turn`),
        then `done` with the stored episode's address once the runner stores it."""
        view = self.view(request)
        key = _key(request)
        try:
            last = int(request.headers.get("last-event-id", "-1"))
        except ValueError:
            last = -1
        me = self.annotator(request)
        page = {
            **self.base(request),
            **self._form_options(view),
            "view": view,
            "key": key,
            "page_url": f"/runs/{view.run_id}/live/{key}",
        }
        return StreamingResponse(
            self._live_events(view, key, last, me, page),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    async def _live_events(
        self, view: RunView, key: str, last: int, me: str | None, page: dict[str, Any]
    ) -> AsyncIterator[str]:
        """The stream's messages: each turn after event `last` as the live file grows (with a
        ping when nothing happened for a while), then how the episode ended."""
        offset = 0
        case: Case | None = None
        labels = Labels()
        quiet = 0.0
        yield "retry: 1000\n\n"
        while True:
            lines, new_offset = await run_in_threadpool(view.live_lines, key, offset)
            if new_offset < 0:
                yield await self._stream_end(view, key)
                return
            offset = new_offset
            for obj in lines:
                if obj.get("type") == "start":
                    case = view.cases.get(str(obj.get("case_id")))
                    episode_id = str(obj.get("episode_id"))
                    labels = await run_in_threadpool(self._labels, view, episode_id, me)
                    continue
                index = int(obj.get("index", -1))
                if index <= last or case is None:
                    continue
                event = Event.model_validate(obj["event"])
                html = self.templates.get_template("_event.html.j2").render(
                    **page, case=case, ev=self._event(event, index, case, labels)
                )
                last = index
                quiet = 0.0
                data = json.dumps({"index": index, "html": html})
                yield f"id: {index}\nevent: turn\ndata: {data}\n\n"
            await asyncio.sleep(STREAM_POLL_S)
            quiet += STREAM_POLL_S
            if quiet >= STREAM_PING_S:
                quiet = 0.0
                yield ": ping\n\n"

    async def _stream_end(self, view: RunView, key: str) -> str:
        """The stream's last message once the live file is gone: `done` with the stored
        episode's address (sealing the labels made while it was live), or `gone`."""
        stored = await run_in_threadpool(self._locked, view.episode, key)
        if stored is None:
            return "event: gone\ndata: {}\n\n"
        await run_in_threadpool(self._seal, view, *stored)
        url = f"/runs/{view.run_id}/episodes/{key}"
        return f"event: done\ndata: {json.dumps({'url': url})}\n\n"

    async def annotate(self, request: Request) -> Response:
        view = self.view(request)
        key = _key(request)
        form = await request.form(max_fields=64, max_files=0)
        wants_json = "application/json" in request.headers.get("accept", "")
        try:
            self.check_post(request, form)
            me = self.annotator(request)
            if me is None:
                raise AnnotationError("set your reviewer id (top right) before annotating")
            fields = {k: str(v) for k, v in form.items()}
            annotation = await run_in_threadpool(self._annotation, view, key, fields, me)
            await run_in_threadpool(self.db.add, annotation)
        except (AnnotationError, _Forbidden) as e:
            status = 403 if isinstance(e, _Forbidden) else 400
            if wants_json:
                return JSONResponse({"ok": False, "error": str(e)}, status_code=status)
            return self.render(
                "error.html.j2", status, **self.base(request), message=str(e), back=_back(form)
            )
        if wants_json:
            return JSONResponse({"ok": True, "id": annotation.id, "saved": describe(annotation)})
        anchor = f"#ev-{annotation.event_index}" if annotation.event_index >= 0 else "#episode"
        return RedirectResponse(_back(form) + anchor, status_code=303)

    async def set_annotator(self, request: Request) -> Response:
        form = await request.form(max_fields=8, max_files=0)
        try:
            self.check_post(request, form)
            name = str(form.get("annotator", "")).strip()
            if not _ANNOTATOR.match(name):
                raise AnnotationError(
                    f"reviewer id {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'"
                )
        except (AnnotationError, _Forbidden) as e:
            status = 403 if isinstance(e, _Forbidden) else 400
            return self.render(
                "error.html.j2", status, **self.base(request), message=str(e), back=_back(form)
            )
        response = RedirectResponse(_back(form), status_code=303)
        name_, value = cookie_header(ANNOTATOR_COOKIE, name, max_age=30 * 24 * 3600)
        response.raw_headers.append((name_, value))
        return response

    # ---- the data behind the pages ------------------------------------------------------

    def _labels(self, view: RunView, episode_id: str, me: str | None) -> Labels:
        """My current labels, and how many other reviewers labelled each event (their labels
        are not shown, so they cannot sway mine)."""
        out = Labels()
        seen: dict[int, set[str]] = {}
        for a in self.db.for_episode(view.run_id, episode_id):
            if a.annotator != me:
                seen.setdefault(a.event_index, set()).add(a.annotator)
            elif a.label.kind == "missed_violation":
                out.missed.setdefault(a.event_index, []).append(a)
            else:
                out.mine[(a.event_index, a.label.kind, a.label.target())] = a
        out.others = {i: len(s) for i, s in seen.items()}
        return out

    def _event(self, e: Event, i: int, case: Case, labels: Labels) -> dict[str, Any]:
        facts = {f.id: f for f in case.facts}
        fact_ids = turn_facts(e) if e.actor == "patient" else []
        mine = labels.mine
        return {
            "index": i,
            "turn": e.turn,
            "actor": e.actor,
            "text": e.text,
            "error": e.error,
            "tool": e.action.tool if e.action is not None else None,
            "hash": event_hash(e.turn, e.actor, e.text),
            "answers": [
                (a.get("concept", ""), a.get("status", ""))
                for a in (e.result.get("answers") or [])
                if isinstance(a, dict)
            ],
            "facts": [facts[f] for f in fact_ids if f in facts],
            "guarded": bool(e.result.get("guarded")),
            "violations": [
                (vi, v, mine.get((i, "violation", f"{v.pack}|{v.rule_id}|{vi}")))
                for vi, v in enumerate(e.violations)
            ],
            "patient_labels": [a for k, a in mine.items() if k[0] == i and k[1] == "patient_turn"],
            "clinician_label": mine.get((i, "clinician_turn", "")),
            "missed": labels.missed.get(i, []),
            "others": labels.others.get(i, 0),
        }

    def _seal(self, view: RunView, episode: Episode, row: EpisodeRow) -> int:
        """Annotations made while the episode was live get its stored hash and verdicts."""
        auto = view.auto_verdicts(episode).model_dump(mode="json")
        hashes = event_hashes(episode.events)
        return self.db.seal(view.run_id, episode.episode_id, row.episode_hash, hashes, auto)

    def _seal_run(self, view: RunView) -> None:
        from clinicgym.runs.review.live import episode_key

        for episode_id in self.db.unsealed(view.run_id):
            with self._lock:
                found = view.episode(episode_key(episode_id))
            if found is not None:
                self._seal(view, *found)

    def _form_options(self, view: RunView) -> dict[str, Any]:
        return {
            "persona_fields": PERSONA_FIELDS,
            "harms": HARMS,
            "rule_ids": self.rules(view),
            "describe": describe,
        }

    def _annotation(self, view: RunView, key: str, form: dict[str, str], me: str) -> Annotation:
        """The annotation a submitted form describes, checked against the transcript it was
        made on and pinned to the run's, episode's and case's hashes."""
        from clinicgym.runs.review.forms import parse_label
        from clinicgym.scoring.diagnosis import matches

        found = self._transcript(view, key)
        case = view.cases.get(found.case_id)
        if case is None:
            raise AnnotationError(f"run {view.run_id} has no case {found.case_id}")
        case_hash = found.case_hash or case.content_hash()
        kind = form.get("kind", "")
        index = _event_index(kind, form, len(found.events))
        event = found.events[index] if index >= 0 else None
        digest = _checked_event_hash(form, event)
        label = parse_label(kind, form, event)
        context = view.context(
            agent_id=found.agent_id,
            case=case,
            events=found.events,
            event_index=index,
            episode=found.episode,
            fact_id=getattr(label, "fact_id", None),
            violation_index=getattr(label, "violation_index", None),
        )
        if label.kind == "episode" and label.diagnosis:
            context.diagnosis_matches_case = matches(label.diagnosis, case.diagnosis)
        return Annotation(
            annotator=me,
            run_id=view.run_id,
            run_hash=view.run_hash,
            episode_id=found.episode_id,
            episode_hash=found.episode_hash,
            case_id=found.case_id,
            case_hash=case_hash,
            event_index=index,
            event_hash=digest,
            label=label,
            context=context,
        )

    def _transcript(self, view: RunView, key: str) -> _Transcript:
        """The episode a form was made on: stored, or else still in flight."""
        if not KEY.match(key):
            raise AnnotationError(f"episode key {key!r} is not valid")
        with self._lock:
            stored = view.episode(key)
            live = view.read_live(key) if stored is None else None
        if stored is not None:
            episode, row = stored
            return _Transcript(
                events=episode.events,
                agent_id=episode.agent_id,
                episode_id=episode.episode_id,
                case_id=episode.case_id,
                episode_hash=row.episode_hash,
                case_hash=episode.case_hash,
                episode=episode,
            )
        if live is not None:
            return _Transcript(
                events=live.events,
                agent_id=live.agent_id,
                episode_id=live.episode_id,
                case_id=live.case_id,
            )
        raise AnnotationError(f"run {view.run_id} has no episode {key}")


# ---- small helpers ----------------------------------------------------------------------------


@dataclass
class Labels:
    """One reviewer's current labels on an episode, and other reviewers' counts per event."""

    mine: dict[tuple[int, str, str], Annotation] = field(default_factory=dict)
    missed: dict[int, list[Annotation]] = field(default_factory=dict)
    others: dict[int, int] = field(default_factory=dict)


@dataclass
class _Transcript:
    """The events an annotation is made on, and what identifies them; a live episode has no
    stored episode or episode hash yet (nor a case hash: the case's own is used)."""

    events: list[Event]
    agent_id: str
    episode_id: str
    case_id: str
    episode_hash: str = ""
    case_hash: str = ""
    episode: Episode | None = None


def _event_index(kind: str, form: dict[str, str], n_events: int) -> int:
    """The event a form labels (-1 for the whole episode), checked against the transcript."""
    try:
        index = int(form.get("event_index", "-1"))
    except ValueError:
        raise AnnotationError(f"event_index {form.get('event_index')!r} is not a number") from None
    if kind == "episode":
        return -1
    if not 0 <= index < n_events:
        raise AnnotationError(f"event_index {index}: the transcript has {n_events} events")
    return index


def _checked_event_hash(form: dict[str, str], event: Event | None) -> str:
    """The labelled event's hash ("" for the episode); refuses a form made on another version
    of the turn."""
    if event is None:
        return ""
    digest = event_hash(event.turn, event.actor, event.text)
    if form.get("event_hash") != digest:
        raise AnnotationError(
            f"turn {event.turn} is not what this form was made on: reload the page"
        )
    return digest


class _NotFound(Exception):
    pass


class _Forbidden(Exception):
    pass


def _key(request: Request) -> str:
    key = request.path_params["key"]
    if not KEY.match(key):
        raise _NotFound(f"{key!r} is not an episode key")
    return key


def _back(form: Any) -> str:
    """Where to go after a form: a local path only (never another site)."""
    nxt = str(form.get("next", "/")) if form is not None else "/"
    if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        return "/"
    return nxt


def _pct(value: Any) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        return str(value)


def _keep(row: EpisodeRow, q: dict[str, str], annotators: set[str], me: str | None) -> bool:
    if q["agent"] and row.agent != q["agent"]:
        return False
    if q["outcome"] and row.outcome != q["outcome"]:
        return False
    if q["rule"] == "any" and not row.rules:
        return False
    if q["rule"] == "none" and row.rules:
        return False
    if q["rule"] not in ("", "any", "none") and q["rule"] not in row.rules:
        return False
    for name in ("condition", "sex", "age_band", "ethnicity"):
        attr = "condition_id" if name == "condition" else name
        if q[name] and getattr(row, attr) != q[name]:
            return False
    a = q["annotated"]
    if a == "by me" and me not in annotators:
        return False
    if a == "not by me" and me in annotators:
        return False
    if a == "by anyone" and not annotators:
        return False
    return not (a == "by no one" and annotators)


def create_app(
    run_dirs: list[Path],
    db: AnnotationDB,
    *,
    token: str | None = None,
    loopback_only: bool = True,
    secret: bytes | None = None,
) -> Starlette:
    """The ASGI app over these run directories (only these are ever read)."""
    from clinicgym.runs.review.rundir import open_runs

    app = ReviewApp(open_runs(run_dirs), db, secret=secret)

    async def not_found(request: Request, exc: Exception) -> Response:
        return app.render("error.html.j2", 404, **app.base(request), message=str(exc), back="/")

    async def review_error(request: Request, exc: Exception) -> Response:
        return app.render("error.html.j2", 400, **app.base(request), message=str(exc), back="/")

    routes = [
        Route("/", app.index),
        Route("/annotator", app.set_annotator, methods=["POST"]),
        Route("/runs/{run_id}", app.run_page),
        Route("/runs/{run_id}/live.json", app.live_list),
        Route("/runs/{run_id}/episodes/{key}", app.episode_page),
        Route("/runs/{run_id}/episodes/{key}/annotations", app.annotate, methods=["POST"]),
        Route("/runs/{run_id}/live/{key}", app.live_page),
        Route("/runs/{run_id}/live/{key}/stream", app.stream),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(GuardMiddleware, token=token, loopback_only=loopback_only)],
        exception_handlers={_NotFound: not_found, ReviewError: review_error},
        max_body_size=MAX_BODY,
    )
