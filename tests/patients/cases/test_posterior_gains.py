"""The greedy policy computes each gain once per distinct likelihood column (issue 22): its
choices must be the ones computing every column gives, step by step along a difficulty walk."""

from __future__ import annotations

import numpy as np

from clinicgym.patients.cases import posterior
from clinicgym.patients.cases.posterior import MAX_STEPS, STOP_AT, Belief, model_for
from clinicgym.patients.cases.presentation import PresentationSampler
from clinicgym.patients.cases.record import PatientRecord
from clinicgym.patients.knowledge.kb import KnowledgeBase, default_kb


def _exact(b: Belief, turns_left: int | None) -> posterior.Choice | None:
    """`best`'s choice with every column's gain computed as such."""
    rows = np.flatnonzero(b.post > 1e-12)
    p = b.post[rows] / b.post[rows].sum()
    onehot = b._onehot(rows)
    h_now = posterior._entropy((onehot @ p)[:, None])[0]
    hist = np.flatnonzero(b.open)
    ok = b.orderable if turns_left is None else b.orderable & (b.delay < turns_left - 1)
    tests = np.flatnonzero(ok)
    gains = b._gains(p, rows, onehot, h_now, hist, tests, distinct=False)
    return b._pick(hist, tests, *gains)


def test_distinct_column_gains_choose_as_every_column_does() -> None:
    """Along each record's walk (and with a turn limit that drops slow tests), `best` takes the
    same observation as the per-column computation, with the same gain to 1e-12."""
    kb = default_kb()
    m = model_for(kb)
    sampler = PresentationSampler(kb)
    steps = 0
    for i in range(40):
        r = sampler.sample_record(np.random.default_rng([9, i]))
        b = Belief.start(m, r.age, r.sex, r.setting, r.chief_complaint)
        for _ in range(MAX_STEPS):
            if b.posterior()[m.cond_index[r.condition_id]] >= STOP_AT:
                break
            for turns in (None, 3):
                got, want = b.best(turns), _exact(b, turns)
                assert (got and (got.kind, got.target)) == (want and (want.kind, want.target))
                assert got is None or want is None or abs(got.gain - want.gain) < 1e-12
            choice = b.best()
            if choice is None:
                break
            steps += 1
            if choice.kind == "ask":
                b.finding(choice.target, r.findings.get(choice.target, False))
            elif choice.kind == "examine":
                b.system(choice.target, posterior._examined(kb, r, choice.target))
            else:
                out = r.tests.get(choice.target)
                b.test(choice.target, bool(out and out.abnormal))
    assert steps > 100


def test_columns_group_equal_columns_only() -> None:
    """`_columns`: columns equal in every row share a representative; no others do."""
    table = np.array([[0.1, 0.5, 0.1, 0.2, 0.5, 0.1], [0.1, 0.5, 0.3, 0.2, 0.5, 0.3]])
    rep, of = posterior._columns(table)
    assert np.array_equal(table[:, rep[of]], table)
    assert len(rep) == 5  # 0.1, 0.5, 0.2 constant; the (0.1, 0.3) column twice, kept apart


def _must_ask_loop(kb: KnowledgeBase, record: PatientRecord) -> set[str]:
    """Must-ask facts as computed concept by concept from a started belief (the reference)."""
    m = model_for(kb)
    b = Belief.start(m, record.age, record.sex, record.setting, record.chief_complaint, modes=False)
    true = m.cond_index[record.condition_id]
    others = b.post.copy()
    others[true] = 0.0
    others /= others.sum()
    out = set()
    observed = [(f, v, b.lik, m.feature_index.get(f)) for f, v in record.findings.items()]
    observed += [(t, o.abnormal, m.test_lik, m.test_index.get(t)) for t, o in record.tests.items()]
    for concept, seen, table, j in observed:
        if j is None or concept == record.chief_complaint:
            continue
        if table is m.test_lik and not (b.orderable[j] and b.delay[j] == 0):
            continue
        col = table[:, j] if seen else 1 - table[:, j]
        if col[true] >= kb.generation.must_ask_lr * float((others * col).sum()):
            out.add(concept)
    return out


def test_must_ask_facts_are_the_per_concept_computation() -> None:
    """`_discriminating` compares all of a record's concepts at once; it finds exactly what
    comparing them one by one from the started belief finds (the same sums, bit for bit)."""
    kb = default_kb()
    sampler = PresentationSampler(kb)
    found = 0
    for i in range(60):
        r = sampler.sample_record(np.random.default_rng([10, i]))
        got = posterior._discriminating(kb, r)
        assert got == _must_ask_loop(kb, r)
        found += len(got)
    assert found > 60
