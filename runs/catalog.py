"""A DuckDB view over many run directories: list them, query their scores, compare two runs.

`RunCatalog(["runs/"])` finds every run directory under the roots (a directory holding a
manifest.json) and opens an in-memory DuckDB with two relations:

* `runs`: one row per run (id, path, created, suite, agents, planned and stored episodes,
  errors, KB and clinicgym versions, state: complete / partial / unscored / modified);
* `scores`: every run's scores.parquet (one row per episode, metrics as columns), with `run_id`
  and `run_path` (run ids need not be unique across folders; paths are).

`compare(a, b)` gives, per agent and metric, both means and the difference B - A with a seeded
95% interval (`scoring/stats.mean_diff_ci`): a scipy bootstrap over (case, repeat) pairs when
both runs played the same cases (the same suite), else the two runs taken as independent
samples (Newcombe's interval for 0/1 metrics, a two-sample bootstrap otherwise).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from clinicgym.runs import layout
from clinicgym.runs.errors import RunError
from clinicgym.runs.store import RunStore
from clinicgym.scoring.metric_registry import MEASUREMENTS, METRICS
from clinicgym.scoring.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, mean_diff_ci

RUN_COLUMNS = (
    "run_id",
    "path",
    "created",
    "suite",
    "agents",
    "planned",
    "stored",
    "errors",
    "state",
    "kb_version",
    "clinicgym",
)


def find_runs(roots: Iterable[Path | str], depth: int = 3) -> list[Path]:
    """Run directories (holding manifest.json) at or under the roots, sorted by path."""
    found: set[Path] = set()
    for root in map(Path, roots):
        if layout.is_run_dir(root):
            found.add(root.resolve())
            continue
        frontier = [root]
        for _ in range(depth):
            nxt = []
            for d in frontier:
                if not d.is_dir():
                    continue
                for child in d.iterdir():
                    if not child.is_dir() or child.name.startswith("."):
                        continue
                    if layout.is_run_dir(child):
                        found.add(child.resolve())
                    else:
                        nxt.append(child)
            frontier = nxt
    return sorted(found)


def run_row(run_dir: Path) -> dict[str, Any]:
    """The `runs` row of one run directory."""
    store = RunStore(run_dir)
    manifest = store.manifest()
    spec = manifest.spec
    planned = manifest.planned_episodes()
    stored = errors = 0
    if store.episodes_path.exists():
        with open(store.episodes_path, "rb") as fh:
            for line in fh:
                if line.endswith(b"\n"):
                    stored += 1
                    errors += b'"status":"error"' in line
    summary = store.summary() if store.summary_path.exists() else None  # damaged: raises
    if summary is None:
        state = "unscored"
    elif store.changed_since_sealed():
        state = "modified"
    elif stored < planned:
        state = "partial"
    else:
        state = "complete"
    return {
        "run_id": manifest.run_id or run_dir.name,
        "path": str(run_dir),
        "created": manifest.created,
        "suite": (manifest.suite.ref if manifest.suite else None) or spec.suite or "",
        "agents": ", ".join(spec.agents),
        "planned": planned,
        "stored": stored,
        "errors": errors,
        "state": state,
        "kb_version": manifest.versions.kb or "",
        "clinicgym": manifest.versions.clinicgym,
    }


def _safe_row(run_dir: Path) -> dict[str, Any]:
    """`run_row`, or a 'damaged' row naming the problem (one bad directory spoils no listing)."""
    try:
        return run_row(run_dir)
    except (RunError, ValueError, OSError) as e:
        row: dict[str, Any] = dict.fromkeys(RUN_COLUMNS, "")
        row.update(run_id=run_dir.name, path=str(run_dir), planned=0, stored=0, errors=0)
        row["state"] = f"damaged: {e}"[:200]
        return row


class RunCatalog:
    """An in-memory DuckDB over the run directories found under `roots`."""

    def __init__(self, roots: Sequence[Path | str]) -> None:
        self.dirs = find_runs(roots)
        self.con = duckdb.connect()
        rows = pd.DataFrame([_safe_row(d) for d in self.dirs], columns=list(RUN_COLUMNS))
        self.con.register("runs_df", rows)
        self.con.execute("CREATE TABLE runs AS SELECT * FROM runs_df")
        self.con.unregister("runs_df")
        scored = [(r["run_id"], layout.RunPaths(r["path"]).scores) for _, r in rows.iterrows()]
        scored = [(rid, p) for rid, p in scored if p.exists()]
        if scored:
            files = pd.DataFrame(
                {
                    "run_id": [r for r, _ in scored],
                    "run_path": [str(p.parent) for _, p in scored],
                    "file": [str(p) for _, p in scored],
                }
            )
            self.con.register("score_files", files)
            paths = ", ".join("'" + str(p).replace("'", "''") + "'" for _, p in scored)
            self.con.execute(
                "CREATE VIEW scores AS SELECT f.run_id, f.run_path, s.* EXCLUDE (filename) FROM "
                f"read_parquet([{paths}], union_by_name = true, filename = true) s "
                "JOIN score_files f ON s.filename = f.file"
            )
        else:
            self.con.execute(
                "CREATE VIEW scores AS SELECT NULL::VARCHAR AS run_id, NULL::VARCHAR AS run_path "
                "WHERE false"
            )

    def runs(self) -> pd.DataFrame:
        """The `runs` table, newest first."""
        return self.con.execute("SELECT * FROM runs ORDER BY created DESC, run_id").df()

    def query(self, sql: str) -> pd.DataFrame:
        """Any SQL over `runs` and `scores`."""
        try:
            return self.con.execute(sql).df()
        except duckdb.Error as e:
            raise RunError(f"query failed: {e}; tables: runs, scores (see `runs list`)") from None


# ---- comparing two runs --------------------------------------------------------------------


@dataclass(frozen=True)
class MetricDiff:
    """One metric of one agent in two runs: means, B - A and its 95% interval (None: undefined,
    when neither run's values vary)."""

    agent: str
    metric: str
    mean_a: float | None
    mean_b: float | None
    n_a: int
    n_b: int
    diff: float | None
    ci95: tuple[float, float] | None
    paired: bool
    method: str = ""
    """How the interval was computed (`scoring/stats.mean_diff_ci`): 'bca' or 'percentile'
    (scipy bootstrap; over the pairs when `paired`), 'newcombe' (independent proportions),
    'undefined'; ', independent' when the runs are paired but every pair differed alike, so
    the interval is the independent-samples one."""

    @property
    def clear(self) -> bool:
        """The interval excludes 0: the runs differ on this metric beyond resampling noise."""
        return self.ci95 is not None and (self.ci95[0] > 0 or self.ci95[1] < 0)


def _diff(
    a: pd.Series,
    b: pd.Series,
    *,
    paired: bool,
    resamples: int,
    seed: int,
    proportion: bool | None = None,
) -> dict[str, Any] | None:
    if paired:
        both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
        xa, xb = both["a"].tolist(), both["b"].tolist()
    else:
        xa, xb = a.dropna().tolist(), b.dropna().tolist()
    return mean_diff_ci(
        xa, xb, paired=paired, proportion=proportion, resamples=resamples, seed=seed
    )


def diff_ci(
    a: pd.Series,
    b: pd.Series,
    *,
    paired: bool,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, tuple[float, float] | None] | None:
    """mean(b) - mean(a) and its 95% interval (None where undefined); None without values.
    Paired: `a` and `b` share an index (case, repeat) and pairs are resampled together (a
    scipy bootstrap); else each side is its own sample. `scoring/stats.mean_diff_ci` says
    which interval each case gets."""
    d = _diff(a, b, paired=paired, resamples=resamples, seed=seed)
    if d is None:
        return None
    return d["mean"], (tuple(d["ci95"]) if d["ci95"] is not None else None)


def _scores(run_dir: Path) -> pd.DataFrame:
    path = layout.RunPaths(run_dir).scores
    if not path.exists():
        raise RunError(
            f"{run_dir}: no {layout.SCORES} (the run was never finalised); resume it with the "
            "same `clinicgym run ... --out` to score it"
        )
    table = pd.read_parquet(path)
    return table[table["status"] == "completed"]


def same_cases(run_a: Path, run_b: Path) -> None:
    """Raise a RunError unless two runs were planned over the same cases (ids and content)."""
    sets = []
    for run in (run_a, run_b):
        manifest = RunStore(run).manifest()
        sets.append({(c.id, c.hash) for c in manifest.cases})
    if sets[0] == sets[1]:
        return
    common = len(sets[0] & sets[1])
    raise RunError(
        f"{run_a} and {run_b} played different cases ({len(sets[0])} and {len(sets[1])} "
        f"cases, {common} the same): B - A would mix the agents' difference with the cases'. "
        "Compare runs of the same suite or seed, or pass --allow-different-cases to compare "
        "them anyway as independent samples."
    )


def compare(
    run_a: Path | str,
    run_b: Path | str,
    *,
    agents: Sequence[str] = (),
    metrics: Sequence[str] = (),
    allow_different_cases: bool = False,
) -> list[MetricDiff]:
    """Per agent and metric: B - A with a 95% interval. Agents: the given ones, else those in
    both runs, else (one agent each) the two runs' only agents compared with each other. Runs
    over different case sets are refused unless `allow_different_cases` (then independent)."""
    a, b = _scores(Path(run_a)), _scores(Path(run_b))
    if not allow_different_cases:
        same_cases(Path(run_a), Path(run_b))
    pairs = _agent_pairs(a, b, agents, Path(run_a), Path(run_b))
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise RunError(f"unknown metrics {unknown}; known: {', '.join(METRICS)}")
    names = [m for m in (metrics or METRICS) if m in a.columns and m in b.columns]
    out = []
    for agent_a, agent_b in pairs:
        ra = a[a["agent"] == agent_a].set_index(["case_id", "repeat"])
        rb = b[b["agent"] == agent_b].set_index(["case_id", "repeat"])
        paired = bool(len(ra)) and set(ra.index) == set(rb.index)
        label = agent_a if agent_a == agent_b else f"{agent_a} -> {agent_b}"
        for m in names:
            xa, xb = ra[m].astype(float), rb[m].astype(float)
            if xa.dropna().empty and xb.dropna().empty:
                continue
            res = _diff(
                xa,
                xb,
                paired=paired,
                resamples=BOOTSTRAP_RESAMPLES,
                seed=BOOTSTRAP_SEED,
                proportion=False if m in MEASUREMENTS else None,  # turns, costs: never 0/1
            )
            method = ""
            if res is not None:
                method = res["method"] + (", independent" if paired and not res["paired"] else "")
            out.append(
                MetricDiff(
                    agent=label,
                    metric=m,
                    mean_a=float(xa.mean()) if xa.notna().any() else None,
                    mean_b=float(xb.mean()) if xb.notna().any() else None,
                    n_a=int(xa.notna().sum()),
                    n_b=int(xb.notna().sum()),
                    diff=res["mean"] if res else None,
                    ci95=tuple(res["ci95"]) if res and res["ci95"] is not None else None,
                    paired=paired,
                    method=method,
                )
            )
    return out


def _agent_pairs(
    a: pd.DataFrame, b: pd.DataFrame, agents: Sequence[str], pa: Path, pb: Path
) -> list[tuple[str, str]]:
    in_a, in_b = list(dict.fromkeys(a["agent"])), list(dict.fromkeys(b["agent"]))
    if agents:
        missing = [
            f"{x} (not in {p})"
            for x in agents
            for p, have in ((pa, in_a), (pb, in_b))
            if x not in have
        ]
        if missing:
            raise RunError(f"cannot compare: {', '.join(missing)}")
        return [(x, x) for x in agents]
    common = [x for x in in_a if x in in_b]
    if common:
        return [(x, x) for x in common]
    if len(in_a) == 1 and len(in_b) == 1:
        return [(in_a[0], in_b[0])]
    raise RunError(
        f"{pa} ({', '.join(in_a)}) and {pb} ({', '.join(in_b)}) share no agent; name one with "
        "--agent, or compare runs of one agent each"
    )
