"""Evaluate a custom agent beside a built-in baseline from Python, with `clinicgym.evaluate`.

    python examples/evaluate_api.py [--out runs/evaluate-api] [--cases 3]

The custom agent implements the Agent protocol (envs/protocols.py): an `agent_id`, `reset` at
the start of each episode, and `async act` returning the next action as text (a question,
`EXAMINE: ...`, `ORDER: ...` or `DIAGNOSIS: a; b (70%)`). It is handed over as an object;
as a spec string it would be `--agent examples.evaluate_api:KeywordClinician` on the command
line. The run directory is a normal one: `clinicgym report OUT` and `clinicgym summary OUT`
read it.
"""

from __future__ import annotations

import argparse
from typing import Any

import clinicgym

KEYWORDS = {
    "cough": "Community-acquired pneumonia",
    "breath": "Acute exacerbation of COPD",
    "headache": "Migraine",
    "wheez": "Bronchiolitis",
    "joint": "Septic arthritis",
    "worr": "Generalised anxiety disorder",
}
"""A word heard in the consultation -> the diagnosis the agent names (first match wins)."""


class KeywordClinician:
    """Asks two questions, then names the diagnosis of the first keyword it has heard."""

    agent_id = "keywords"
    QUESTIONS = ("What brings you in today?", "Do you have any other symptoms?")

    def __init__(self, fallback: str = "Community-acquired pneumonia") -> None:
        self.fallback = fallback
        self.heard: list[str] = []

    def reset(self, observation: dict[str, Any], info: dict[str, Any]) -> None:
        """A new episode: forget the last one."""
        self.heard = [str(observation.get("text", ""))]

    async def act(self, observation: dict[str, Any], info: dict[str, Any]) -> str:
        """The next question, or the diagnosis once both questions are answered."""
        self.heard.append(str(observation.get("text", "")))
        asked = len(self.heard) - 2  # the opening, then one observation per turn
        if asked < len(self.QUESTIONS):
            return self.QUESTIONS[asked]
        said = " ".join(self.heard).lower()
        guess = next((dx for word, dx in KEYWORDS.items() if word in said), self.fallback)
        return f"DIAGNOSIS: {guess} (40%)"


def main(argv: list[str] | None = None) -> clinicgym.EvaluationResult:
    """Play the custom agent and the `scripted` baseline on a few cases and print the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/evaluate-api", help="run directory")
    parser.add_argument("--cases", type=int, default=3, help="cases from the bundled KB")
    parser.add_argument("--kb", default=None, help="a knowledge-base directory (default: bundled)")
    args = parser.parse_args(argv)

    result = clinicgym.evaluate(
        agents=[KeywordClinician(), "scripted"],
        cases=args.cases,
        out=args.out,
        kb=args.kb,
        max_turns=6,
        packs=["ai-transparency@2"],
        seed=0,
    )
    print(result)
    for r in result.agents.values():
        acc = "-" if r.accuracy is None else f"{r.accuracy:.0%}"
        print(f"{r.name}: top-1 {acc} over {r.episodes} episodes, {r.violations} violations")
    print(f"run directory: {result.run_dir} (try `clinicgym report {result.run_dir}`)")
    return result


if __name__ == "__main__":
    main()
