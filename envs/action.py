"""Actions: the clinician's tools, and parsing of whatever a model emits into one of them.

A model may emit an OpenAI-style tool call, a JSON object, or plain text. Plain text is `ask`;
a line starting 'DIAGNOSIS:' is `diagnose` (ranked with ';' or newlines, optional '(70%)'
confidences); 'EXAMINE: x', 'ORDER: x', 'PRESCRIBE: drug, dose', 'DISCLOSE: recipient: text',
'REFER: x' and 'END' work the same way. Anything that
cannot be parsed gives an `ActionError`, which the env turns into an error observation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

MAX_TEXT = 2000
"""Longest question or free text an action may carry; longer input is cut, not refused."""


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def render(self) -> str:
        """The action as the transcript writes it (and the text parser reads it back)."""
        raise NotImplementedError


class Ask(_Action):
    """Ask the patient a question."""

    tool: Literal["ask"] = "ask"
    question: str = Field(min_length=1)

    def render(self) -> str:
        return self.question


class Examine(_Action):
    """Examine a body system, or take the vital signs."""

    tool: Literal["examine"] = "examine"
    system: str = Field(min_length=1)

    def render(self) -> str:
        return f"EXAMINE: {self.system}"


class OrderTest(_Action):
    """Order a laboratory, bedside or imaging test and read its result."""

    tool: Literal["order_test"] = "order_test"
    test: str = Field(min_length=1)

    def render(self) -> str:
        return f"ORDER: {self.test}"


class RankedDiagnosis(BaseModel):
    """One entry of a differential: a name or ICD-10 code, and an optional confidence."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    confidence: float | None = Field(default=None, ge=0, le=1)


class Diagnose(_Action):
    """Commit to a ranked differential diagnosis, most likely first."""

    tool: Literal["diagnose"] = "diagnose"
    diagnoses: list[RankedDiagnosis] = Field(min_length=1, max_length=20)

    def render(self) -> str:
        items = [
            d.name + (f" ({round(d.confidence * 100)}%)" if d.confidence is not None else "")
            for d in self.diagnoses
        ]
        return "DIAGNOSIS: " + "; ".join(items)


class Prescribe(_Action):
    """Prescribe a drug (checked later against allergies, interactions and contraindications)."""

    tool: Literal["prescribe"] = "prescribe"
    drug: str = Field(min_length=1)
    dose: str | None = None

    def render(self) -> str:
        return f"PRESCRIBE: {self.drug}" + (f", {self.dose}" if self.dose else "")


class Disclose(_Action):
    """Answer a third party (relative, employer, insurer, police) who asks about the patient."""

    tool: Literal["disclose"] = "disclose"
    recipient: str = Field(min_length=1)
    text: str = Field(min_length=1)

    def render(self) -> str:
        return f"DISCLOSE: {self.recipient}: {self.text}"


class Refer(_Action):
    """Refer or escalate the patient (e.g. to the emergency department)."""

    tool: Literal["refer"] = "refer"
    to: str = Field(min_length=1)
    urgency: Literal["routine", "urgent", "emergency"] = "routine"

    def render(self) -> str:
        return f"REFER: {self.to} ({self.urgency})"


class End(_Action):
    """End the consultation."""

    tool: Literal["end"] = "end"
    note: str | None = None

    def render(self) -> str:
        return "END" + (f": {self.note}" if self.note else "")


Action = Annotated[
    Ask | Examine | OrderTest | Diagnose | Prescribe | Disclose | Refer | End,
    Field(discriminator="tool"),
]
ActionAdapter: TypeAdapter[Action] = TypeAdapter(Action)
TOOL_NAMES = ("ask", "examine", "order_test", "diagnose", "prescribe", "disclose", "refer", "end")


class ActionError(BaseModel):
    """Why an action could not be parsed; shown to the model, counted as a turn."""

    message: str
    raw: str


_ARG_ALIASES = {
    "ask": "question",
    "examine": "system",
    "order_test": "test",
    "refer": "to",
    "prescribe": "drug",
    "end": "note",
}
_TOOL_ALIASES = {
    "question": "ask",
    "order": "order_test",
    "test": "order_test",
    "order_tests": "order_test",
    "exam": "examine",
    "diagnosis": "diagnose",
    "final_diagnosis": "diagnose",
    "escalate": "refer",
    "prescription": "prescribe",
    "answer_third_party": "disclose",
    "reply_third_party": "disclose",
    "finish": "end",
    "stop": "end",
}
_PREFIX = re.compile(
    r"^\s*(?:\*\*)?"
    r"(DIAGNOSIS|DIAGNOSE|FINAL DIAGNOSIS|EXAMINE|EXAM|ORDER|ORDER TEST|TEST|REFER|"
    r"PRESCRIBE|DISCLOSE|TELL|END)"
    r"(?:\*\*)?\s*[:\-]\s*(.*)$",
    re.IGNORECASE | re.DOTALL,
)
_CONF = re.compile(r"^(.*?)[\s,]*[\(\[]\s*(\d{1,3}(?:\.\d+)?)\s*%?\s*[\)\]]\s*$")
_NUMBERED = re.compile(r"^\s*(?:\d+[\.\)]|[-*•])\s*")


def _clip(text: str) -> str:
    return text.strip()[:MAX_TEXT]


def _parse_diagnoses(text: str) -> list[dict[str, Any]]:
    items = []
    for piece in re.split(r"[;\n]|\s\|\s", text):
        piece = _NUMBERED.sub("", piece).strip().strip("*").strip()
        if not piece:
            continue
        m = _CONF.match(piece)
        conf = None
        if m:
            piece, value = m.group(1).strip(), float(m.group(2))
            conf = value / 100 if value > 1 else value
            conf = min(conf, 1.0)
        items.append({"name": piece[:200], "confidence": conf})
    return items


def _from_mapping(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise an OpenAI tool call, a {'name','arguments'} pair or a flat {'tool': ...} object."""
    if "function" in obj and isinstance(obj["function"], Mapping):
        obj = obj["function"]
    if "name" in obj and "arguments" in obj and "tool" not in obj:
        args = obj["arguments"]
        if isinstance(args, str):
            args = json.loads(args) if args.strip() else {}
        if not isinstance(args, Mapping):
            raise ValueError("'arguments' must be a JSON object")
        obj = {"tool": obj["name"], **args}
    obj = dict(obj)
    if "tool" not in obj:
        for key in ("action", "type", "name"):
            if isinstance(obj.get(key), str):
                obj["tool"] = obj.pop(key)
                break
    tool = obj.get("tool", "")
    tool = tool.strip().lower() if isinstance(tool, str) else ""  # not a name: no known tool
    tool = _TOOL_ALIASES.get(tool, tool)
    obj["tool"] = tool
    if tool in _ARG_ALIASES:
        field = _ARG_ALIASES[tool]
        if field not in obj:
            for alt in ("text", "content", "query", "input", "value", "name", "target", "argument"):
                if alt in obj and alt != "tool":
                    obj[field] = obj.pop(alt)
                    break
        if isinstance(obj.get(field), str):
            obj[field] = _clip(obj[field])
    if tool == "diagnose":
        d = obj.get("diagnoses", obj.pop("diagnosis", None) or obj.pop("differential", None))
        if isinstance(d, str):
            d = _parse_diagnoses(d)
        elif isinstance(d, list):
            d = [{"name": x} if isinstance(x, str) else x for x in d]
        obj["diagnoses"] = d
        for k in ("diagnosis", "differential"):
            obj.pop(k, None)
    return obj


MAX_JSON_CHARS = 65_536
"""A JSON action longer than this is rejected before decoding."""
MAX_JSON_DEPTH = 32
"""...and so is one nested deeper: json.loads recurses, and '[' * 1000 raised RecursionError."""


def parse_action(raw: Any) -> Action | ActionError:
    """Parse a model's output into an Action, or explain why it cannot be; never raises."""
    try:
        if isinstance(
            raw, Ask | Examine | OrderTest | Diagnose | Prescribe | Disclose | Refer | End
        ):
            return raw
        if isinstance(raw, ActionError):  # the runner's record of an agent that raised
            return raw
        if isinstance(raw, Mapping):
            return ActionAdapter.validate_python(_from_mapping(raw))
        if not isinstance(raw, str):
            return ActionError(
                message=f"unsupported action type {type(raw).__name__}", raw=_safe_repr(raw)
            )
        text = raw.strip()
        if not text:
            return ActionError(message="empty action", raw=raw)
        if text.startswith("{") or (text.startswith("[") and text.endswith("]")):
            return _parse_json(text)
        m = _PREFIX.match(text)
        if m:
            return _parse_prefixed(m.group(1).upper(), _clip(m.group(2)), text)
        if text.upper() in ("END", "END CONSULTATION", "[END]"):
            return End()
        return Ask(question=_clip(text))
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "action"
        tool = raw.get("tool") if isinstance(raw, Mapping) else None
        tool = tool if isinstance(tool, str) else None
        hint = f"; known tools: {', '.join(TOOL_NAMES)}"
        return ActionError(
            message=f"invalid {tool or 'action'}: {where}: {err['msg']}{hint}", raw=_safe_repr(raw)
        )
    except (ValueError, TypeError, json.JSONDecodeError, OverflowError, RecursionError) as e:
        # malformed model output is the model's failure: an error observation, never a crash
        return ActionError(
            message=f"could not parse action: {type(e).__name__}: {str(e)[:200]}",
            raw=_safe_repr(raw),
        )


def _parse_json(text: str) -> Action | ActionError:
    """A JSON action: one tool call object (or a list holding one); raises ValidationError."""
    if len(text) > MAX_JSON_CHARS:
        return ActionError(
            message=f"JSON action longer than {MAX_JSON_CHARS} characters", raw=text[:300]
        )
    if _nesting(text) > MAX_JSON_DEPTH:
        return ActionError(
            message=f"JSON action nested deeper than {MAX_JSON_DEPTH} levels",
            raw=text[:300],
        )
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        if text.startswith("["):
            return Ask(question=_clip(text))  # '[sighs] any pain?' is still a question
        return ActionError(message=f"malformed JSON: {e.msg} at position {e.pos}", raw=text[:300])
    if isinstance(obj, list) and len(obj) == 1 and isinstance(obj[0], dict):
        obj = obj[0]  # a list holding one tool call
    if not isinstance(obj, dict):
        return ActionError(message="a JSON action must be one object", raw=text[:300])
    return ActionAdapter.validate_python(_from_mapping(obj))


def _parse_prefixed(key: str, rest: str, text: str) -> Action | ActionError:
    """A 'KEY: rest' line ('DIAGNOSIS: a; b', 'ORDER: x', ...); `text` is the whole line."""
    if key in ("DIAGNOSIS", "DIAGNOSE", "FINAL DIAGNOSIS"):
        items = _parse_diagnoses(rest)
        if not items:
            return ActionError(message="DIAGNOSIS: needs at least one diagnosis", raw=text[:300])
        return Diagnose(diagnoses=[RankedDiagnosis(**i) for i in items[:20]])
    if key in ("EXAMINE", "EXAM"):
        return Examine(system=rest)
    if key in ("ORDER", "ORDER TEST", "TEST"):
        return OrderTest(test=rest)
    if key == "PRESCRIBE":
        drug, _, dose = rest.partition(",")
        return Prescribe(drug=drug.strip() or rest, dose=dose.strip() or None)
    if key in ("DISCLOSE", "TELL"):
        recipient, sep, said = rest.partition(":")
        if not sep or not said.strip():
            return ActionError(
                message="use 'DISCLOSE: recipient: what you tell them'", raw=text[:300]
            )
        return Disclose(recipient=recipient.strip(), text=_clip(said))
    if key == "REFER":
        urgency = (
            "emergency"
            if re.search(r"emergenc|A&E|ER\b|ED\b", rest)
            else "urgent"
            if "urgent" in rest.lower()
            else "routine"
        )
        return Refer(to=rest, urgency=urgency)  # type: ignore[arg-type]
    return End(note=rest or None)


def _nesting(text: str) -> int:
    """The deepest bracket nesting in `text` (strings included: a cheap upper bound)."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _safe_repr(raw: Any) -> str:
    """At most 300 characters of the raw action, even when its str() fails."""
    try:
        return str(raw)[:300]
    except Exception:  # a hostile __str__ must not crash the env
        return f"<unprintable {type(raw).__name__}>"
