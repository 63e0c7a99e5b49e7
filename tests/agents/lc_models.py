"""LangChain model factories named by `langchain:lc_models:...` specs in the tests."""

from __future__ import annotations

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage


def scripted_doctor() -> GenericFakeChatModel:
    """A LangChain fake chat model that asks, examines, then diagnoses, forever."""
    replies = ["Do you have a fever?", "EXAMINE: respiratory", "DIAGNOSIS: Migraine without aura"]
    return GenericFakeChatModel(messages=iter([AIMessage(content=r) for r in replies * 50]))


def not_a_model() -> str:
    return "hello"
