"""The severity of a policy violation, declared once: violations (`envs/episode.py`), the
env's penalties, policy packs, compliance reports, RL rewards and annotations read it here."""

from __future__ import annotations

from typing import Literal, get_args

Severity = Literal["low", "medium", "high", "critical"]
"""How bad a violation is, from least to most."""
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
"""The severities from least to most severe (reports list them reversed, worst first)."""
