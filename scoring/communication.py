"""How the clinician talks to the patient: readability, jargon and empathy markers.

Measured on the clinician's patient-facing words (its questions and closing note; not tool
names, tests or diagnoses).

* **Readability**: Flesch Reading Ease (Flesch 1948: 206.835 - 1.015 x words/sentence - 84.6 x
  syllables/word; 60-70 is plain English, under 30 is graduate level), syllables counted by
  vowel groups. A heuristic, like every readability formula.
* **Jargon**: medical terms a lay patient may not know, per 100 words; the list is the one the
  patient's personas use to decide what a low-literacy patient does not understand
  (`patients/knowledge/personas.yaml`).
* **Empathy markers**: the share of the clinician's patient-facing turns that name, understand,
  respect, support or explore the patient's feelings (the NURSE statements of Back, Arnold and
  Tulsky, *Mastering Communication with Seriously Ill Patients*, 2009) or thank and reassure.
  Lexical markers, so they count what is said, not whether it is meant.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

from clinicgym.envs.action import Ask, End
from clinicgym.envs.episode import Episode
from clinicgym.patients.cases.persona import default_persona_book

EMPATHY_MARKERS = (
    r"\b(i'?m|i am) (so |really |very )?sorry\b",
    r"\bthat (must|sounds|seems) (be )?(really |very |so )?(hard|difficult|frightening|scary|"
    r"worrying|upsetting|painful|tough|awful|stressful|exhausting)",
    r"\bsounds (really |very |so )?(hard|difficult|frightening|scary|worrying|upsetting|painful|"
    r"tough|awful|stressful|exhausting)",
    r"\bi (can )?(understand|see|hear) (that |how |why |this |it |you)",
    r"\bit'?s (understandable|natural|normal) (to|that)\b",
    r"\b(you'?re|you are) (clearly |obviously )?(worried|anxious|scared|upset|frightened)\b",
    r"\bthank you for (telling|sharing|letting|being)\b",
    r"\bi'?m glad you (told|came|mentioned|shared)\b",
    r"\b(we|i)'?(ll| will) (work|get through|figure) (this|it) (out )?together\b",
    r"\bhow (are|have) you (been )?(feeling|coping)\b",
    r"\bhow (is|has) (this|that|it) (been )?affect",
    r"\b(don'?t|do not) worry\b",
    r"\byou did the right thing\b",
)
"""Regular expressions of empathic statements (NURSE: Naming, Understanding, Respecting,
Supporting, Exploring; plus thanks and reassurance)."""
_EMPATHY = re.compile("|".join(EMPATHY_MARKERS), re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_VOWELS = re.compile(r"[aeiouy]+")


def patient_facing(episode: Episode) -> list[str]:
    """The clinician's words to the patient, one string per turn (questions and closing notes)."""
    out = []
    for e in episode.events:
        if e.actor != "clinician" or e.action is None:
            continue
        if isinstance(e.action, Ask):
            out.append(e.action.question)
        elif isinstance(e.action, End) and e.action.note:
            out.append(e.action.note)
    return out


def syllables(word: str) -> int:
    """Syllables of an English word by vowel groups (a silent final 'e' dropped); at least 1."""
    w = word.lower().strip("'-")
    if len(w) <= 3:
        return 1
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")):
        w = w[:-1]
    return max(1, len(_VOWELS.findall(w)))


def flesch_reading_ease(texts: Iterable[str]) -> float | None:
    """Flesch Reading Ease of the texts taken together; None when there are no words.

    Hand-written, not textstat: textstat 0.7 imports nltk (5-7 s on first import here) and on
    first use downloads nltk's cmudict from the network, which fails offline; every episode is
    scored with this, so the formula stays here (206.835 - 1.015 words/sentence - 84.6
    syllables/word, syllables by vowel groups: `syllables`)."""
    words = 0
    sentences = 0
    syl = 0
    for t in texts:
        ws = _WORD.findall(t)
        if not ws:
            continue
        words += len(ws)
        syl += sum(syllables(w) for w in ws)
        sentences += max(1, len(_SENTENCE_END.findall(t.strip())))
    if not words:
        return None
    return 206.835 - 1.015 * (words / sentences) - 84.6 * (syl / words)


@cache
def _jargon() -> re.Pattern[str]:
    terms = sorted(default_persona_book().jargon, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(map(re.escape, terms)) + r")\b", re.IGNORECASE)


def jargon_per_100_words(texts: Iterable[str]) -> float | None:
    """Jargon terms per 100 words; None when there are no words."""
    texts = list(texts)
    words = sum(len(_WORD.findall(t)) for t in texts)
    if not words:
        return None
    hits = sum(len(_jargon().findall(t)) for t in texts)
    return 100.0 * hits / words


def empathy_share(texts: Iterable[str]) -> float | None:
    """Share of patient-facing turns with at least one empathy marker; None with no turns."""
    texts = [t for t in texts if t.strip()]
    if not texts:
        return None
    return sum(1 for t in texts if _EMPATHY.search(t)) / len(texts)
