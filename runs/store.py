"""The crash-safe run store: `runs/<id>/` with manifest, cases, append-only episodes, summary.

`episodes.jsonl` gets one line per finished episode, written whole and flushed (and fsynced), so
a crash loses at most the episodes in flight; a torn last line from a crash mid-write is cut off
when the run is reopened, and resuming skips every episode already on disk, so no episode is
run or stored twice. JSON files other than the episode log are replaced atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import platform
import queue
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from clinicgym import __version__
from clinicgym.envs.episode import Episode
from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import KnowledgeBase
from clinicgym.patients.patient.lexicon_files import lexicon_version
from clinicgym.runs import layout
from clinicgym.runs.casefile import LazyCases, RunCases, as_run_cases, read_case_lines
from clinicgym.runs.errors import RunError, StoreError
from clinicgym.runs.records import (
    MANIFEST_FORMAT_VERSION,
    CaseEntry,
    FileDigest,
    ManifestSpec,
    ManifestVersions,
    PackRecord,
    RunFileError,
    RunManifest,
    RunSummary,
    SuiteRecord,
    field_errors,
    read_manifest,
    read_summary,
)
from clinicgym.runs.spec import RunSpec


class RunStore:
    """One run directory. Open it with `RunStore.open(spec, ...)`; append episodes as they end."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.paths = layout.RunPaths(self.root)
        self.manifest_path = self.paths.manifest
        self.episodes_path = self.paths.episodes
        self.cases_path = self.paths.cases
        self.summary_path = self.paths.summary
        self.scores_path = self.paths.scores
        self._fh: Any = None
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self.commits = 0
        """fsyncs of grouped episodes by the writer thread (`commit`): fewer than episodes."""
        self.recovered_bytes = 0
        """Bytes of a torn last line cut off when the store was opened."""
        self.set_aside = 0
        """Errored episodes moved to errored.jsonl when opened with `retry_errored`."""
        self.unreadable: list[int] = []
        """Line numbers of unreadable lines moved to unreadable.jsonl (`retry_errored`)."""

    # ---- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, spec: RunSpec, cases: Sequence[Case], kb_version: str) -> RunStore:
        """Create the run directory, or reopen it to resume if it holds the same run. Cases are
        written one line each as they come (a generated case as its recipe, runs/casefile.py),
        so a run of any size writes them without holding them."""
        run_cases = as_run_cases(cases)
        store = cls(spec.out)
        store.root.mkdir(parents=True, exist_ok=True)
        if store.manifest_path.exists():
            store._check_same_run(spec, run_cases, kb_version)
            store._check_unedited()
        else:
            if store.episodes_path.exists() and store.episodes_path.stat().st_size > 0:
                raise RunError(
                    f"{store.root}: holds {layout.EPISODES} but no {layout.MANIFEST}; refusing "
                    "to mix runs. Use a new --out directory."
                )
            with open(store.cases_path, "w", encoding="utf-8") as fh:
                for i in range(len(run_cases)):
                    fh.write(run_cases.line(i) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            store._manifest(spec, run_cases, kb_version).write(store.manifest_path)
        store._repair_tail()
        if spec.retry_errored:
            store.set_aside = store.set_aside_errored()
        return store

    def _manifest(self, spec: RunSpec, cases: RunCases, kb_version: str) -> RunManifest:
        """The manifest of a new run: spec, identity, versions, cases, suite and packs."""
        hashes = [cases.known_hash(i) for i in range(len(cases))]
        suite = _suite_record(spec, cases)
        return RunManifest(
            format_version=MANIFEST_FORMAT_VERSION,
            run_id=self.root.name,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            spec=ManifestSpec.model_validate(spec.model_dump(mode="json")),
            identity=spec.identity(),
            versions=ManifestVersions(
                clinicgym=__version__,
                kb=kb_version,
                patient_lexicon=lexicon_version(),
                python=sys.version.split()[0],
                platform=platform.platform(),
            ),
            # a generated case's hash is known once it is realised: filled in at finalise
            cases=[CaseEntry(id=cid, hash=h) for cid, h in zip(cases.ids, hashes, strict=True)],
            cases_sha256=_sha_of(hashes),
            suite=SuiteRecord.model_validate(suite) if suite is not None else None,
            policy_packs=[PackRecord.model_validate(p) for p in _pack_records(spec)],
            command=list(sys.argv),
        )

    def _check_same_run(self, spec: RunSpec, cases: RunCases, kb_version: str) -> None:
        manifest = self.manifest()
        old = manifest.identity
        new = spec.identity()
        # a field added to the identity since the run began counts as its default there
        was = {k: old.get(k, _field_default(k)) for k in new}
        diffs = [f"{k}: {was[k]!r} -> {new[k]!r}" for k in new if was[k] != new[k]]
        if manifest.versions.kb != kb_version:
            diffs.append(f"kb version: {manifest.versions.kb} -> {kb_version}")
        lexicon = manifest.versions.patient_lexicon
        if lexicon is not None and lexicon != lexicon_version():
            diffs.append(f"patient lexicon: {lexicon} -> {lexicon_version()}")
        old_packs = [(p.ref, p.sha256) for p in manifest.policy_packs]
        new_packs = [(p["ref"], p["sha256"]) for p in _pack_records(spec)]
        if old_packs != new_packs:
            diffs.append(f"policy packs (ref, sha256): {old_packs} -> {new_packs}")
        old_cases = [(c.id, c.hash) for c in manifest.cases]
        # hashes are compared where both are known: a generated case not realised yet has none,
        # and the same spec and KB version generate the same cases
        same = len(old_cases) == len(cases) and all(
            cid == cases.ids[i] and (h is None or cases.known_hash(i) in (None, h))
            for i, (cid, h) in enumerate(old_cases)
        )
        if not diffs and not same:
            diffs.append("the cases differ (same spec, different generated cases)")
        if diffs:
            raise RunError(
                f"{self.root} holds a different run, so it cannot be resumed:\n  "
                + "\n  ".join(diffs)
                + "\nUse a new --out directory, or delete this one to start over."
            )

    def _check_unedited(self) -> None:
        """Refuse to resume a sealed run whose data files changed since: finalising would seal
        the edited bytes as the run's own, so it must stay 'modified' (`clinicgym runs list`)."""
        changed = self.changed_since_sealed()
        if changed:
            sealed = self.manifest().sealed or "?"
            raise StoreError(
                f"{self.root}: {', '.join(changed)} changed after the run was sealed ({sealed}), "
                "so it is not resumed: that would seal the edited file as the run's own. Restore "
                "the file, or play the run again in a new --out directory."
            )

    def _repair_tail(self) -> None:
        """Cut a torn last line (a crash mid-write) so appends start on a line boundary."""
        p = self.episodes_path
        if not p.exists():
            return
        size = p.stat().st_size
        if size == 0:
            return
        with open(p, "rb+") as fh:
            fh.seek(max(size - 1, 0))
            if fh.read(1) == b"\n":
                return
            data = p.read_bytes()
            cut = data.rfind(b"\n") + 1
            fh.truncate(cut)
            self.recovered_bytes = size - cut

    # ---- reading ------------------------------------------------------------------------

    def manifest(self) -> RunManifest:
        """The run's manifest (`RunFileError` naming the field when it is damaged)."""
        if not self.manifest_path.is_file():
            raise RunError(f"{self.root}: not a run directory (no {layout.MANIFEST})")
        return read_manifest(self.manifest_path)

    def summary(self) -> RunSummary:
        """The run's summary as finalise wrote it (`RunFileError` when missing or damaged)."""
        return read_summary(self.summary_path)

    def iter_episodes(self) -> Iterator[Episode]:
        """Episodes on disk, first copy of each id only; a torn last line is ignored."""
        if not self.episodes_path.exists():
            return
        seen: set[str] = set()
        with open(self.episodes_path, "rb") as fh:  # line by line: flat in the run's size
            yield from self._episodes_of(fh, seen)

    def _episodes_of(self, fh: Any, seen: set[str]) -> Iterator[Episode]:
        for n, line in enumerate(fh, start=1):
            if not line.endswith(b"\n"):
                break  # torn tail of a crashed write
            if not line.strip():
                continue
            ep = self._episode_line(line, n)
            if ep.episode_id in seen:
                continue
            seen.add(ep.episode_id)
            yield ep

    def episodes_by_case(
        self, case_ids: Sequence[str]
    ) -> Iterator[tuple[int | None, list[Episode]]]:
        """The stored episodes grouped by case, in the order of `case_ids` (then episodes whose
        case is not among them, index None), first copy of each id only, store order within a
        case. One pass indexes the lines' offsets, then one case's episodes are read at a time:
        finalise realises each case once however the episodes interleaved, holding no more
        than one case's episodes."""
        if not self.episodes_path.exists():
            return
        order = {cid: i for i, cid in enumerate(case_ids)}
        groups: dict[int | None, list[tuple[int, int]]] = {}
        seen: set[str] = set()
        with open(self.episodes_path, "rb") as fh:
            offset = 0
            for n, line in enumerate(fh, start=1):
                start, offset = offset, offset + len(line)
                if not line.endswith(b"\n"):
                    break  # torn tail of a crashed write
                if not line.strip():
                    continue
                ids = _episode_ids(line)
                if ids is None:  # unreadable: parsed (and reported) where it is read below
                    groups.setdefault(None, []).append((n, start))
                    continue
                if ids[0] in seen:
                    continue
                seen.add(ids[0])
                groups.setdefault(order.get(ids[1]), []).append((n, start))
            keys = sorted(k for k in groups if k is not None)
            for key in [*keys, None] if None in groups else keys:
                episodes = []
                for n, start in groups[key]:
                    fh.seek(start)
                    episodes.append(self._episode_line(fh.readline(), n))
                yield key, episodes

    def _episode_line(self, line: bytes, n: int) -> Episode:
        """Line `n` of episodes.jsonl as an episode, or the error that says how to recover."""
        try:
            return Episode.model_validate_json(line)
        except ValidationError as e:
            raise StoreError(
                f"{self.episodes_path}, line {n}: not a valid episode ({e.error_count()} "
                f"errors, first: {e.errors()[0]['msg']}); `clinicgym run` with the same "
                "options and --retry-errored moves unreadable lines to "
                f"{layout.UNREADABLE} and plays their episodes again"
            ) from None

    def finished_ids(self) -> set[str]:
        return {ep.episode_id for ep in self.iter_episodes()}

    def cases(self, kb: KnowledgeBase | None = None) -> list[Case]:
        """The run's cases, as generated when the run started: whole lines parsed, recipe
        lines regenerated (with `kb` if it is their KB version, else the one they name)."""
        return list(self.iter_cases(kb))

    def iter_cases(self, kb: KnowledgeBase | None = None) -> Iterator[Case]:
        """The run's cases one at a time (runs/casefile.py `read_case_lines`)."""
        if not self.cases_path.exists():
            raise RunError(f"{self.root}: no {layout.CASES}")
        with open(self.cases_path, encoding="utf-8") as fh:
            yield from read_case_lines(fh, kb, where=str(self.cases_path))

    def record_case_hashes(self, cases: Sequence[Case]) -> bool:
        """Write the hashes of generated cases realised since the run began into cases.jsonl
        and the manifest (at finalise, before `seal`); True if anything changed. Both files are
        replaced atomically, cases.jsonl first: a crash between leaves hashes only there."""
        if not isinstance(cases, LazyCases) or not cases.storable:
            return False
        manifest = self.manifest()
        listed = manifest.cases
        if len(listed) != len(cases):
            return False
        hashes = [c.hash or cases.known_hash(i) for i, c in enumerate(listed)]
        if hashes == manifest.case_hashes():
            return False
        tmp = self.cases_path.with_name(f".{self.cases_path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for i in range(len(cases)):
                cases.set_hash(i, hashes[i])
                fh.write(cases.line(i) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.cases_path)
        for entry, h in zip(listed, hashes, strict=True):
            entry.hash = h
        manifest.cases_sha256 = _sha_of(hashes)
        manifest.write(self.manifest_path)
        return True

    # ---- writing ------------------------------------------------------------------------

    def append(self, episode: Episode) -> None:
        """Append one finished episode as one whole line, flushed and fsynced."""
        self._write([episode])

    def _write(self, episodes: list[Episode], lines: list[str | None] | None = None) -> None:
        """Serialise episodes (or take `lines`, their JSON as already serialised), write them as
        whole lines and fsync once (under the store's lock: the writer thread and a direct
        `append` never interleave)."""
        texts = lines or [None] * len(episodes)
        data = "".join(
            (t if t is not None else ep.model_dump_json()) + "\n"
            for ep, t in zip(episodes, texts, strict=True)
        )
        with self._lock:
            if self._fh is None:
                self._fh = open(self.episodes_path, "a", encoding="utf-8")  # noqa: SIM115
            self._fh.write(data)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    async def commit(self, episode: Episode, line: str | None = None) -> None:
        """Store one finished episode without blocking the event loop: the store's writer
        thread serialises it and writes it with every episode queued meanwhile, one fsync for
        the group (group commit). Returns once its line is fsynced, so a caller counts an
        episode stored exactly when `append` would have: a crash loses only episodes in flight.
        `line`: the episode's JSON as a worker process serialised it (written as it is).
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(
                target=self._write_groups, name=f"runstore-{self.root.name}", daemon=True
            )
            self._writer.start()
        self._queue.put((episode, loop, done, line))
        await done

    def _write_groups(self) -> None:
        """The writer thread: take every queued episode (up to `GROUP_MAX`), write them with
        one fsync, wake their committers; a failed write fails its whole group."""
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            stop = False
            while len(group) < GROUP_MAX:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
            error: BaseException | None = None
            try:
                self._write([g[0] for g in group], [g[3] for g in group])
                self.commits += 1
            except BaseException as e:  # the committers raise it (a full disk, say)
                error = e
            for _, loop, done, _ in group:
                with contextlib.suppress(RuntimeError):  # a loop already closed
                    loop.call_soon_threadsafe(_settle, done, error)
            if stop:
                return

    def close(self) -> None:
        if self._writer is not None and self._writer.is_alive():
            self._queue.put(None)
            self._writer.join()
        self._writer = None
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def set_aside_errored(self) -> int:
        """Move the errored episodes out of the log so a resume plays them again; returns how
        many. They are appended to `errored.jsonl` (fsynced) before the log is replaced by its
        completed lines (atomically), so a crash in between loses nothing; at worst
        `errored.jsonl` lists an episode twice. Lines that are not a readable episode (a
        corrupted disk block, an edit) go byte for byte to `unreadable.jsonl`, their line
        numbers to `self.unreadable`: their episodes are not in the log, so they are played
        again too."""
        if not self.episodes_path.exists():
            return 0
        self.close()
        keep: list[bytes] = []
        aside: list[bytes] = []
        bad: list[bytes] = []
        with open(self.episodes_path, "rb") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.endswith(b"\n") or not line.strip():
                    continue  # a torn tail: _repair_tail cuts it
                try:
                    status = Episode.model_validate_json(line).status
                except ValidationError:
                    bad.append(line)
                    self.unreadable.append(n)
                    continue
                (aside if status == "error" else keep).append(line)
        if not aside and not bad:
            return 0
        for name, lines in ((layout.ERRORED, aside), (layout.UNREADABLE, bad)):
            if lines:
                with open(self.root / name, "ab") as fh:
                    fh.writelines(lines)
                    fh.flush()
                    os.fsync(fh.fileno())
        tmp = self.episodes_path.with_name(f".{self.episodes_path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            fh.writelines(keep)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.episodes_path)
        return len(aside)

    def write_summary(self, summary: RunSummary | dict[str, Any]) -> None:
        """Write summary.json through `RunSummary`, so a summary that is not one is never
        written (finalise hands in `summarise`'s document)."""
        try:
            record = RunSummary.model_validate(summary)
        except ValidationError as e:
            raise RunFileError(f"{self.summary_path}: {field_errors(e)}") from None
        record.write(self.summary_path)

    # ---- content hashes -----------------------------------------------------------------

    def content(self) -> dict[str, dict[str, Any]]:
        """sha256, size and line count of each of the run's data files that exists."""
        return {n: file_digest(self.root / n) for n in layout.SEALED if (self.root / n).exists()}

    def seal(self) -> dict[str, dict[str, Any]]:
        """Record the data files' hashes in the manifest (at finalise), so a later edit shows
        (`changed_since_sealed`, `clinicgym runs list`); resuming and finalising re-seal."""
        manifest = self.manifest()
        content = self.content()
        manifest.content = {n: FileDigest.model_validate(d) for n, d in content.items()}
        manifest.sealed = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest.write(self.manifest_path)
        return content

    def changed_since_sealed(self) -> list[str]:
        """Data files whose bytes differ from the sealed record (empty: unchanged or unsealed)."""
        sealed = self.manifest().content or {}
        now = self.content()
        return [n for n, rec in sealed.items() if now.get(n, {}).get("sha256") != rec.sha256]


GROUP_MAX = 256
"""Most episodes written with one fsync by the writer thread."""


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    """Wake a committer (on its loop): its episode is on disk, or the write failed."""
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def os_error_message(e: OSError, where: Path | str) -> str:
    """One line for a failed read or write during a run (`where`: the run directory, named when
    the error names no file): what happened, where, and what to do (a full disk, a folder that
    cannot be written, anything else with its errno)."""
    path = e.filename or where
    reason = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"{path}: the disk is full ({reason}). Free some space and run the same command "
            "again: the episodes already stored are kept and the run resumes."
        )
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"{path}: cannot write there ({reason}). Make the folder writable, or choose "
            "another --out directory."
        )
    code = errno.errorcode.get(e.errno or 0, "unknown errno")
    return f"{path}: {reason} ({code})."


def file_digest(path: Path) -> dict[str, Any]:
    """{'sha256', 'bytes', 'lines'} of a file, read in blocks."""
    h = hashlib.sha256()
    size = lines = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
            size += len(block)
            lines += block.count(b"\n")
    return {"sha256": h.hexdigest(), "bytes": size, "lines": lines}


def cases_sha256(cases: Sequence[Case]) -> str:
    """sha256 over the cases' content hashes in order: one id for a set of cases (the same
    value `clinicgym rl pin-suite` and the named suites freeze). Run cases (runs/casefile.py)
    give hashes they know without realising a case again."""
    run = as_run_cases(cases)
    h = hashlib.sha256()
    for i in range(len(run)):
        h.update(run.case_hash(i).encode())
    return h.hexdigest()


def _sha_of(hashes: Sequence[str | None]) -> str | None:
    """`cases_sha256` from hashes already computed; None while any is unknown."""
    if any(h is None for h in hashes):
        return None
    h = hashlib.sha256()
    for x in hashes:
        h.update(str(x).encode())
    return h.hexdigest()


_STR = rb'"((?:[^"\\]|\\.)*)"'
_IDS = re.compile(rb'^\{"format_version":\d+,"episode_id":' + _STR + rb',"case_id":' + _STR)
"""The head of a stored episode's line, as `Episode.model_dump_json` writes it."""


def _episode_ids(line: bytes) -> tuple[str, str] | None:
    """(episode_id, case_id) of an episodes.jsonl line, read from its head without parsing the
    transcript (any other layout parsed as JSON); None: not readable as an episode."""
    m = _IDS.match(line)
    if m is not None:
        return json.loads(b'"' + m[1] + b'"'), json.loads(b'"' + m[2] + b'"')
    try:
        data = json.loads(line)
        return str(data["episode_id"]), str(data["case_id"])
    except (ValueError, KeyError, TypeError):
        return None


def _field_default(name: str) -> Any:
    field = RunSpec.model_fields.get(name)
    return field.get_default(call_default_factory=True) if field is not None else None


def _suite_record(spec: RunSpec, cases: Sequence[Case]) -> dict[str, Any] | None:
    """Which suite version the run played (None: cases not from a suite)."""
    if not spec.suite:
        return None
    from clinicgym.runs.suite import suite_record

    return suite_record(spec.suite, cases)


def _pack_records(spec: RunSpec) -> list[dict[str, Any]]:
    """Id, version and content hash of every policy pack the run monitors."""
    if not spec.policy_packs:
        return []
    from clinicgym.policies.library import load_packs

    return [p.record() for p in load_packs(spec.policy_packs)]


@dataclass
class StoredRun:
    """What re-scoring, the compliance report and the run report need from a run directory."""

    root: Path
    manifest: RunManifest
    kb: KnowledgeBase
    cases: dict[str, Case]
    episodes: list[Episode]
    scenarios: list[str]
    agents: list[str]
    notes: list[str]


def load_run(run_dir: Path) -> StoredRun:
    """Manifest, KB, cases and episodes of a run; notes if the KB changed since it ran."""
    from clinicgym.patients.knowledge.kb import default_kb, load_kb

    store = RunStore(run_dir)
    manifest = store.manifest()
    spec = manifest.spec
    kb = load_kb(spec.kb_dir) if spec.kb_dir else default_kb()
    notes = []
    ran_with = manifest.versions.kb
    if ran_with and ran_with != kb.version:
        notes.append(
            f"The run used knowledge base {ran_with}; it is judged with {kb.version}. Drug facts "
            "may differ; episodes whose case cannot be rebuilt are reported as errors."
        )
    return StoredRun(
        root=store.root,
        manifest=manifest,
        kb=kb,
        cases={c.id: c for c in store.cases()},
        episodes=list(store.iter_episodes()),
        scenarios=list(spec.scenarios),
        agents=list(spec.agents),
        notes=notes,
    )
