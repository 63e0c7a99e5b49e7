"""Markers for tests that need a pyproject extra: on the light core they skip and name it."""

from __future__ import annotations

import importlib.util

import pytest


def needs(extra: str, module: str) -> pytest.MarkDecorator:
    """Skip a test when `module` (installed by the extra `extra`) is not installed."""
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None,
        reason=f"needs the '{extra}' extra ({module} is not installed: the light core)",
    )
