"""Agreement statistics against published values, and the per-verdict report."""

from __future__ import annotations

import pandas as pd
import pytest

from clinicgym.scoring.agreement import (
    AUTO,
    agreement_report,
    auto_acceptable,
    cohen_kappa,
    krippendorff_alpha,
    verdict_agreement,
)
from clinicgym.scoring.errors import ScoringError

pytest.importorskip("krippendorff", reason="needs the 'review' extra (krippendorff)")
pytest.importorskip("sklearn", reason="needs the 'review' extra (scikit-learn)")


def test_cohen_kappa_matches_the_textbook_example():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa(["x", "y"], ["y", "x"]) == pytest.approx(-1.0)


def test_kappa_is_undefined_without_variation():
    assert cohen_kappa(["yes"] * 5, ["yes"] * 5) is None
    assert cohen_kappa([], []) is None
    with pytest.raises(ScoringError, match="3 ratings against 2"):
        cohen_kappa(["a", "b", "c"], ["a", "b"])


def test_krippendorff_alpha_matches_krippendorffs_worked_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers, 12 units,
    # missing values; nominal alpha = 0.743.
    n = None
    a = [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n]
    b = [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3]
    c = [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n]
    d = [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]
    assert krippendorff_alpha(list(zip(a, b, c, d, strict=True))) == pytest.approx(0.743, abs=5e-4)


def test_alpha_edge_cases():
    assert krippendorff_alpha([[1, 1], [1, 1]]) is None  # no variation
    assert krippendorff_alpha([[1, None], [None, 2]]) is None  # nothing pairable
    assert krippendorff_alpha([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)


def _table(rows):
    return pd.DataFrame(rows, columns=["verdict", "item", "rater", "value"])


def test_one_clinician_gets_cohen_kappa_with_an_interval():
    rows = []
    for i in range(40):
        auto = "yes" if i % 2 else "no"
        clin = auto if i % 10 else ("no" if auto == "yes" else "yes")  # 4 of 40 differ
        rows += [("acceptance", f"e{i}", AUTO, auto), ("acceptance", f"e{i}", "dr.a", clin)]
    r = verdict_agreement(_table(rows), "acceptance", resamples=500)
    assert r.statistic == "cohen_kappa" and r.items == 40 and r.raters == ["dr.a"]
    assert r.value == pytest.approx(0.8)
    lo, hi = r.ci95
    assert lo < 0.8 < hi and hi <= 1.0
    assert r.vs_auto[0].agreement == pytest.approx(0.9)
    # the four differing items are all even ones: auto said no, the clinician yes
    assert r.vs_auto[0].table == {"yes": {"yes": 20, "no": 4}, "no": {"no": 16}}
    assert r.reading in ("tentative", "do not trust")  # the interval reaches below 0.8


def test_several_clinicians_get_krippendorff_alpha_and_their_own_kappas():
    rows = []
    for i in range(30):
        auto = "yes" if i < 15 else "no"
        rows.append(("violations", f"t{i}", AUTO, auto))
        rows.append(("violations", f"t{i}", "dr.a", auto))
        rows.append(("violations", f"t{i}", "dr.b", "yes" if i < 20 else "no"))  # 5 differ
    rows.append(("violations", "t-unrated", AUTO, "no"))  # no clinician: not an item
    r = verdict_agreement(_table(rows), "violations", resamples=300)
    assert r.statistic == "krippendorff_alpha" and r.items == 30
    units = [
        [("yes" if i < 15 else "no"), ("yes" if i < 15 else "no"), ("yes" if i < 20 else "no")]
        for i in range(30)
    ]
    assert r.value == pytest.approx(krippendorff_alpha(units))
    kappas = {p.rater: p.kappa for p in r.vs_auto}
    assert kappas["dr.a"] == pytest.approx(1.0)
    assert kappas["dr.b"] == pytest.approx(
        cohen_kappa(*zip(*[(u[0], u[2]) for u in units], strict=True))
    )
    assert r.clinicians_alpha is not None and r.clinicians_alpha < 1.0


def test_report_covers_each_verdict_and_refuses_double_ratings():
    rows = [("acceptance", "e1", AUTO, "yes"), ("acceptance", "e1", "dr.a", "no")]
    report = agreement_report(_table(rows), resamples=50)
    assert [r.verdict for r in report] == ["violations", "acceptance", "diagnosis_match"]
    assert report[0].items == 0 and report[0].reading == "undefined"
    twice = _table([*rows, ("acceptance", "e1", "dr.a", "yes")])
    with pytest.raises(ScoringError, match=r"rater 'dr\.a' rated item 'e1' of 'acceptance' twice"):
        verdict_agreement(twice, "acceptance")


def test_automatic_acceptance_reads_risk_and_severe_violations():
    assert auto_acceptable({"risk_score": 0.0, "diagnostic_accuracy": 1.0}, []) is True
    assert auto_acceptable({"risk_score": 0.2}, ["low"]) is False
    assert auto_acceptable({"risk_score": 0.0}, ["medium", "high"]) is False
    assert auto_acceptable({"diagnostic_accuracy": 0.0}, []) is False  # no risk score computed
    assert auto_acceptable({}, []) is None


def test_the_bootstraps_table_statistics_equal_the_libraries():
    # the interval resamples per-item tables (scoring/agreement.py `_bootstrap`); its statistics
    # must give the value the libraries give for the whole sample, or interval and value disagree
    import numpy as np

    from clinicgym.scoring.agreement import (
        _alpha_from_coincidences,
        _kappa_from_table,
        _unit_coincidences,
    )

    rng = np.random.default_rng(7)
    for _ in range(20):
        a = rng.integers(0, 3, 30).tolist()
        b = [x if rng.random() < 0.6 else int(rng.integers(0, 3)) for x in a]
        table = np.zeros((3, 3))
        for x, y in zip(a, b, strict=True):
            table[x, y] += 1
        assert _kappa_from_table(table) == pytest.approx(cohen_kappa(a, b), abs=1e-12)
        units = [
            [v if rng.random() < 0.85 else None for v in (x, y, int(rng.integers(0, 3)))]
            for x, y in zip(a, b, strict=True)
        ]
        per_unit, _ = _unit_coincidences(units)
        assert _alpha_from_coincidences(per_unit.sum(axis=0)) == pytest.approx(
            krippendorff_alpha(units), abs=1e-12
        )
