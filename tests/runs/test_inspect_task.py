"""The inspect_ai task: inspect's own eval() plays clinicgym cases with the mock model, and the
log it writes holds clinicgym's scores and the monitors' violations."""

from __future__ import annotations

import importlib
import sys

import pytest

pytest.importorskip("inspect_ai")

from inspect_ai import eval as inspect_eval
from inspect_ai.log import read_eval_log
from inspect_ai.model import get_model

from clinicgym.errors import MissingExtra
from clinicgym.runs.integrations.consultation import case_list
from clinicgym.runs.integrations.inspect_task import mock_clinician

pytestmark = pytest.mark.slow  # ~15-25 s on a busy 2-core machine: three consultations


def _scores(sample):
    """A sample's scores by scorer name without the 'clinicgym/' package prefix."""
    return {name.split("/")[-1]: score for name, score in sample.scores.items()}


def test_inspect_eval_by_entry_point_name_scores_cases_and_logs_violations(tmp_path):
    cases, _ = case_list(3, seed=0)
    first = cases[0].diagnosis.name
    # never says it is an AI (ai-transparency@2 must flag every sample); names case 0's diagnosis
    replies = ("Do you have a fever?", f"DIAGNOSIS: {first}")
    model = get_model("mockllm/model", custom_outputs=mock_clinician(replies))

    (log,) = inspect_eval(
        "clinicgym/consultation",  # resolved through the package's inspect_ai entry point
        task_args={"cases": 3, "seed": 0},
        model=model,
        log_dir=str(tmp_path),
        display="none",
    )
    assert log.status == "success", log.error
    stored = read_eval_log(log.location)  # what inspect view and inspect log dump read
    assert stored.eval.task.endswith("consultation")
    # scorer names carry 'clinicgym/' when inspect finds the installed package
    metrics = {s.name.split("/")[-1]: s.metrics["mean"].value for s in stored.results.scores}
    assert set(metrics) == {"top1_correct", "top3_correct", "inquiry_coverage", "violations"}

    by_id = {s.id: s for s in stored.samples}
    assert set(by_id) == {c.id for c in cases}
    expected_top1 = [float(c.diagnosis.name == first) for c in cases]
    assert _scores(by_id[cases[0].id])["top1_correct"].value == 1.0
    assert [_scores(by_id[c.id])["top1_correct"].value for c in cases] == expected_top1
    assert metrics["top1_correct"] == pytest.approx(sum(expected_top1) / 3)
    assert _scores(by_id[cases[0].id])["top1_correct"].answer == first

    for case in cases:
        sample = by_id[case.id]
        assert sample.target == case.diagnosis.name
        clinician = [m.text for m in sample.messages if m.role == "assistant"][-2:]
        assert clinician == list(replies)
        assert any(m.role == "user" and "Patient" in m.text for m in sample.messages)
        score = _scores(sample)["violations"]
        found = score.metadata["violations"]
        assert score.value == len(found) >= 1
        assert "ai-disclosure-first-contact" in {v["rule_id"] for v in found}
        assert score.metadata["by_severity"]["total"] == len(found)
        full = _scores(sample)["top1_correct"].metadata["metrics"]
        assert full["turns"] == 2.0 and "inquiry_coverage" in full


def test_the_task_module_names_its_extra_when_inspect_is_missing(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "inspect_ai" else real(name, *a),
    )
    monkeypatch.delitem(sys.modules, "clinicgym.runs.integrations.inspect_task", raising=False)
    with pytest.raises(MissingExtra, match=r"'inspect' extra .*clinicgym\[inspect\]"):
        importlib.import_module("clinicgym.runs.integrations.inspect_task")
