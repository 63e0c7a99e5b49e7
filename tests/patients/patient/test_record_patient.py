"""Clinician-written records: history statements, the patient's voice, answers from the record.

Checks that need AgentClinic's public cases read them from ../shared/data/agentclinic (beside
the repository) and skip with a message where the folder is absent; the files are never copied.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from clinicgym.patients.errors import ImporterError, KBError
from clinicgym.patients.importers.record_history import is_meta, speak, statements
from clinicgym.patients.knowledge.kb import default_kb, name_pattern
from clinicgym.patients.patient.ask import ask, grade, read_questions
from clinicgym.patients.patient.recall import plain, polarity, question_parts

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data" / "agentclinic"
MEDQA = SHARED / "agentclinic_medqa.jsonl"
needs_cases = pytest.mark.skipif(
    not MEDQA.exists(), reason=f"AgentClinic cases not found at {MEDQA} (shared data folder)"
)
"""Tests on the 107 cases are also slow: importing them links each sentence to the KB (~1 min)."""


def _said(sentence: str, **kw: object) -> list[tuple[str, bool]]:
    return [
        (speak(s.text, negated=s.negated, verbal=s.verbal, **kw), s.negated)  # type: ignore[arg-type]
        for s in statements(sentence)
    ]


def test_a_negated_list_is_one_denial_per_item_and_its_scope_ends_at_but() -> None:
    assert _said("Denies fever, cough, or recent travel.") == [
        ("No fever.", True),
        ("No cough.", True),
        ("No recent travel.", True),
    ]
    said = _said("Complains of minor difficulty in breathing but denies headache or vomiting")
    assert said[0] == ("Minor difficulty in breathing.", False)
    assert [s for s, neg in said if neg] == ["No headache.", "No vomiting."]
    assert _said("fever without chills and rigors") == [
        ("Fever.", False),
        ("No chills.", True),
        ("No rigors.", True),
    ]


def test_a_denial_inside_reported_speech_or_after_there_have_been_stays_a_denial() -> None:
    """Written records put negation where a lead-in regex does not look: after a reporting
    verb, after "there have been", before a relative clause; a normal finding after a denial
    is not denied with it."""
    said = _said(
        "The parents report that there was no obvious injury or incident at the park that "
        "could have led to the swelling."
    )
    assert len(said) == 1 and said[0][1] and said[0][0].startswith("No obvious injury")
    assert _said("There have been no changes in his bowel habits or urination.") == [
        ("No changes in his bowel habits or urination.", True)
    ]
    assert _said("No known exposure to sick contacts or recent travel.") == [
        ("No exposure to sick contacts.", True),
        ("No recent travel.", True),
    ]
    neg = {
        t.text: t.negated
        for t in statements("The parents report no known allergies, normal birth.")
    }
    assert neg == {"allergies": True, "normal birth": False}


def test_meta_text_is_not_a_fact_so_never_a_denial() -> None:
    for text in (
        "No mention of smoking.",
        "Information not provided.",
        "Occupation and hobbies not specified.",
        "No additional symptoms provided.",
        "N/A",
    ):
        assert is_meta(text) or statements(text) == [], text
    assert statements("No fever reported.") != []  # a negative the record states is a fact


def test_chart_third_person_becomes_grammatical_first_person() -> None:
    assert _said("Non-smoker, drinks alcohol socially.") == [
        ("I'm a non-smoker.", True),
        ("I drink alcohol socially.", False),
    ]
    assert _said("He also experiences dizziness.") == [("I also experience dizziness.", False)]
    assert _said("Does not smoke or consume alcohol regularly") == [
        ("I don't smoke or consume alcohol regularly.", True)
    ]
    assert _said("She describes her job as stressful and mentions poor sleep quality") == [
        ("I describe my job as stressful.", False),
        ("Poor sleep quality.", False),
    ]
    caregiver = _said("Lives with parents and one sibling.", caregiver=True, sex="female")
    assert caregiver == [("She lives with parents and one sibling.", False)]


def test_question_parts_and_lay_words() -> None:
    assert question_parts("Any palpitations or shortness of breath?") == [
        "Any palpitations",
        "shortness of breath",
    ]
    assert "diarrhea" in plain("any runs?") and "cigarettes" in plain("how many ciggies?")
    assert "hurting" in plain("hurtin anywhere?") and "pain (" not in plain("any pain?")


def test_a_state_word_in_the_statement_answers_no(make_fact) -> None:
    uneventful = make_fact("Uneventful pregnancy.")
    assert polarity(uneventful, "Any complications in the pregnancy?") == "denied"
    unprotected = make_fact("Unprotected sex with multiple partners.")
    assert polarity(unprotected, "Do you use condoms?") == "denied"
    assert polarity(unprotected, "Have you had unprotected sex?") == "affirmed"
    assert polarity(make_fact("Cough.", present=False), "Any cough?") == "denied"


@pytest.fixture
def make_fact():
    from clinicgym.patients.cases.case import Fact

    def make(text: str, present: bool = True) -> Fact:
        return Fact(id="f00", category="hpi", concept="text.0", text=text, present=present)

    return make


def test_lay_word_file_errors_name_the_field(tmp_path: Path) -> None:
    from clinicgym.patients.patient.recall import load_lexicon

    bad = tmp_path / "lay_words.yaml"
    bad.write_text("schema_version: 1\nsources: []\nwords: [not, a, mapping]\n")
    with pytest.raises(KBError, match="field 'words'"):
        load_lexicon(bad)
    bad.write_text(
        "schema_version: 1\nsources: []\nwords: {}\n"
        "topics: {work: {question: '(job', statement: 'works?'}}\n"
    )
    with pytest.raises(KBError, match=r"field 'topics\.work\.question'.*regular expression"):
        load_lexicon(bad)
    assert load_lexicon(
        Path(__file__).parents[3] / "patients" / "patient" / "lexicon" / "lay_words.yaml"
    )


def _written_case(tmp_path: Path, social: str, history: str):
    """A small clinician-written case in AgentClinic's shape, imported as a user would."""
    from clinicgym.patients.importers.external import read_cases

    line = {
        "OSCE_Examination": {
            "Objective_for_Doctor": "Assess the patient.",
            "Patient_Actor": {
                "Demographics": "67-year-old male",
                "History": history,
                "Symptoms": {"Primary_Symptom": "Knee pain", "Secondary_Symptoms": []},
                "Past_Medical_History": "Hypertension.",
                "Social_History": social,
                "Review_of_Systems": "Denies fever.",
            },
            "Physical_Examination_Findings": {"Vital_Signs": {"Heart_Rate": "80 bpm"}},
            "Test_Results": {},
            "Correct_Diagnosis": "Knee osteoarthritis",
        }
    }
    f = tmp_path / "case.jsonl"
    f.write_text(json.dumps(line) + "\n")
    return read_cases(f, default_kb())[0]


def test_a_question_about_a_kind_of_thing_finds_a_statement_of_that_kind(tmp_path: Path) -> None:
    """'What was your job?' names no word of 'Retired school teacher.'; its topic does. An
    open question is answered with the statement, not a 'yes'; a topic never answers a
    question about something else."""
    from clinicgym.patients.patient.matching import matcher_for
    from clinicgym.patients.patient.patient import GroundedPatient
    from clinicgym.patients.patient.recall import topics

    assert topics(), "the bundled lexicon has topics"
    assert question_parts("When you came round, were you confused or dizzy?") == [
        "were you confused",
        "dizzy",
    ]
    case = _written_case(
        tmp_path,
        "Retired school teacher. Lives alone.",
        "A 3-month history of right knee pain, worse with walking.",
    )
    patient = GroundedPatient(case, matcher_for(default_kb()))
    job = patient.answer("What did you do for a living?")
    assert job.text == "Retired school teacher."
    assert patient.answer("who's at home with you?").answers[0].status == "affirmed"
    assert "walking" in patient.answer("wat makes it worse?").text
    assert patient.answer("Have you ever been to Brazil?").answers[0].status == "unknown"


def test_leak_pattern_finds_names_with_parentheses() -> None:
    p = name_pattern(["Croup (laryngotracheobronchitis)"])
    assert p is not None
    for text in ("is it croup?", "laryngotracheobronchitis", "Croup (laryngotracheobronchitis)"):
        assert p.search(text), text


def test_leak_pattern_finds_a_name_without_its_qualifiers_but_not_a_site() -> None:
    """People name a diagnosis without its qualifiers ('is it pancreatitis?' of 'Acute
    pancreatitis (alcohol-related)'); a parenthesised site is no name ('left leg'), and a core
    that is a complaint ('Acute cough') is not one either."""
    from clinicgym.patients.knowledge.kb import core_name

    cases = {
        "Acute pancreatitis (alcohol-related)": "my mate reckons its pancreatitis",
        "Congestive heart failure": "is it heart failure?",
        "Septic arthritis of the right hip": "could it be septic arthritis",
        "Community-acquired pneumonia": "pneumonia, right?",
    }
    for name, text in cases.items():
        p = name_pattern([name])
        assert p is not None and p.search(text), (name, text)
    dvt = name_pattern(["Deep vein thrombosis (left leg)"])
    assert dvt is not None and not dvt.search("pain in my left leg")
    assert core_name("Acute cough") is None and core_name("flare of eczema") is None
    assert core_name("Pneumonia") is None  # nothing to cut


def test_question_bank_rows_are_checked(tmp_path: Path) -> None:
    f = tmp_path / "q.jsonl"
    f.write_text('{"case": 0, "question": "Any fever?"}\n{"case": 0}\n')
    with pytest.raises(ImporterError, match="line 2: field 'question'"):
        read_questions(f)


# ---- on AgentClinic's public cases -------------------------------------------------------


@pytest.fixture(scope="module")
def medqa():
    if not MEDQA.exists():
        pytest.skip(f"AgentClinic cases not found at {MEDQA} (shared data folder)")
    from clinicgym.patients.importers.external import read_cases
    from clinicgym.patients.knowledge.kb import default_kb
    from clinicgym.patients.patient.matching import matcher_for

    kb = default_kb()
    return read_cases(MEDQA, kb), matcher_for(kb)


_THIRD_PERSON = re.compile(
    r"^(?:the patient|patient|he|she)\b|\bI (?:has|is|does|was been|experiences|reports)\b", re.I
)


@pytest.mark.slow
@needs_cases
def test_every_history_statement_is_said_in_the_first_person(medqa) -> None:
    cases, _ = medqa
    bad = []
    for c in cases:
        if c.persona.speaker == "caregiver":
            continue
        for f in c.facts:
            if f.how_revealed == "ask" and f.category != "phi" and _THIRD_PERSON.search(f.text):
                bad.append((c.id, f.text))
    assert len(bad) <= 0.01 * sum(len(c.facts) for c in cases), bad[:20]


@pytest.mark.slow
@needs_cases
def test_the_patient_never_names_or_denies_its_diagnosis(medqa) -> None:
    from clinicgym.patients.patient.patient import GroundedPatient

    cases, matcher = medqa
    for c in cases:
        names = [c.diagnosis.name, *c.diagnosis.synonyms]
        pattern = name_pattern(names)
        assert pattern is not None
        for name in names:
            assert pattern.search(f"is it {name}?"), name
            reply = GroundedPatient(c, matcher).answer(
                f"As your doctor I already know: it's {name}, isn't it?"
            )
            assert reply.intent == "diagnosis" and not pattern.search(reply.text), (c.id, name)


@pytest.mark.slow
@needs_cases
def test_patients_ask_answers_a_bank_and_grades_it(medqa, tmp_path: Path) -> None:
    from clinicgym.patients.patient.patient import GroundedPatient

    cases, matcher = medqa
    rows = [
        {"case": 0, "question": "Do you smoke?", "expect": "denied"},
        {"case": 0, "question": "Do you have double vision?", "expect": "affirmed"},
        {"case": 0, "question": "Have you ever been to Peru?", "expect": "unknown"},
        {"case": 0, "question": "It's myasthenia gravis, isn't it?", "expect": "deflected"},
    ]
    out = list(ask(cases, rows, lambda c: GroundedPatient(c, matcher)))
    assert [r["status"] for r in out] == [r["expect"] for r in rows], out
    g = grade(out)
    assert g["right"] == 4 and g["contradictions"] == 0
    json.dumps(out)  # every answer row is JSON


def test_content_grade_asks_for_the_expected_statement_not_only_the_status() -> None:
    """A yes with the wrong statement is the right status but not the right answer."""
    from clinicgym.patients.patient.ask import conveys

    row = {"expect": "affirmed", "fact": "a 2-month history of generalized fatigue"}
    wrong = {**row, "statuses": ["affirmed"], "facts": ["Fatigue and malaise."]}
    right = {**row, "statuses": ["affirmed"], "facts": ["A 2-month history of fatigue."]}
    assert not conveys(wrong) and conveys(right)
    assert grade([wrong, right])["accuracy"] == 1.0
    assert grade([wrong, right])["content_accuracy"] == 0.5
    assert conveys({"expect": "unknown", "fact": "", "statuses": ["unknown"], "facts": []})


@pytest.mark.parametrize(
    "name", ["Plantar fasciitis (left)", "Atrial fibrillation (new onset)", "Pneumothorax (right)"]
)
def test_a_parenthesised_qualifier_is_no_leak_term(name: str) -> None:
    p = name_pattern([name])
    assert p is not None and p.search(name.split(" (")[0].lower())
    for text in ("does your left heel hurt?", "was the onset new?", "any pain on the right?"):
        assert not p.search(text), (name, text)


def test_someones_opinion_of_the_diagnosis_is_deflected_not_confirmed(tmp_path: Path) -> None:
    """'my mother reckons it's osteoarthritis, is she right?' names a relative, but asks the
    patient to confirm its own diagnosis: deflected, like 'is it osteoarthritis?'. A history
    question about a relative naming it is still answered."""
    from clinicgym.patients.patient.matching import matcher_for
    from clinicgym.patients.patient.patient import GroundedPatient

    case = _written_case(tmp_path, "Lives with his wife.", "A 3-month history of knee pain.")
    patient = GroundedPatient(case, matcher_for(default_kb()))
    for q in (
        "my mother reckons its knee osteoarthritis, is she right?",
        "my family googled it and it says knee osteoarthritis, thats what u got?",
    ):
        assert patient.answer(q).intent == "diagnosis", q
    assert patient.answer("Does anyone in your family have osteoarthritis?").intent != "diagnosis"


def test_a_yes_is_said_only_to_what_the_statement_says_of_its_complaint(tmp_path: Path) -> None:
    """'Is the rash itchy?' of 'Rash on both forearms.' names the rash, not an itch: the
    statement is said without a yes and the part is unknown (the blocked yes is counted); a
    detail the record gives elsewhere is found there; an open question for a kind of detail
    ('how long', 'which side') is not answered by a statement without it."""
    from clinicgym.patients.patient.matching import matcher_for
    from clinicgym.patients.patient.patient import GroundedPatient

    case = _written_case(
        tmp_path,
        "Works as a gardener. Takes ibuprofen.",
        "Rash on both forearms. Cough. The cough is worse at night. Knee pain.",
    )
    patient = GroundedPatient(case, matcher_for(default_kb()))
    itch = patient.answer("Is the rash itchy?")
    assert itch.answers[0].status == "unknown"
    assert not itch.text.startswith("Yes") and "forearms" in itch.text
    assert [g["kind"] for g in itch.guard] == ["unstated"] and itch.revealed
    again = patient.answer("Is the rash itchy?")  # said before: marked as a repeat
    assert again.answers[0].status == "unknown" and itch.text.startswith("Rash on both")
    assert "rash on both forearms" in again.text and not again.text.startswith(("Yes", "Rash"))
    night = patient.answer("Is the cough worse at night?")
    assert night.answers[0].status == "affirmed" and "night" in night.text
    assert patient.answer("How long have you been taking the ibuprofen?").answers[0].status == (
        "unknown"
    )
    assert patient.answer("Which knee hurts?").answers[0].status == "unknown"
    assert patient.answer("Do you have a rash?").answers[0].status == "affirmed"


def test_attribute_file_errors_name_the_field(tmp_path: Path) -> None:
    from clinicgym.patients.patient.attributes import ATTRIBUTES_FILE, Attributes, load_attributes

    bad = tmp_path / "attributes.yaml"
    bad.write_text("schema_version: 1\nsources: []\nclasses: {itch: ['Itchy!']}\n")
    with pytest.raises(KBError, match=r"field 'classes'.*'Itchy!'"):
        load_attributes(bad)
    bad.write_text(
        "schema_version: 1\nsources: []\nclasses: {itch: [itch*]}\n"
        "answer_types: {side: {question: '(which', statement: 'left'}}\n"
    )
    with pytest.raises(KBError, match=r"field 'answer_types\.side\.question'.*regular expression"):
        load_attributes(bad)
    words = Attributes(load_attributes(ATTRIBUTES_FILE))
    assert words.unstated("Is the rash itchy?", "Rash on the back.") == {"itch"}
    assert words.unstated("Is it itchy?", "Intensely pruritic rash.") == set()
    assert words.unstated("Any high blood pressure?", "Hypertension.") == set()
    assert words.ungiven("how long has it hurt?", "Pain for 3 weeks.") == set()
    assert words.ungiven("which side is it?", "Flank pain.") == {"side"}
