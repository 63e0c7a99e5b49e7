"""The LLM-worded patient: the grounded patient decides what to say, a language model says it.

The grounded patient picks the facts and writes a template answer; a chat model rewords it in
the persona's voice. Every wording goes through the `AnswerGuard` before the clinician sees it:
a leak of the diagnosis, a contradiction of the record, a claim the record does not support or
a fact the persona has not yet told is caught; the model gets one chance to rewrite (with the
problems named), after which the grounded template answer is used instead. Every catch is kept
in the reply (`PatientReply.guard`), so the episode counts them. Outputs are cached by dialogue
state (`ReplayCache`), so a rerun with the same seed is identical.

The model is any async callable `messages -> text` handed in by `runs` (a chat backend of
`clinicgym.agents`, a local transformers model, a test script); patients never import agents.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from clinicgym.patients.patient.guard import AnswerGuard, Catch
from clinicgym.patients.patient.patient import GroundedPatient, PatientReply
from clinicgym.patients.patient.replay import ReplayCache, cache_key

ChatFn = Callable[[list[dict[str, str]]], Awaitable[str]]
T = TypeVar("T")

SYSTEM_PROMPT = (
    "You are role-playing a patient talking to a doctor. Persona: {personality}; speaking style: "
    "{style}; health literacy: {literacy}; register: {register}.{speaker}\n"
    "Reword the ANSWER in your own voice, in one to three short sentences. Say only what the "
    "ANSWER says: do not add symptoms, history, medicines, numbers, durations or dates. Never "
    "name a disease or diagnosis. Reply with the patient's words only."
)
USER_PROMPT = "Doctor: {question}\nANSWER: {answer}\nPatient:"
REWRITE_PROMPT = (
    "That wording broke the rules: {problems}. Reword the ANSWER again, saying only what it "
    "says.\nANSWER: {answer}\nPatient:"
)
LITERAL_INTENTS = frozenset(
    {"not_understood", "jargon", "name", "dob", "address", "phone", "age", "greeting"}
)
"""Replies given verbatim: identity details and 'I don't understand' are not reworded."""
MAX_CHARS = 600


def _clean(text: str) -> str:
    """Strip quotes, speaker labels and trailing chatter; keep at most three sentences."""
    t = text.strip().strip('"').strip()
    t = re.sub(r"^(patient|me|answer)\s*:\s*", "", t, flags=re.IGNORECASE)
    t = re.split(r"\n\s*(?:doctor|patient)\s*:", t, flags=re.IGNORECASE)[0]
    t = t.split("\n\n")[0].strip().strip('"')
    t = re.sub(r"\s*\b(?:doctor|patient)\s*:\s*$", "", t, flags=re.IGNORECASE)
    parts = re.split(r"(?<=[.!?])\s+", t)
    return " ".join(parts[:3])[:MAX_CHARS].strip()


class _LoopThread:
    """One private event loop in a daemon thread, for sync callers (Gymnasium's `step`)."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def run(cls, coro: Coroutine[Any, Any, T]) -> T:
        with cls._lock:
            if cls._loop is None:
                cls._loop = asyncio.new_event_loop()
                threading.Thread(target=cls._loop.run_forever, daemon=True).start()
        return asyncio.run_coroutine_threadsafe(coro, cls._loop).result()


class LLMWordedPatient:
    """A grounded patient whose answers a chat model words, behind the answer guard."""

    def __init__(
        self,
        grounded: GroundedPatient,
        chat: ChatFn,
        guard: AnswerGuard,
        *,
        cache: ReplayCache | None = None,
        model_id: str = "",
        max_rewrites: int = 1,
    ) -> None:
        self.grounded = grounded
        self.case = grounded.case
        self.chat = chat
        self.guard = guard
        self.cache = cache
        self.model_id = model_id
        self.max_rewrites = max_rewrites
        p = self.case.persona
        speaker = (
            " You are the parent of the child who is the patient; speak about your child."
            if p.speaker == "caregiver"
            else ""
        )
        self._system = SYSTEM_PROMPT.format(
            personality=p.personality,
            style=p.style,
            literacy=p.health_literacy,
            register=p.language_register,
            speaker=speaker,
        )
        self.calls = 0

    @property
    def ledger(self) -> list[Any]:
        return self.grounded.ledger

    def opening(self) -> PatientReply:
        """The reason for the visit, as the grounded patient states it (not reworded)."""
        return self.grounded.opening()

    def answer(self, question: str, turn: int = 0) -> PatientReply:
        """Sync entry point (Gymnasium `step`); asyncio callers use `aanswer` via `env.astep`."""
        return _LoopThread.run(self.aanswer(question, turn))

    async def aanswer(self, question: str, turn: int = 0) -> PatientReply:
        """Decide the facts with the grounded patient, then word them behind the guard."""
        state = [(e.concept, e.status) for e in self.grounded.ledger]
        told = {c for c, s in state if s in ("affirmed", "denied")}
        base = self.grounded.answer(question, turn)
        if base.intent in LITERAL_INTENTS or base.guarded or not base.text:
            return base
        allowed = {a.concept for a in base.answers}
        expected = {a.concept: a.status for a in base.answers}
        catches: list[Catch] = []
        feedback: str | None = None
        previous = ""
        for attempt in range(1 + self.max_rewrites):
            messages = [
                {"role": "system", "content": self._system},
                {
                    "role": "user",
                    "content": USER_PROMPT.format(question=question, answer=base.text),
                },
            ]
            if feedback is not None:
                messages += [
                    {"role": "assistant", "content": previous},
                    {
                        "role": "user",
                        "content": REWRITE_PROMPT.format(problems=feedback, answer=base.text),
                    },
                ]
            out = _clean(await self._generate(messages, state, question, base.text, attempt))
            found = (
                self.guard.check(
                    out, grounded_text=base.text, allowed=allowed, told=told, expected=expected
                )
                if out
                else [Catch(kind="omission", sentence="(empty reply)")]
            )
            catches += found
            if not found:
                return base.model_copy(
                    update={
                        "text": out,
                        "guard": [c.model_dump() for c in catches],
                        "grounded_text": base.text,
                    }
                )
            previous = out
            feedback = "; ".join(f"{c.kind}: '{c.sentence}'" for c in found)
        return base.model_copy(
            update={
                "guard": [c.model_dump() for c in catches],
                "grounded_text": base.text,
                "guarded": True,
            }
        )

    async def _generate(
        self,
        messages: list[dict[str, str]],
        state: list[Any],
        question: str,
        grounded: str,
        attempt: int,
    ) -> str:
        key = cache_key(
            case=self.case.content_hash(),
            state=state,
            attempt=attempt,
            model=self.model_id,
            messages=messages,  # the prompt itself: question, answer, persona, guard feedback
        )
        if self.cache is not None:
            hit = self.cache.get(key, describe=f"case {self.case.id}, question {question!r}")
            if hit is not None:
                return hit
        self.calls += 1
        out = await self.chat(messages)
        if self.cache is not None:
            self.cache.put(key, out, model=self.model_id, prompt=messages)
        return out
