"""The human player: a person takes the clinician's seat in the terminal.

Each turn shows what the env says and reads one line, which the env parses exactly as it parses
a model's text (a question, 'EXAMINE: ...', 'ORDER: ...', 'DIAGNOSIS: a; b (70%)', 'END'), so a
person is scored the same way as a model. '/help' lists the tools; an empty line asks again; end
of input (Ctrl-D) ends the consultation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console

from clinicgym.envs.action import End

HELP = """Type one action per turn:
  a question           Do you have a fever?
  EXAMINE: system      EXAMINE: respiratory     (or: vitals)
  ORDER: test          ORDER: full blood count
  REFER: service       REFER: emergency department
  PRESCRIBE: drug, dose
  DISCLOSE: who: what  (answer a relative or employer who asks)
  DIAGNOSIS: most likely; second (70%); third   ends the consultation
  END                  ends without a diagnosis
  /help                this list"""


async def _read_line(prompt: str) -> str | None:
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None


class HumanAgent:
    """Reads the clinician's actions from a person; `ask` and `show` can be replaced (tests)."""

    def __init__(
        self,
        ask: Callable[[str], Awaitable[str | None]] | None = None,
        show: Callable[[str], None] | None = None,
        agent_id: str = "human",
    ) -> None:
        self.agent_id = agent_id
        self.ask = ask or _read_line
        console = Console(highlight=False)
        self.show = show or (lambda text: console.print(text, markup=False))

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        self.show(f"{HELP}\n")
        self.show(observation["text"])

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> Any:
        if int(info.get("turn", 0)) > 0:
            self.show(observation["text"])
        left = int(observation.get("turns_left", 0))
        while True:
            line = await self.ask(f"[{left} turns left] > ")
            if line is None:
                return End(note="the player closed the input")
            line = line.strip()
            if line == "/help":
                self.show(HELP)
            elif line:
                return line
