"""Case realisation cost: CPU ms per generated case, the way a run realises it.

A run realises each generated case twice: when its episode starts (`GeneratedCases[i]`, which
also hashes it once) and again at finalise, from a fresh cache. This bench times both passes
over `--realise N` cases of the KB sampler's stream (seed 7) in a child process per checkout,
the code this process imports (PYTHONPATH may name a worktree) and, with `--code DIR`, another
checkout (a `git worktree` of an earlier commit: the "before"), in the same sitting, and prints
the ratio; each child's checkout is checked and printed. `--check` also asserts that
both checkouts give the same content hash and difficulty for every case.

    .venv/bin/python bench/realise.py --realise 200 [--code DIR] [--repeat 3] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def measure(n: int, seed: int) -> dict[str, Any]:
    """Realise and hash `n` cases (play), then realise them again from a fresh sequence
    (finalise); CPU ms per case of each pass, and each case's hash and difficulty."""
    import clinicgym
    from clinicgym.patients.knowledge.kb import default_kb
    from clinicgym.runs.casefile import GeneratedCases, sampler_recipe

    kb = default_kb()
    GeneratedCases(kb, sampler_recipe(kb, seed + 1), 1)[0]  # warm: KB tables, caches, imports
    cases = GeneratedCases(kb, sampler_recipe(kb, seed), n)
    t0 = time.process_time()
    hashes = [cases.case_hash(i) for i in range(n)]
    t1 = time.process_time()
    again = GeneratedCases(kb, sampler_recipe(kb, seed), n, hashes=hashes, keep=1)
    diffs = []
    for i in range(n):
        d = again[i].difficulty
        diffs.append(d.model_dump() if d is not None else None)
    t2 = time.process_time()
    return {
        "code": str(Path(clinicgym.__file__).resolve().parent),
        "play_ms": 1000 * (t1 - t0) / n,
        "finalise_ms": 1000 * (t2 - t1) / n,
        "hashes": hashes,
        "difficulty": diffs,
    }


def child(n: int, seed: int, code: Path | None) -> dict[str, Any]:
    """`measure` in a fresh process importing clinicgym from `code` (None: whichever this
    process imports, so PYTHONPATH selects the "after" checkout as it does here)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        if code is not None:
            (Path(tmp) / "clinicgym").symlink_to(code.resolve())
            env["PYTHONPATH"] = tmp
        cmd = [sys.executable, __file__, "--child", "--realise", str(n), "--seed", str(seed)]
        out = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    want = (code if code is not None else _here()).resolve()
    if Path(r["code"]) != want:
        raise SystemExit(f"the child meant to run {want} imported clinicgym from {r['code']}")
    return r


def _here() -> Path:
    """The checkout this process imports clinicgym from (the "after")."""
    import clinicgym

    return Path(clinicgym.__file__).resolve().parent


def main() -> None:
    """Print play and finalise CPU ms per case for each checkout, and after/before ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realise", type=int, default=200, help="cases to realise")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--code", type=Path, help="the 'before' checkout to compare against")
    ap.add_argument("--repeat", type=int, default=1, help="alternate runs per checkout")
    ap.add_argument("--check", action="store_true", help="assert same hashes and difficulty")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(measure(a.realise, a.seed)))
        return
    codes: list[tuple[str, Path | None]] = [("after", None)]
    if a.code is not None:
        codes.insert(0, ("before", a.code))
    best: dict[str, dict[str, Any]] = {}
    for _ in range(a.repeat):
        for name, code in codes:  # alternated, so load on the machine hits both alike
            r = child(a.realise, a.seed, code)
            if name not in best or r["play_ms"] < best[name]["play_ms"]:
                best[name] = r
    for name, r in best.items():
        print(f"{name:6s} imports {r['code']}")
    for name, r in best.items():
        total = r["play_ms"] + r["finalise_ms"]
        print(
            f"{name:6s} {a.realise} cases: play {r['play_ms']:.1f} ms/case (realise + hash), "
            f"finalise {r['finalise_ms']:.1f} ms/case, both {total:.1f} ms/case"
        )
    if "before" in best:
        b, n = best["before"], best["after"]
        for k in ("play_ms", "finalise_ms"):
            print(f"after/before {k[:-3]}: {n[k] / b[k]:.2f}")
        same = b["hashes"] == n["hashes"] and b["difficulty"] == n["difficulty"]
        print(f"same hashes and difficulty for all {a.realise} cases: {same}")
        if a.check and not same:
            raise SystemExit("the checkouts realise different cases")


if __name__ == "__main__":
    main()
