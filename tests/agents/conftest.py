"""Fixtures for agent tests: the fake OpenAI-compatible server and a tiny local chat model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).parent


def _load(name: str) -> None:
    """Make a helper module beside this file importable by name (tests use importlib mode)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_load("fake_openai")
_load("tiny_model")
if importlib.util.find_spec("langchain_core") is not None:  # extra `langchain`
    _load("lc_models")
