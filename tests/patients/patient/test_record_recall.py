"""How a written record's patient picks the statement that answers a question, and how it says it.

Each test builds a small clinician-written case in AgentClinic's shape and imports it as a user
would, so the checks run without the shared case files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from clinicgym.patients.cases.case import Fact
from clinicgym.patients.errors import KBError
from clinicgym.patients.knowledge.kb import default_kb
from clinicgym.patients.patient.matching import matcher_for
from clinicgym.patients.patient.patient import GroundedPatient
from clinicgym.patients.patient.recall import (
    ACCEPTANCE_FILE,
    FEATURES,
    AcceptanceScorer,
    acceptance_scorer,
    excepted,
    focus_stems,
    is_obstetric,
    load_acceptance,
    plain,
    polarity,
)


def _fact(text: str, present: bool = True) -> Fact:
    return Fact(id="f00", category="hpi", concept="text.0", text=text, present=present)


def _patient(tmp_path: Path, **actor: object) -> GroundedPatient:
    """A patient for a small written case; `actor` overrides Patient_Actor fields."""
    from clinicgym.patients.importers.external import read_cases

    fields = {
        "Demographics": "34-year-old female",
        "History": "A 2-day history of cough.",
        "Symptoms": {"Primary_Symptom": "Cough", "Secondary_Symptoms": []},
        "Past_Medical_History": "Asthma.",
        "Social_History": "Works as a cashier.",
        "Review_of_Systems": "Denies fever.",
        **actor,
    }
    line = {
        "OSCE_Examination": {
            "Objective_for_Doctor": "Assess the patient.",
            "Patient_Actor": fields,
            "Physical_Examination_Findings": {"Vital_Signs": {"Heart_Rate": "80 bpm"}},
            "Test_Results": {},
            "Correct_Diagnosis": "Acute bronchitis",
        }
    }
    f = tmp_path / "case.jsonl"
    f.write_text(json.dumps(line) + "\n")
    return GroundedPatient(read_cases(f, default_kb())[0], matcher_for(default_kb()))


def _status(patient: GroundedPatient, question: str) -> list[str]:
    return [a.status for a in patient.answer(question).answers]


def test_a_state_word_is_compared_by_its_stem_and_healthy_is_no_answer_to_existence() -> None:
    assert polarity(_fact("Knee pain that resolved on its own."), "Did it resolve?") == "affirmed"
    assert polarity(_fact("Knee pain that resolved on its own."), "Is it still there?") == "denied"
    sibling = _fact("One healthy sibling.")
    assert polarity(sibling, "Any brothers or sisters?") == "affirmed"
    assert polarity(_fact("Previously healthy."), "Any medical problems?") == "denied"


def test_a_negated_verb_answers_no_to_a_question_asking_it() -> None:
    rash = _fact("Facial rash not involving the perioral skin.")
    assert polarity(rash, "Does the rash involve the skin around your mouth?") == "denied"
    crohn = _fact("Crohn disease, failing to respond to standard therapies.")
    assert polarity(crohn, "Has it responded to treatment?") == "denied"
    assert polarity(_fact("Episodes of not breathing during sleep."), "During sleep?") == (
        "affirmed"
    )


def test_what_a_question_takes_as_given_is_not_what_it_asks() -> None:
    q = "Did the gauze stop the bleeding?"
    assert focus_stems(q, plain(q)) == {"stop"}
    assert focus_stems("Any bleeding?", "Any bleeding?") == {"bleed"}
    assert excepted("Apart from the arthritis, do you have any other conditions?") == {"arthr"}
    assert excepted("Any other conditions?") == set()


def test_birth_and_pregnancy_are_not_past_illnesses() -> None:
    assert is_obstetric(_fact("Delivered vaginally at 39 weeks."))
    assert is_obstetric(_fact("I'm currently pregnant."))
    assert not is_obstetric(_fact("Gestational diabetes in her last pregnancy."))
    assert not is_obstetric(_fact("Asthma."))


def test_a_question_about_one_site_is_answered_by_the_same_site_in_other_words(
    tmp_path: Path,
) -> None:
    patient = _patient(
        tmp_path, Review_of_Systems="Denies abdominal pain.", History="Pain in both knees."
    )
    assert _status(patient, "any belly pain?") == ["denied"]
    assert _status(patient, "any hip pain?") == ["unknown"]


def test_a_pronoun_is_no_shared_word(tmp_path: Path) -> None:
    """'her' in the question and in an unrelated statement ties nothing."""
    patient = _patient(
        tmp_path,
        Demographics="6-year-old girl",
        History="Her immunizations are up to date.",
        Review_of_Systems="",
    )
    assert _status(patient, "Any swelling of her hands?") == ["unknown"]


def test_the_medical_history_list_leaves_out_births_and_what_is_set_aside(tmp_path: Path) -> None:
    patient = _patient(
        tmp_path,
        Past_Medical_History="No significant past medical history. Delivered vaginally at 39 weeks.",
    )
    reply = patient.answer("Any significant medical problems?")
    assert [a.status for a in reply.answers] == ["denied"] and "Delivered" not in reply.text
    other = _patient(tmp_path, Past_Medical_History="Arthritis.")
    assert _status(other, "Apart from arthritis, do you have any other medical conditions?") == [
        "unknown"
    ]


@pytest.mark.parametrize(
    ("question", "yes"),
    [("Did it come on suddenly or gradually?", False), ("Did it come on suddenly?", True)],
)
def test_a_choice_is_answered_without_a_yes(tmp_path: Path, question: str, yes: bool) -> None:
    patient = _patient(tmp_path, History="Sudden onset of cough 2 days ago.")
    reply = patient.answer(question)
    assert reply.answers[0].status == "affirmed"
    assert reply.text.startswith(("Yes", "Yeah")) is yes


def test_the_yes_is_decided_per_part(tmp_path: Path) -> None:
    """An open second part ('what do you take for it?') gets the statement, not a yes."""
    patient = _patient(tmp_path, Social_History="Works as a cashier.")
    reply = patient.answer("Any fever, and what do you do for work?")
    assert [a.status for a in reply.answers] == ["denied", "affirmed"]
    assert "Yes" not in reply.text


def test_a_denial_inside_a_statement_answers_no_unless_the_state_itself_is_asked() -> None:
    student = _fact("A student with no history of smoking, alcohol, or drug use.")
    assert polarity(student, "Do you use drug?") == "denied"
    assert polarity(_fact("Fever without chills."), "Any fever?") == "affirmed"
    normal = _fact("No known allergies, normal birth and developmental history.")
    assert polarity(normal, "Has his development been normal?") == "affirmed"


def test_a_question_about_earlier_episodes_is_not_answered_by_the_present_one(
    tmp_path: Path,
) -> None:
    patient = _patient(tmp_path, History="Knee pain that started yesterday.")
    assert _status(patient, "Have you had similar knee pain in the past?") == ["unknown"]
    assert _status(patient, "Any knee pain?") == ["affirmed"]


def test_a_problem_at_birth_is_not_a_date_of_birth_and_healthy_is_a_no(tmp_path: Path) -> None:
    patient = _patient(
        tmp_path,
        Demographics="2-year-old boy",
        Past_Medical_History="Birth history unremarkable.",
    )
    reply = patient.answer("were there any probs when he was born?")
    assert reply.intent != "dob" and [a.status for a in reply.answers] == ["denied"]
    assert patient.answer("When was he born?").intent == "dob"
    healthy = _patient(tmp_path, Past_Medical_History="Previously healthy.")
    assert _status(healthy, "Any past medical history?") == ["denied"]


def test_lay_words_for_drinking_and_blacking_out() -> None:
    assert "alcohol" in plain("do u drink?")
    assert "loss of consciousness" in plain("did u black out?")
    assert "myocardial infarction" in plain("ever had a heart attack?")


def test_anything_else_and_past_illness_are_answered_by_the_records_general_denials(
    tmp_path: Path,
) -> None:
    patient = _patient(
        tmp_path,
        Review_of_Systems="No other symptoms reported.",
        Past_Medical_History="No significant illnesses.",
    )
    assert _status(patient, "anything else wrong with her?") == ["denied"]
    assert _status(patient, "any health probs before this?") == ["denied"]


def test_a_long_denial_that_names_every_word_asked_answers_it(tmp_path: Path) -> None:
    """The words of a denial list can dilute its meaning below the threshold; naming every word
    the part asks about is enough for a denial, naming some of them is not."""
    from clinicgym.patients.patient.recall import RecordIndex

    patient = _patient(tmp_path)
    index = patient._record
    assert isinstance(index, RecordIndex)
    listed = _fact(
        "No fever, vomiting, significant headache, ear pain, recent foreign travel, known "
        "exposure to toxins or use of new medications.",
        present=False,
    )
    alone = RecordIndex([listed], index.encoder)
    assert [r.status for r in alone.recall("Any recent foreign travel?")] == ["denied"]
    assert [r.status for r in alone.recall("Any travel to Brazil?")] == ["unknown"]


def test_trouble_with_what_is_asked_says_it_is_not_all_right() -> None:
    feeding = _fact("He is intolerant to feeding since birth.")
    assert polarity(feeding, "is he feeding alright?") == "denied"
    assert polarity(feeding, "any trouble feeding?") == "affirmed"
    gaining = _fact("Weight gain despite decreased feeding.")
    assert polarity(gaining, "is he gaining weight ok?") == "affirmed"


def test_text_speak_open_questions_get_no_yes(tmp_path: Path) -> None:
    patient = _patient(tmp_path, Social_History="Works as a cashier.")
    assert not patient.answer("wats ur job?").text.startswith(("Yes", "Yeah"))


def test_two_shared_words_admit_a_short_statement_and_difficulty_alone_admits_none(
    tmp_path: Path,
) -> None:
    patient = _patient(
        tmp_path,
        History="Appears ill. His mother describes him as occasionally difficult.",
        Demographics="6-year-old boy",
    )
    assert _status(patient, "does he look sick to u?") == ["affirmed"]
    assert _status(patient, "Does he have difficulty paying attention?") == ["unknown"]


def test_how_old_asks_the_age(tmp_path: Path) -> None:
    patient = _patient(tmp_path, Demographics="4-day-old male newborn")
    assert patient.answer("how old is bubs?").intent == "age"


def test_what_an_open_question_is_about_does_not_answer_what_it_asks(tmp_path: Path) -> None:
    """'What do you take for the arthritis?' is not answered by 'arthritis'; 'how bad is the
    pain in your knee?' is answered by the statement of that pain."""
    patient = _patient(
        tmp_path,
        Past_Medical_History="Diagnosed with arthritis.",
        History="Severe right knee pain.",
    )
    assert _status(patient, "what do you take for the arthritis?") == ["unknown"]
    assert _status(patient, "how bad's the pain in ur knee?") == ["affirmed"]


def _scorer(intercept: float, threshold: float = 0.5, veto: float = 0.0) -> AcceptanceScorer:
    """A scorer whose chance is the same for every pair (no weights): it accepts or vetoes all."""
    n = len(FEATURES)
    return AcceptanceScorer(
        schema_version=1,
        fitted_on="test",
        features=list(FEATURES),
        mean=[0.0] * n,
        scale=[1.0] * n,
        coef=[0.0] * n,
        intercept=intercept,
        threshold=threshold,
        veto=veto,
    )


def test_the_bundled_weights_load_and_rescue_only_above_what_they_veto() -> None:
    s = acceptance_scorer()
    assert 0.0 <= s.veto < s.threshold <= 1.0
    assert tuple(s.features) == FEATURES


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["coef"].pop(), "coef"),
        (lambda d: d["features"].reverse(), "features"),
        (lambda d: d.__setitem__("scale", [0.0] * len(FEATURES)), "scale"),
        (lambda d: d.pop("veto"), "veto"),
    ],
)
def test_a_broken_weights_file_names_the_file_and_field(tmp_path: Path, edit, field: str) -> None:
    data = yaml.safe_load(ACCEPTANCE_FILE.read_text(encoding="utf-8"))
    edit(data)
    bad = tmp_path / "weights.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(KBError) as e:
        load_acceptance(bad)
    assert "weights.yaml" in str(e.value) and field in str(e.value)


def test_the_chance_is_a_logistic_of_the_standardised_features() -> None:
    n = len(FEATURES)
    s = _scorer(0.0).model_copy(update={"coef": [1.0] + [0.0] * (n - 1), "mean": [0.5] * n})
    x = np.zeros((2, n))
    x[0, 0], x[1, 0] = 0.5, 1.5
    p = s.prob(x)
    assert p[0] == pytest.approx(0.5) and p[1] == pytest.approx(1 / (1 + 2.718281828**-1.0))


def test_the_scorer_rescues_and_vetoes_what_the_thresholds_decide(tmp_path: Path) -> None:
    """An unrelated question the thresholds leave unknown is answered by a scorer that accepts
    everything; a question they answer is left unknown by one that vetoes everything."""
    patient = _patient(tmp_path, Social_History="Works as a cashier.")
    assert patient._record is not None
    patient._record.scorer = None
    assert _status(patient, "Any fever?") == ["denied"]
    spain = patient._record.recall("Have you been to Spain?")[0]
    assert spain.fact is None and spain.blocked is None
    patient._record.scorer = _scorer(10.0)
    spain = patient._record.recall("Have you been to Spain?")[0]
    assert spain.fact is not None or spain.blocked is not None
    patient._record.scorer = _scorer(-10.0, threshold=0.9, veto=0.5)
    assert _status(patient, "Any fever?") == ["unknown"]


def test_run_time_needs_no_scikit_learn() -> None:
    code = (
        "import sys, numpy as np\n"
        "from clinicgym.patients.patient.recall import acceptance_scorer, FEATURES\n"
        "acceptance_scorer().prob(np.zeros((1, len(FEATURES))))\n"
        "assert 'sklearn' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_question_about_one_relative_side_or_drug_is_not_answered_about_another(
    tmp_path: Path,
) -> None:
    """A statement naming only other members of what the question names (a relative, a side,
    a KB drug) answers about them: 'unknown', not a yes borrowed from the father's gout."""
    patient = _patient(
        tmp_path,
        History="Pain when she rolls over in bed to the right.",
        Past_Medical_History="Allergies: trimethoprim (rash).",
        Social_History="Family history: father had gout.",
    )
    assert _status(patient, "does your dad get gout?") == ["affirmed"]
    assert _status(patient, "does your mum get gout too?") == ["unknown"]
    assert _status(patient, "are you allergic to trimethoprim?") == ["affirmed"]
    assert _status(patient, "are you allergic to nitrofurantoin?") == ["unknown"]
    assert _status(patient, "does it happen when you roll to the right?") == ["affirmed"]
    assert _status(patient, "does it happen when you roll onto your left side?") == ["unknown"]


def test_one_vaccine_is_not_another(tmp_path: Path) -> None:
    """'Had the flu jab' says nothing of the pneumonia vaccine; a disease named without a
    vaccine word is no vaccine at all."""
    patient = _patient(tmp_path, Past_Medical_History="Had flu jab this autumn.")
    assert _status(patient, "did you have the flu jab?") == ["affirmed"]
    assert _status(patient, "have you had the pneumonia vaccine?") == ["unknown"]
    assert _status(patient, "are you up to date with your covid boosters?") == ["unknown"]


def test_a_past_habit_is_no_to_now_and_yes_to_ever() -> None:
    former = _fact("I'm a former cigar smoker.")
    assert polarity(former, "Do you smoke?") == "denied"
    assert polarity(former, "Have you ever smoked?") == "affirmed"
    abstained = _fact("I have abstained from alcohol for three years.")
    assert polarity(abstained, "Do you drink alcohol these days?") == "denied"


def test_painless_unrelated_and_unable_answer_no() -> None:
    assert polarity(_fact("Lesions are painless."), "Are the lesions painful?") == "denied"
    hands = _fact("Painless lesions on both hands.")
    assert polarity(hands, "Any spots on your hands?") == "affirmed"  # painless is not 'no spots'
    chest = _fact("Chest pain not related to exertion.")
    assert polarity(chest, "Does the pain come on when you exercise?") == "denied"
    assert polarity(chest, "Do you have chest pain?") == "affirmed"
    fingers = _fact("I have difficulty fully straightening my fingers.")
    assert polarity(fingers, "Can you straighten your fingers fully?") == "denied"
    birth = _fact("My child was born at term with no complications.")
    assert polarity(birth, "Any problems at the birth?") == "denied"
    assert polarity(birth, "Was he born at term?") == "affirmed"
    labour = _fact("An uneventful pregnancy until premature onset of labor.")
    assert polarity(labour, "Did labor start early?") == "affirmed"


def test_a_list_question_is_answered_by_a_statement_filed_under_another_heading(
    tmp_path: Path,
) -> None:
    patient = _patient(
        tmp_path,
        History="She has had a cough for two weeks. No medications.",
        Past_Medical_History="None.",
    )
    reply = patient.answer("Are you taking any medications?")
    assert [a.status for a in reply.answers] == ["denied"], reply.text


def test_when_and_how_long_are_answered_by_a_statement_of_the_complaint_that_gives_the_time(
    tmp_path: Path,
) -> None:
    patient = _patient(
        tmp_path,
        History="Left calf swelling and pain. L calf swelling x4/7. Sudden onset of "
        "abdominal pain around the umbilicus 16 hours ago.",
        Review_of_Systems="Low-grade fever.",
    )
    assert "x4/7" in patient.answer("How long has your calf been swollen?").text
    reply = patient.answer("When did the tummy pain start?")
    assert "16 hours ago" in reply.text
    assert [a.status for a in reply.answers] == ["affirmed"]
    fever = patient.answer("When did the fever start?")  # the record does not say
    assert [a.status for a in fever.answers] == ["unknown"], fever.text


def test_an_ex_smoker_a_fine_hand_and_a_denied_word_answer_no() -> None:
    ex = _fact("Ex-smoker, stopped 2018.")
    assert polarity(ex, "Do you still smoke?") == "denied"
    assert polarity(ex, "Have you ever smoked?") == "affirmed"
    assert polarity(_fact("Left hand fine."), "Is your left hand affected at all?") == "denied"
    calm = _fact("He appears comfortable, with no signs of distress.")
    assert polarity(calm, "Does he seem distressed?") == "denied"
    assert polarity(calm, "Does he seem comfortable?") == "affirmed"


def test_a_rival_that_says_only_part_of_what_the_answer_says_does_not_block_it(
    tmp_path: Path,
) -> None:
    patient = _patient(
        tmp_path,
        History="Severe abdominal pain. Vaginal bleeding for the past hour accompanied by "
        "severe abdominal pain.",
        Review_of_Systems="Denies any recent trauma to the abdomen or any urinary symptoms.",
    )
    assert _status(patient, "Any recent trauma to the abdomen?") == ["denied"]
