"""Communication: readability, jargon and empathy markers of what the clinician says."""

from __future__ import annotations

import pytest

from clinicgym.scoring.communication import (
    empathy_share,
    flesch_reading_ease,
    jargon_per_100_words,
    syllables,
)


def test_syllables_and_flesch_order_plain_above_dense():
    assert syllables("cat") == 1 and syllables("headache") == 2 and syllables("medication") == 4
    plain = flesch_reading_ease(["Does it hurt? Is it bad at night?"])
    dense = flesch_reading_ease(
        ["Characterise the exacerbating pathophysiological manifestations of your symptomatology."]
    )
    assert plain > 80 > 20 > dense
    assert flesch_reading_ease([]) is None


def test_jargon_per_100_words():
    assert jargon_per_100_words(["Any dyspnoea or haematuria today?"]) == pytest.approx(40.0)
    assert jargon_per_100_words(["Any trouble breathing?"]) == 0.0


def test_empathy_share_counts_turns_with_a_marker():
    turns = [
        "I'm so sorry to hear that, it must be really hard.",
        "Thank you for telling me.",
        "Where is the pain?",
        "How have you been coping?",
    ]
    assert empathy_share(turns) == pytest.approx(0.75)
    assert empathy_share([]) is None


def test_flesch_matches_the_formula_on_a_worked_sentence():
    # 6 words, 1 sentence, 6 syllables: 206.835 - 1.015 * 6 - 84.6 * 1 = 116.145
    assert flesch_reading_ease(["The cat sat on the mat."]) == pytest.approx(116.145)
    # "Medication" has 4 vowel groups (e, i, a, io): 2 words, 5 syllables, 1 sentence
    assert flesch_reading_ease(["Medication helps."]) == pytest.approx(
        206.835 - 1.015 * 2 - 84.6 * 5 / 2
    )
