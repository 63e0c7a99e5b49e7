"""Parsing what a model emits into actions; garbage becomes an ActionError, never an exception."""

from __future__ import annotations

import json

import pytest

from clinicgym.envs.action import (
    ActionError,
    Ask,
    Diagnose,
    Disclose,
    End,
    Examine,
    OrderTest,
    Prescribe,
    RankedDiagnosis,
    Refer,
    parse_action,
)


def test_plain_text_is_a_question():
    a = parse_action("Do you have any chest pain?")
    assert isinstance(a, Ask) and a.question == "Do you have any chest pain?"


def test_diagnosis_line_with_ranks_and_confidences():
    a = parse_action("DIAGNOSIS: Pneumonia (70%); Pulmonary embolism (0.2)\n3. Bronchitis")
    assert isinstance(a, Diagnose)
    assert [d.name for d in a.diagnoses] == ["Pneumonia", "Pulmonary embolism", "Bronchitis"]
    assert [d.confidence for d in a.diagnoses] == [0.7, 0.2, None]


@pytest.mark.parametrize(
    ("text", "kind", "field", "value"),
    [
        ("EXAMINE: respiratory", Examine, "system", "respiratory"),
        ("order: troponin", OrderTest, "test", "troponin"),
        ("**Final diagnosis**: Migraine", Diagnose, None, None),
        ("REFER: emergency department now", Refer, "urgency", "emergency"),
        ("END", End, None, None),
    ],
)
def test_text_protocol(text, kind, field, value):
    a = parse_action(text)
    assert isinstance(a, kind)
    if field:
        assert getattr(a, field) == value


def test_json_object():
    a = parse_action(json.dumps({"tool": "order_test", "test": "CRP"}))
    assert isinstance(a, OrderTest) and a.test == "CRP"


def test_openai_tool_call_with_string_arguments():
    call = {
        "id": "call_1",
        "type": "function",
        "function": {
            "name": "diagnose",
            "arguments": json.dumps({"diagnoses": [{"name": "UTI", "confidence": 0.9}]}),
        },
    }
    a = parse_action(call)
    assert isinstance(a, Diagnose) and a.diagnoses[0].name == "UTI"


def test_aliases_and_loose_shapes():
    assert isinstance(parse_action({"name": "exam", "arguments": {"target": "abdomen"}}), Examine)
    a = parse_action({"action": "diagnosis", "diagnosis": "Migraine; Tension headache"})
    assert isinstance(a, Diagnose) and len(a.diagnoses) == 2
    assert isinstance(parse_action({"tool": "ask", "text": "Any fever?"}), Ask)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "{not json}",
        '{"tool": "teleport", "where": "Mars"}',
        '{"tool": "ask"}',
        '["a", "list"]',
        {"function": {"name": "ask", "arguments": "{broken"}},
        {"tool": "diagnose", "diagnoses": []},
        {"tool": "diagnose", "diagnoses": [{"name": "x", "confidence": 7}]},
        None,
        42,
        3.5,
        ["ask", "x"],
        object(),
        "DIAGNOSIS:",
        b"bytes",
    ],
)
def test_garbage_is_an_action_error(raw):
    out = parse_action(raw)
    assert isinstance(out, ActionError)
    assert out.message


def test_huge_and_odd_text_does_not_raise():
    assert isinstance(parse_action("x" * 100_000), Ask)
    assert len(parse_action("why " * 10_000).question) <= 2000
    assert isinstance(parse_action("\x00\x01\u202e\U0001f600 ok?"), Ask)


def test_prescribe_and_disclose_text_protocol():
    from clinicgym.envs.action import Disclose, Prescribe

    a = parse_action("PRESCRIBE: amoxicillin, 500 mg three times a day")
    assert isinstance(a, Prescribe) and a.drug == "amoxicillin" and a.dose.startswith("500 mg")
    d = parse_action("DISCLOSE: employer: I cannot share anything without her consent.")
    assert isinstance(d, Disclose) and d.recipient == "employer"
    assert isinstance(parse_action("DISCLOSE: employer"), ActionError)
    assert isinstance(parse_action({"tool": "prescribe", "drug": "ibuprofen"}), Prescribe)


@pytest.mark.parametrize(
    "action, text",
    [
        (Ask(question="Any fever?"), "Any fever?"),
        (Examine(system="chest"), "EXAMINE: chest"),
        (OrderTest(test="ECG"), "ORDER: ECG"),
        (
            Diagnose(
                diagnoses=[
                    RankedDiagnosis(name="Asthma", confidence=0.7),
                    RankedDiagnosis(name="GORD"),
                ]
            ),
            "DIAGNOSIS: Asthma (70%); GORD",
        ),
        (Prescribe(drug="amoxicillin", dose="500 mg"), "PRESCRIBE: amoxicillin, 500 mg"),
        (Prescribe(drug="paracetamol"), "PRESCRIBE: paracetamol"),
        (Disclose(recipient="wife", text="he is unwell"), "DISCLOSE: wife: he is unwell"),
        (Refer(to="ED", urgency="emergency"), "REFER: ED (emergency)"),
        (End(), "END"),
        (End(note="bye"), "END: bye"),
    ],
)
def test_each_action_renders_its_transcript_text_and_parses_back(action, text):
    """Rendering lives on the action classes; the text env's parser reads the text back."""
    assert action.render() == text
    if not isinstance(action, Refer):  # the parser keeps '(emergency)' in the destination
        assert parse_action(text) == action
