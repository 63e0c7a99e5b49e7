"""Finding packs: 'hipaa-privacy@2', 'hipaa-privacy' (the latest version) or a path to a file.

Bundled packs live in `policies/packs/<id>/<version>.yaml`. Users add their own directories
(same layout) with the `CLINICGYM_PACKS` environment variable (paths separated by ':'), or
name a pack file directly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from clinicgym.policies.errors import PackError, PackNotFoundError
from clinicgym.policies.pack import PolicyPack, load_pack

PACKS_DIR = Path(__file__).parent / "packs"
ENV_VAR = "CLINICGYM_PACKS"


def pack_dirs(extra: Iterable[Path | str] = ()) -> list[Path]:
    """Directories searched for packs: the bundled one, `CLINICGYM_PACKS`, then `extra`."""
    dirs = [PACKS_DIR]
    dirs += [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    dirs += [Path(p) for p in extra]
    return dirs


def available(extra: Iterable[Path | str] = ()) -> dict[str, dict[int, Path]]:
    """Pack id -> version -> file, over every pack directory (later directories win)."""
    out: dict[str, dict[int, Path]] = {}
    for d in pack_dirs(extra):
        for f in sorted(d.glob("*/*.yaml")):
            if re.fullmatch(r"\d+", f.stem):
                out.setdefault(f.parent.name, {})[int(f.stem)] = f
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def _is_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml")) or os.sep in ref


def resolve(ref: str, extra: Iterable[Path | str] = ()) -> Path:
    """The file a pack reference names."""
    ref = ref.strip()
    if _is_path(ref):
        p = Path(ref)
        if not p.is_file():
            raise PackNotFoundError(f"pack file {ref!r} does not exist")
        return p
    pid, sep, version = ref.partition("@")
    packs = available(extra)
    if pid not in packs:
        raise PackNotFoundError(
            f"unknown pack {pid!r}; available: {', '.join(packs) or 'none'} "
            f"(see `clinicgym policy list`)"
        )
    versions = packs[pid]
    if not sep:
        return versions[max(versions)]
    if not version.isdigit() or int(version) not in versions:
        raise PackNotFoundError(
            f"pack {pid!r} has no version {version!r}; versions: "
            + ", ".join(str(v) for v in versions)
        )
    return versions[int(version)]


def load(ref: str, extra: Iterable[Path | str] = ()) -> PolicyPack:
    """Load one pack by reference."""
    return load_pack(resolve(ref, extra))


def load_packs(refs: Sequence[str], extra: Iterable[Path | str] = ()) -> list[PolicyPack]:
    """Load every pack a run names, or raise one PackError covering all that fail: a run never
    starts with a half-loaded set of packs. Two versions of one pack in a run are refused."""
    packs: list[PolicyPack] = []
    problems: list[str] = []
    for ref in refs:
        try:
            packs.append(load(ref, extra))
        except PackError as e:
            problems.extend(f"{e.where}: {p}" for p in e.problems)
        except PackNotFoundError as e:
            problems.append(str(e))
    by_id: dict[str, list[str]] = {}
    for p in packs:
        by_id.setdefault(p.id, []).append(p.ref)
    for pid, refs_ in by_id.items():
        if len(refs_) > 1:
            problems.append(
                f"pack {pid!r} is named more than once ({', '.join(refs_)}); a run uses one "
                "version of each pack (re-score under another with `clinicgym rescore`)"
            )
    if problems:
        raise PackError("policy packs", problems)
    return packs
