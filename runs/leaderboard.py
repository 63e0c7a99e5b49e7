"""Leaderboard submissions: pack a finished run into a bundle, verify a bundle, build the site.

A bundle is a zip of the run's `manifest.json`, `cases.jsonl`, `episodes.jsonl` (the
transcripts) and `summary.json` (the claimed numbers), plus `bundle.json` with each file's
sha256. `verify` rejects a bundle, with every reason, when: a file's bytes do not match its
hash (in `bundle.json` or in the manifest's sealed record); the cases are not the suite
version's frozen cases; a planned episode (agent x case x repeat) is missing or stored twice; a
policy pack is not the published version; or re-scoring the transcripts with this install
does not give the claimed summary. A forger who edits a transcript *and* recomputes every
hash and the summary is not caught by hashes alone (there is no signature); re-scoring then
only proves the numbers follow from the transcripts as submitted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tempfile
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinicgym import __version__
from clinicgym.errors import ClinicGymError
from clinicgym.runs.errors import LeaderboardError, RunError
from clinicgym.runs.store import SEALED_FILES, RunStore, cases_sha256

BUNDLE_FORMAT_VERSION = 1
BUNDLE_INDEX = "bundle.json"
BUNDLE_FILES = ("manifest.json", *SEALED_FILES)
"""What a bundle carries besides its index: the manifest, cases, transcripts, summary."""
BOARD_METRICS = (
    "diagnostic_accuracy",
    "top3_accuracy",
    "inquiry_coverage",
    "missed_escalation",
    "unsafe_prescriptions",
    "compliance_pass",
    "risk_score",
)
"""Columns of the leaderboard page (each a mean with its 95% interval)."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- submit --------------------------------------------------------------------------------


def pack(run_dir: Path | str, out: Path | str | None = None) -> Path:
    """Write the submission bundle of a finished, sealed and unmodified run; returns its path.
    Default: `<run_id>.submission.zip` in the current directory."""
    store = RunStore(Path(run_dir))
    if not store.manifest_path.exists():
        raise LeaderboardError(f"{run_dir}: not a run directory (no manifest.json)")
    manifest = store.manifest()
    problems = [f"no {n}" for n in BUNDLE_FILES if not (store.root / n).exists()]
    if not manifest.get("content"):
        problems.append("the run was never finalised (no content hashes in manifest.json)")
    changed = store.changed_since_sealed() if not problems else []
    if changed:
        problems.append(f"{', '.join(changed)} changed since the run was finalised")
    if not problems:
        summary = json.loads(store.summary_path.read_text(encoding="utf-8"))
        planned, stored = summary.get("planned_episodes"), summary.get("stored_episodes")
        if planned != stored:
            problems.append(f"only {stored} of {planned} planned episodes are stored")
    if problems:
        raise LeaderboardError(
            f"cannot submit {run_dir}: " + "; ".join(problems) + " (finish or resume the run "
            "with the same `clinicgym run ... --out` first)"
        )
    run_id = manifest.get("run_id", store.root.name)
    out = Path(out) if out else Path(f"{run_id}.submission.zip")
    files = {n: (store.root / n).read_bytes() for n in BUNDLE_FILES}
    index = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "run_id": run_id,
        "packed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "clinicgym": __version__,
        "suite": manifest.get("suite"),
        "agents": manifest.get("spec", {}).get("agents", []),
        "files": {n: {"sha256": _sha256(b), "bytes": len(b)} for n, b in files.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(BUNDLE_INDEX, json.dumps(index, indent=2) + "\n")
        for n, b in files.items():
            z.writestr(n, b)
    tmp.replace(out)
    return out


# ---- verify --------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What `verify` found: accepted when `problems` is empty; `info` feeds the leaderboard."""

    bundle: str
    problems: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return not self.problems


def _read_bundle(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if BUNDLE_INDEX not in names:
                raise LeaderboardError(f"{path}: no {BUNDLE_INDEX}; not a clinicgym submission")
            index = json.loads(z.read(BUNDLE_INDEX))
            files = {n: z.read(n) for n in BUNDLE_FILES if n in names}
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise LeaderboardError(f"{path}: cannot read the bundle ({e})") from None
    return index, files


def verify(bundle: Path | str, *, rescore: bool = True) -> Verdict:
    """Check a submission bundle (see the module docstring); every reason is collected."""
    path = Path(bundle)
    verdict = Verdict(str(path))
    index, files = _read_bundle(path)
    p = verdict.problems
    # 1. hashes: the index's, and the manifest's sealed record
    for n in BUNDLE_FILES:
        if n not in files:
            p.append(f"{n} is missing from the bundle")
            continue
        want = index.get("files", {}).get(n, {}).get("sha256")
        if want != _sha256(files[n]):
            p.append(f"{n}: sha256 {_sha256(files[n])[:16]}... does not match bundle.json")
    if "manifest.json" not in files:
        return verdict
    manifest = json.loads(files["manifest.json"])
    for n, rec in (manifest.get("content") or {}).items():
        if n in files and rec.get("sha256") != _sha256(files[n]):
            p.append(f"{n} was edited after the run was finalised (manifest sha256 differs)")
    if not manifest.get("content"):
        p.append("manifest.json has no content hashes: the run was never finalised")
    if any(n not in files for n in SEALED_FILES):
        return verdict
    with tempfile.TemporaryDirectory(prefix="clinicgym-verify-") as tmp:
        root = Path(tmp)
        for n, b in files.items():
            (root / n).write_bytes(b)
        _check_run(RunStore(root), manifest, json.loads(files["summary.json"]), verdict, rescore)
    return verdict


def _check_run(
    store: RunStore,
    manifest: dict[str, Any],
    summary: dict[str, Any],
    verdict: Verdict,
    rescore: bool,
) -> None:
    from clinicgym.envs.episode import Episode
    from clinicgym.runs.runner import plan_episodes
    from clinicgym.runs.spec import RunSpec

    p = verdict.problems
    spec = manifest.get("spec", {})
    try:
        cases = store.cases()
    except (RunError, ValueError) as e:
        p.append(f"cases.jsonl: {e}")
        return
    got = cases_sha256(cases)
    if [(c.id, c.content_hash()) for c in cases] != [
        (c["id"], c["hash"]) for c in manifest.get("cases", [])
    ]:
        p.append("cases.jsonl does not match the case hashes in manifest.json")
    suite = manifest.get("suite") or {}
    frozen = suite.get("frozen_sha256") or _published_sha256(suite, p)
    if frozen and got != frozen:
        p.append(
            f"the cases hash to {got[:16]}..., not to suite {suite.get('ref')}'s frozen "
            f"{frozen[:16]}...: not the suite's cases"
        )
    if not suite:
        p.append("the run did not play a named suite (run it with `clinicgym run --suite`)")
    # 2. every planned episode once
    lines = store.episodes_path.read_bytes().splitlines()
    seen: Counter[str] = Counter()
    episodes: list[Episode] = []
    for i, line in enumerate(lines, start=1):
        try:
            ep = Episode.model_validate_json(line)
        except ValueError:
            p.append(f"episodes.jsonl line {i}: not an episode")
            continue
        seen[ep.episode_id] += 1
        if seen[ep.episode_id] == 1:
            episodes.append(ep)
    try:
        planned = [x.episode_id for x in plan_episodes(RunSpec.model_validate(spec), cases)]
    except ValueError as e:
        p.append(f"manifest.json: the spec is not valid ({e})".replace("\n", " "))
        return
    ep_ids = {e.episode_id: e for e in episodes}
    missing = [x for x in planned if x not in ep_ids]
    missing_cases = sorted({x.split("|")[-2] for x in missing})
    if missing:
        p.append(
            f"{len(missing)} planned episodes are missing (cases {', '.join(missing_cases[:5])}"
            f"{' ...' if len(missing_cases) > 5 else ''}): every case of the suite must be run"
        )
    twice = sorted(k for k, n in seen.items() if n > 1)
    if twice:
        p.append(f"{len(twice)} episodes are stored more than once, e.g. {twice[0]}")
    extra = sorted(set(ep_ids) - set(planned))
    if extra:
        p.append(f"{len(extra)} episodes were not planned, e.g. {extra[0]}")
    # 3. pack versions as published
    packs = manifest.get("policy_packs", [])
    p.extend(_pack_problems(packs))
    verdict.info.update(
        run_id=manifest.get("run_id"),
        suite=suite.get("ref") or "",
        cases_sha256=got,
        kb_version=manifest.get("versions", {}).get("kb", ""),
        clinicgym=manifest.get("versions", {}).get("clinicgym", ""),
        packs=[f"{x['id']}@{x['version']}" for x in packs],
        summary=summary,
    )
    # 4. re-score
    if rescore:
        p.extend(_rescore_problems(spec, manifest, cases, episodes, summary))


def _published_sha256(suite: dict[str, Any], problems: list[str]) -> str | None:
    """The frozen cases hash of the suite version the run names, from this install's registry."""
    if not suite.get("name"):
        return None
    from clinicgym.runs.errors import SuiteError
    from clinicgym.runs.suite import lookup

    try:
        return lookup(str(suite["ref"]))[2].cases_sha256
    except SuiteError as e:
        problems.append(f"suite {suite['ref']}: {e}")
        return None


def _pack_problems(packs: list[dict[str, Any]]) -> list[str]:
    from clinicgym.policies.library import load_packs

    out = []
    for rec in packs:
        ref = f"{rec['id']}@{rec['version']}"
        try:
            (published,) = load_packs([ref])
        except ClinicGymError as e:
            out.append(f"policy pack {ref}: not available here ({e})")
            continue
        if published.sha256 != rec.get("sha256"):
            out.append(f"policy pack {ref}: sha256 differs from the published pack")
    return out


def _rescore_problems(
    spec: dict[str, Any],
    manifest: dict[str, Any],
    cases: list[Any],
    episodes: list[Any],
    summary: dict[str, Any],
) -> list[str]:
    """Re-score the transcripts as `finalise` does; list where the claimed summary differs."""
    from clinicgym.patients.kb import default_kb, load_kb
    from clinicgym.runs.summary import score_table, summarise
    from clinicgym.scoring.metrics import EpisodeScorer

    kb_dir = spec.get("kb_dir")
    kb = load_kb(kb_dir) if kb_dir and Path(kb_dir).is_dir() else default_kb()
    want_kb = manifest.get("versions", {}).get("kb")
    if kb.version != want_kb:
        return [f"cannot re-score: the run used KB {want_kb}, this install has {kb.version}"]
    scorer = EpisodeScorer(kb, spec.get("scenarios", []), monitored=bool(spec.get("policy_packs")))
    table = score_table(episodes, {c.id: c for c in cases}, scorer)
    prices = {k: tuple(v) for k, v in spec.get("prices", {}).items()}
    again = summarise(table, list(spec.get("agents", [])), summary.get("run_id", ""), prices)
    fresh = json.loads(json.dumps(again["agents"], default=str))
    diffs = _diff(summary.get("agents", {}), fresh, "agents")
    if not diffs:
        return []
    return [
        f"re-scoring the transcripts does not give the claimed numbers: {len(diffs)} values "
        f"differ, e.g. {'; '.join(diffs[:3])}"
    ]


def _diff(claimed: Any, fresh: Any, where: str) -> list[str]:
    if isinstance(claimed, dict) and isinstance(fresh, dict):
        out = []
        for k in sorted(set(claimed) | set(fresh), key=str):
            out += _diff(claimed.get(k), fresh.get(k), f"{where}.{k}")
        return out
    if isinstance(claimed, list) and isinstance(fresh, list) and len(claimed) == len(fresh):
        return [
            x
            for i, (a, b) in enumerate(zip(claimed, fresh, strict=True))
            for x in _diff(a, b, f"{where}[{i}]")
        ]
    if isinstance(claimed, float) and isinstance(fresh, float):
        return (
            []
            if abs(claimed - fresh) <= 1e-9 * max(1.0, abs(fresh))
            else [f"{where}: claimed {claimed!r}, re-scored {fresh!r}"]
        )
    return [] if claimed == fresh else [f"{where}: claimed {claimed!r}, re-scored {fresh!r}"]


# ---- build ---------------------------------------------------------------------------------


def board_rows(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """One row per (accepted bundle, agent), grouped by suite, best diagnostic accuracy first."""
    rows = []
    for v in verdicts:
        summary = v.info.get("summary", {})
        for agent, s in summary.get("agents", {}).items():
            row: dict[str, Any] = {
                "suite": v.info.get("suite", ""),
                "agent": agent,
                "run_id": v.info.get("run_id", ""),
                "episodes": s.get("episodes", 0),
                "errors": s.get("errors", 0),
                "cases_sha256": v.info.get("cases_sha256", "")[:12],
                "packs": " ".join(v.info.get("packs", [])),
                "kb_version": v.info.get("kb_version", ""),
                "clinicgym": v.info.get("clinicgym", ""),
                "bundle": Path(v.bundle).name,
            }
            for m in BOARD_METRICS:
                cell = s.get("metrics", {}).get(m) or {}
                ci = cell.get("ci95") or [None, None]
                row[m] = cell.get("mean")
                row[f"{m}_lo"], row[f"{m}_hi"] = ci[0], ci[1]
            rows.append(row)
    rows.sort(key=lambda r: (r["suite"], -(r["diagnostic_accuracy"] or -1.0), r["agent"]))
    return rows


def build(bundles: list[Path | str], out: Path | str) -> tuple[Path, list[Verdict]]:
    """Verify every bundle; write `index.html` and `leaderboard.csv` from the accepted ones
    (rejected ones are listed on the page with their reasons). Returns (out dir, verdicts)."""
    import jinja2

    out = Path(out)
    verdicts = [verify(b) for b in bundles]
    rows = board_rows([v for v in verdicts if v.accepted])
    out.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0]) if rows else ["suite", "agent", "run_id"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (out / "leaderboard.csv").write_text(buf.getvalue(), encoding="utf-8")
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("clinicgym.runs", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    suites: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        suites.setdefault(r["suite"], []).append(r)
    html = env.get_template("leaderboard.html.j2").render(
        suites=suites,
        metrics=BOARD_METRICS,
        rejected=[v for v in verdicts if not v.accepted],
        built=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        version=__version__,
    )
    (out / "index.html").write_text(html, encoding="utf-8")
    return out, verdicts
