"""Chat backends behind one async interface (`ChatBackend`): OpenAI-compatible HTTP (`openai`),
transformers (`hf`), vLLM's engine (`vllm`) and LangChain (`langchain`). Each backend module
imports its heavy or optional dependencies itself, so importing this package stays cheap."""

from clinicgym.agents.backends.base import ChatBackend, ChatReply, Message, ToolCall

__all__ = ["ChatBackend", "ChatReply", "Message", "ToolCall"]
