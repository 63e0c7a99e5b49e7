"""The LLM clinician: any chat backend in the clinician's chair.

It turns the env's observations into a chat conversation (a system prompt from a jinja2
template, then one user message per observation), asks the backend for the next turn, and hands
the env either the model's tool call or its text (the env parses the text protocol). Every
request and reply goes into the turn's Event (`AgentOutput.meta`): the messages added since the
last request, the parameters, the raw reply, tokens, latency and retries. It sees observations
only: never the case, the monitors or the scores.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from pathlib import Path
from typing import Any

import jinja2

from clinicgym.agents.backends.base import ChatBackend, Message
from clinicgym.agents.errors import AgentSpecError
from clinicgym.agents.images import image_part, redact_images
from clinicgym.envs.action import (
    Ask,
    Diagnose,
    Disclose,
    End,
    Examine,
    OrderTest,
    Prescribe,
    Refer,
)
from clinicgym.envs.protocols import AgentOutput

PROMPTS = Path(__file__).parent / "prompts"
DEFAULT_TEMPLATE = PROMPTS / "clinician.j2"
TOOL_MODELS = {
    "ask": Ask,
    "examine": Examine,
    "order_test": OrderTest,
    "diagnose": Diagnose,
    "prescribe": Prescribe,
    "disclose": Disclose,
    "refer": Refer,
    "end": End,
}


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """Resolve local $refs and drop titles, so every server accepts the schema."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k not in ("title", "$defs")}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def tool_schemas(names: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    """OpenAI function-tool schemas for the env's tools, generated from its Action models."""
    return copy.deepcopy(_tool_schemas(tuple(names)))


@functools.cache
def _tool_schemas(names: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for name in names:
        model = TOOL_MODELS.get(name)
        if model is None:
            continue
        raw = model.model_json_schema()
        schema = _inline(raw, raw.get("$defs", {}))
        schema["properties"].pop("tool", None)
        schema["required"] = [r for r in schema.get("required", []) if r != "tool"]
        schema["additionalProperties"] = False
        doc = (model.__doc__ or name).strip().splitlines()[0]
        out.append(
            {
                "type": "function",
                "function": {"name": name, "description": doc, "parameters": schema},
            }
        )
    return out


class PromptTemplate:
    """The jinja2 template that words the system prompt and each observation."""

    def __init__(self, path: Path | str | None = None) -> None:
        path = Path(path) if path else DEFAULT_TEMPLATE
        if not path.is_file():
            raise AgentSpecError(f"prompt template {path}: no such file")
        self.path = path
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(path.parent), str(PROMPTS)]),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        try:
            self.template = env.get_template(path.name)
        except jinja2.TemplateSyntaxError as e:
            raise AgentSpecError(f"prompt template {path}, line {e.lineno}: {e.message}") from None
        self.digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]

    def examples(self, **context: Any) -> list[Message]:
        """Example exchanges sent before the opening: the 'examples' part's lines
        'patient: ...' (a user message) and 'doctor: ...' (an assistant message)."""
        out: list[Message] = []
        text = self.render("examples", observation="", turn=0, turns_left=0, **context)
        for line in text.splitlines():
            who, sep, text = line.partition(":")
            role = {"patient": "user", "doctor": "assistant"}.get(who.strip().lower())
            if sep and role:
                out.append({"role": role, "content": text.strip()})
            elif out and line.strip():  # a continuation line
                out[-1]["content"] += "\n" + line.strip()
        return out

    def render(self, part: str, **context: Any) -> str:
        """The text for `part` ('system' or 'turn'); an undefined variable is an error."""
        try:
            return self.template.render(part=part, **context).strip()
        except jinja2.UndefinedError as e:
            raise AgentSpecError(f"prompt template {self.path}: {e.message}") from None


class LLMClinician:
    """Plays the clinician with a chat backend; one instance per episode, the backend shared."""

    def __init__(
        self,
        backend: ChatBackend,
        *,
        agent_id: str = "llm",
        template: PromptTemplate | None = None,
        use_tools: bool = False,
        params: dict[str, Any] | None = None,
        history_turns: int | None = None,
        one_line: bool = False,
        vision: bool = False,
        max_turns: int | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.backend = backend
        self.template = template or PromptTemplate()
        self.use_tools = use_tools
        self.params = {k: v for k, v in (params or {}).items() if v is not None}
        if history_turns is not None and history_turns < 1:
            raise AgentSpecError(
                f"history_turns must be >= 1 (or unset for all), got {history_turns}"
            )
        self.history_turns = history_turns
        if max_turns is not None and max_turns < 1:
            raise AgentSpecError(f"max_turns must be >= 1 (or unset), got {max_turns}")
        self.max_turns = max_turns
        """Ask the model this many turns at most, then end the consultation (`END`, no
        diagnosis): caps what a model that never diagnoses costs, below the run's turn budget."""
        self.one_line = one_line and not use_tools
        """Stop each reply at its first line break (the text protocol is one line a turn)."""
        self.vision = vision
        """Send a result's picture (`info["image"]`) as an image content part; a text-only
        model (the default) gets the text alone."""
        self.messages: list[Message] = []
        self.tools: list[dict[str, Any]] = []
        self._sent = 0
        self._head = 0
        self._pending_call: str | None = None
        self._episode_seed = 0
        self._context: dict[str, Any] = {}

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        patient = info.get("patient", {})
        tools = tuple(info.get("tools", TOOL_MODELS))
        self.tools = _tool_schemas(tools)  # shared, never mutated
        self._context = {
            "patient": {
                "age": patient.get("age", observation.get("age")),
                "sex": patient.get("sex", "unknown"),
                "setting": patient.get("setting", "primary_care"),
            },
            "use_tools": self.use_tools,
            "tools": [
                {"name": t["function"]["name"], "description": t["function"]["description"]}
                for t in self.tools
            ],
            "help": info.get("help", ""),
        }
        self._episode_seed = int(info.get("seed", 0))
        self._pending_call = None
        self._sent = 0
        self.messages = [
            {"role": "system", "content": self.template.render("system", **self._context)},
            *self.template.examples(**self._context),
        ]
        self._observe(observation, info)
        self._head = len(self.messages)

    def _observe(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        text = self.template.render(
            "turn",
            **self._context,
            observation=observation.get("text", ""),
            turn=int(observation.get("turn", 0)),
            turns_left=int(observation.get("turns_left", 0)),
        )
        pixels = info.get("image") if self.vision else None
        image = image_part(pixels) if pixels is not None else None
        if self._pending_call is not None:
            self.messages.append(
                {"role": "tool", "tool_call_id": self._pending_call, "content": text}
            )
            self._pending_call = None
            if image is not None:  # a tool message carries text only (OpenAI's API)
                note = "The image of the result above."
                self.messages.append({"role": "user", "content": [_text_part(note), image]})
        elif image is not None:
            self.messages.append({"role": "user", "content": [_text_part(text), image]})
        else:
            self.messages.append({"role": "user", "content": text})

    def window(self) -> list[Message]:
        """The messages sent: all, or the system prompt, examples, opening and last N exchanges."""
        keep = self._head + 2 * (self.history_turns or 0)
        if self.history_turns is None or len(self.messages) <= keep:
            return self.messages
        return self.messages[: self._head] + self.messages[-2 * self.history_turns :]

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> AgentOutput:
        turn = int(info.get("turn", 0))
        if self.max_turns is not None and turn >= self.max_turns:
            return AgentOutput(action="END", meta={"max_turns": self.max_turns})
        if turn > 0:
            self._observe(observation, info)
        params = dict(self.params)
        if self.one_line:
            params["stop"] = ["\n"]
        if "seed" in params:  # distinct per episode and turn, reproducible across runs
            params["seed"] = _mix(params["seed"], self._episode_seed, turn)
        sent = list(self.window())
        added = self.messages[self._sent :]
        self._sent = len(self.messages)
        reply = await self.backend.chat(sent, self.tools if self.use_tools else None, **params)
        if reply.tool_calls:
            call = reply.tool_calls[0]
            action: Any = call.as_openai()
            self._pending_call = call.id or "call_0"
            self.messages.append(
                {"role": "assistant", "content": reply.text or None, "tool_calls": [action]}
            )
        else:
            action = reply.text
            self.messages.append({"role": "assistant", "content": reply.text})
        self._sent = len(self.messages)
        meta = {
            "backend": self.backend.name,
            "model": reply.model,
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "cached_tokens": reply.cached_tokens,
            "latency_s": round(reply.latency_s, 4),
            "retries": reply.retries,
            "finish_reason": reply.finish_reason,
            "request": {
                "added": [redact_images(m) for m in added],
                "messages": len(sent),
                "params": params,
                "tools": [t["function"]["name"] for t in self.tools] if self.use_tools else [],
                "template": self.template.digest,
            },
            "reply": {
                "text": reply.text,
                "tool_calls": [c.model_dump() for c in reply.tool_calls],
            },
        }
        return AgentOutput(action=action, meta=meta)


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _mix(*parts: int) -> int:
    """A 31-bit seed from several integers (stable across Python versions and processes)."""
    digest = hashlib.sha256(":".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
