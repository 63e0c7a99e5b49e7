"""A run's cases, in memory and on disk, at a cost that grows with the episodes played.

In memory, generated cases are a `GeneratedCases` sequence: case `i` is realised from the
sampler's stream for (seed, i) when it is read, kept in a small cache while its episodes play,
and dropped after; its content hash is computed once, when it is first realised. Cases read
from a file (a clinician-written set, a cohort, a suite export) are small and few, so they stay
a list (`CaseList`), with their hashes computed once too.

On disk, `cases.jsonl` holds one line per case. A generated case is its recipe (about 300
bytes: generator, KB version, weighting, settings, conditions, seed, prefix, index), its id and,
once known, its hash; readers realise it again from the recipe and check the hash, and a KB that
no longer regenerates it is named in the error. Any other case is its whole JSON, as every run
directory written before recipes were stored holds: `read_case_lines` reads both.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from clinicgym.patients.cases.case import Case
from clinicgym.patients.knowledge.kb import KnowledgeBase, default_kb, load_kb
from clinicgym.runs import layout
from clinicgym.runs.errors import StoreError

GENERATOR = "kb-sampler"
"""The `generator` of a recipe line: the KB sampler's stream (patients/cases/presentation.py)."""
CASE_CACHE = 8
"""Generated cases kept realised at once: the episodes of one case (repeats, agents, retries)
follow each other in the plan, so they share one realisation."""


def sampled_case_id(prefix: str, seed: int, index: int) -> str:
    """The id `CaseSampler.sample` gives case `index` of the stream for `seed`."""
    return f"{prefix}{seed}-{index:04d}"


class CaseList(Sequence[Case]):
    """Cases held whole in memory (a file's, a cohort's), each hashed at most once."""

    def __init__(self, cases: Iterable[Case]) -> None:
        self._cases = list(cases)
        self.ids = [c.id for c in self._cases]
        self._hashes: list[str | None] = [None] * len(self._cases)

    def __len__(self) -> int:
        return len(self._cases)

    @overload
    def __getitem__(self, i: int) -> Case: ...
    @overload
    def __getitem__(self, i: slice) -> list[Case]: ...
    def __getitem__(self, i: int | slice) -> Case | list[Case]:
        return self._cases[i]

    def case_hash(self, i: int) -> str:
        """Case `i`'s content hash, computed on the first call only."""
        h = self._hashes[i]
        if h is None:
            h = self._hashes[i] = self._cases[i].content_hash()
        return h

    def known_hash(self, i: int) -> str | None:
        """Case `i`'s hash (always known for a case in memory)."""
        return self.case_hash(i)

    def line(self, i: int) -> str:
        """Case `i` as its line of cases.jsonl: the whole case."""
        return self._cases[i].model_dump_json()


class LazyCases(Sequence[Case]):
    """Cases realised when read (`_make`), a few kept while their episodes play, each hashed
    once, when first realised. `line_recipe` set: a line of cases.jsonl is that recipe with the
    case's index (readers regenerate the case and check its hash); None: the whole case."""

    line_recipe: dict[str, Any] | None = None

    def __init__(
        self,
        ids: Sequence[str],
        *,
        hashes: Sequence[str | None] | None = None,
        keep: int = CASE_CACHE,
    ) -> None:
        self.ids = list(ids)
        self.n = len(self.ids)
        self._hashes: list[str | None] = list(hashes) if hashes is not None else [None] * self.n
        self._keep = keep
        self._cache: OrderedDict[int, Case] = OrderedDict()
        self.realised = 0
        """How many times a case was realised (a test reads it: each case once per episode run)."""

    @property
    def storable(self) -> bool:
        """Whether a line of cases.jsonl can be this case's recipe (else its whole JSON)."""
        return self.line_recipe is not None

    def _make(self, i: int) -> Case:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.n

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same cases in the same order (realising each)."""
        if not isinstance(other, Sequence) or len(other) != self.n:
            return False
        return all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    @overload
    def __getitem__(self, i: int) -> Case: ...
    @overload
    def __getitem__(self, i: slice) -> list[Case]: ...
    def __getitem__(self, i: int | slice) -> Case | list[Case]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"case {i} of {self.n}")
        case = self._cache.get(i)
        if case is not None:
            self._cache.move_to_end(i)
            return case
        case = self._make(i)
        self.realised += 1
        if self._hashes[i] is None:
            self._hashes[i] = case.content_hash()
        self._cache[i] = case
        while len(self._cache) > self._keep:
            self._cache.popitem(last=False)
        return case

    def case_hash(self, i: int) -> str:
        """Case `i`'s content hash: computed when the case is first realised, then kept."""
        h = self._hashes[i]
        if h is None:
            self[i]
            h = self._hashes[i]
        assert h is not None
        return h

    def known_hash(self, i: int) -> str | None:
        """Case `i`'s hash if it was computed (or given) already; None: not realised yet."""
        return self._hashes[i]

    def set_hash(self, i: int, h: str | None) -> None:
        """Record case `i`'s hash as read back (a resumed run's), unless it is known already."""
        if self._hashes[i] is None:
            self._hashes[i] = h

    def line(self, i: int) -> str:
        """Case `i` as its line of cases.jsonl: its recipe (or the whole case if unstorable)."""
        if self.line_recipe is None:
            return self[i].model_dump_json()
        return json.dumps(
            {"id": self.ids[i], "hash": self._hashes[i], "recipe": {**self.line_recipe, "index": i}}
        )


class GeneratedCases(LazyCases):
    """Cases of the KB sampler's stream, each realised when read (`recipe`: see the module
    docstring; `ids` rename them, as a suite does; `transform` changes a realised case further,
    and makes the cases unstorable as recipes, e.g. a hidden suite's lineage without its seed;
    `reference`: what a line names instead of the sampler's recipe, e.g. a suite's name@version,
    which the registry regenerates)."""

    def __init__(
        self,
        kb: KnowledgeBase,
        recipe: dict[str, Any],
        n: int,
        *,
        ids: Sequence[str] | None = None,
        hashes: Sequence[str | None] | None = None,
        transform: Callable[[Case], Case] | None = None,
        reference: dict[str, Any] | None = None,
        keep: int = CASE_CACHE,
    ) -> None:
        self.kb = kb
        self.recipe = dict(recipe)
        seed, prefix = int(recipe["seed"]), str(recipe.get("prefix", "kb"))
        names = ids if ids is not None else [sampled_case_id(prefix, seed, i) for i in range(n)]
        super().__init__(names, hashes=hashes, keep=keep)
        self.transform = transform
        if transform is None:
            self.line_recipe = dict(reference) if reference is not None else self.recipe
        self._sampler: Any = None

    def _make(self, i: int) -> Case:
        if self._sampler is None:
            self._sampler = recipe_sampler(self.kb, self.recipe)
        r = self.recipe
        case = self._sampler.sample(int(r["seed"]), i, prefix=str(r.get("prefix", "kb")))
        if case.id != self.ids[i]:
            case = case.model_copy(update={"id": self.ids[i]})
        if self.transform is not None:
            case = self.transform(case)
        return case


class CohortCases(LazyCases):
    """The first `n` rows of a synthetic cohort (patients/cohorts/cohort.py), each realised when its
    episode starts, with the cohort's clinician feedback applied. Stored whole: feedback applied
    later changes what the cohort realises, and a run must read back the cases it played."""

    def __init__(self, root: str | Path, kb: KnowledgeBase, n: int | None = None) -> None:
        from clinicgym.patients.cohorts.cohort import Cohort

        self.cohort = Cohort.open(root, kb)
        self.table = self.cohort.case_table(n)
        super().__init__(self.table.ids)
        self._pids = self.cohort._patient_ids(len(self.table))

    def _make(self, i: int) -> Case:
        case = self.table[i]
        feedback = self.cohort.feedback
        return case if feedback is None else feedback.apply(case, self._pids[i])


RunCases = CaseList | LazyCases
"""What a run context holds: cases with ids and once-computed hashes."""


def as_run_cases(cases: Sequence[Case]) -> CaseList | LazyCases:
    """`cases` as run cases: lazy ones as they are, any other sequence held as a `CaseList`."""
    if isinstance(cases, CaseList | LazyCases):
        return cases
    return CaseList(cases)


def sampler_recipe(
    kb: KnowledgeBase,
    seed: int,
    *,
    weighting: str = "auto",
    settings: Sequence[str] = (),
    conditions: Sequence[str] = (),
    prefix: str = "kb",
    kb_dir: str | None = None,
) -> dict[str, Any]:
    """The recipe of the KB sampler's stream for `seed` (one line's, without its index)."""
    return {
        "generator": GENERATOR,
        "kb_version": kb.version,
        "kb_dir": kb_dir,
        "weighting": weighting,
        "settings": list(settings),
        "conditions": list(conditions),
        "seed": int(seed),
        "prefix": prefix,
    }


def recipe_sampler(kb: KnowledgeBase, recipe: dict[str, Any]) -> Any:
    """The sampler a recipe names, on `kb` (which must be the recipe's KB version)."""
    from clinicgym.patients.cases.presentation import make_sampler

    if recipe.get("generator") != GENERATOR:
        raise StoreError(f"unknown case generator {recipe.get('generator')!r} in a recipe")
    if kb.version != recipe.get("kb_version"):
        raise StoreError(
            f"these cases were generated with KB version {recipe.get('kb_version')}, and this "
            f"install's KB is {kb.version}: they cannot be regenerated here. Read the run with "
            "the KB it was played with (the --kb directory its manifest names), or play it again"
        )
    return make_sampler(
        kb,
        str(recipe.get("weighting", "auto")),
        settings=recipe.get("settings") or None,
        conditions=recipe.get("conditions") or None,
    )


SUITE = "suite"
"""The `generator` of a public suite case's line: the registry's `name@version`, case index."""


class _Regenerator:
    """Realises recipe lines, loading each KB and building each sampler or suite once."""

    def __init__(self, kb: KnowledgeBase | None) -> None:
        self.kb = kb
        self._samplers: dict[str, Any] = {}

    def _kb(self, recipe: dict[str, Any]) -> KnowledgeBase:
        kb = self.kb
        if kb is None or kb.version != recipe.get("kb_version", kb.version):
            kb = load_kb(recipe["kb_dir"]) if recipe.get("kb_dir") else default_kb()
        return kb

    def case(self, line: dict[str, Any]) -> Case:
        recipe = line["recipe"]
        key = json.dumps({k: v for k, v in recipe.items() if k != "index"}, sort_keys=True)
        if recipe.get("generator") == SUITE:
            return self._from_source(line)
        sampler = self._samplers.get(key)
        if sampler is None:
            sampler = self._samplers[key] = recipe_sampler(self._kb(recipe), recipe)
        case = sampler.sample(int(recipe["seed"]), int(recipe["index"]), prefix=recipe["prefix"])
        if case.id != line["id"]:
            case = case.model_copy(update={"id": line["id"]})
        want = line.get("hash")
        _check_hash(line, case.content_hash() if want else "")
        return case

    def _from_source(self, line: dict[str, Any]) -> Case:
        """A public suite's case, regenerated by the registry (runs/suite.py)."""
        from clinicgym.runs.suite import reference_cases

        recipe = line["recipe"]
        source = reference_cases(str(recipe["suite"]), self._kb(recipe))
        i = int(recipe["index"])
        if not 0 <= i < len(source) or source.ids[i] != line["id"]:
            raise StoreError(f"case {line['id']}: not case {i} of suite {recipe['suite']}")
        case = source[i]
        _check_hash(line, source.case_hash(i))
        return case


def _check_hash(line: dict[str, Any], got: str) -> None:
    """Fail unless a regenerated case hashes as its line recorded (when it recorded one)."""
    want = line.get("hash")
    if want and got != want:
        raise StoreError(
            f"case {line['id']}: regenerated from its recipe, it hashes to "
            f"{got[:12]}..., not the {want[:12]}... recorded when it was "
            "played (a changed generator or suite): it cannot be read back from its recipe"
        )


def read_case_lines(
    lines: Iterable[str | bytes], kb: KnowledgeBase | None = None, where: str = layout.CASES
) -> Iterator[Case]:
    """The cases of cases.jsonl lines, in order: whole cases parsed, recipes realised (with
    `kb` when it is the recipe's KB version, else the one the recipe names)."""
    regen = _Regenerator(kb)
    for n, raw in enumerate(lines, start=1):
        text = raw.decode() if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        if is_recipe_line(text):
            yield regen.case(json.loads(text))
            continue
        try:
            yield Case.model_validate_json(text)
        except ValueError as e:
            raise StoreError(f"{where}, line {n}: not a case or a case recipe ({e})") from None


def is_recipe_line(text: str | bytes) -> bool:
    """Whether a cases.jsonl line is a generated case's recipe (not a whole case)."""
    s = text.decode() if isinstance(text, bytes) else text
    if '"recipe"' not in s[:400]:
        return False
    try:
        data = json.loads(s)
    except ValueError:
        return False
    return isinstance(data, dict) and "recipe" in data and "facts" not in data


class CaseLookup(Mapping[str, Case]):
    """Run cases by id, realised when looked up (what scoring a run's episodes reads)."""

    def __init__(self, cases: CaseList | LazyCases) -> None:
        self.cases = cases
        self._index = {cid: i for i, cid in enumerate(cases.ids)}

    def __getitem__(self, case_id: str) -> Case:
        return self.cases[self._index[case_id]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, case_id: object) -> bool:
        return case_id in self._index
