"""A tiny tool-calling model built here, for CPU smoke runs of `clinicgym rl grpo` with no download.

`build_tiny_tool_model` writes a random-weight Llama (64 hidden, 2 layers) and a byte-level BPE
tokenizer trained with `tokenizers` on the consultations it will see, with a Qwen2.5-style chat
template that TRL knows how to parse tool calls from (`<tool_call>{json}</tool_call>`).
A random model never emits a well-formed tool call, so every rollout would end at once with the
same reward and GRPO would have no signal; `warm_start` first imitates the scripted baseline's
consultations played through `ClinicToolEnv` (supervised, loss on the clinician's tokens only).
This proves the plumbing, not the learning: the model is far too small to learn medicine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinicgym.envs.action import Ask, Diagnose, Examine, OrderTest, Prescribe
from clinicgym.runs.rl.errors import RLError, require
from clinicgym.runs.rl.trl_env import TOOL_NAMES, ClinicToolEnv, system_prompt

Chat = list[dict[str, Any]]

TAGS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")
"""The chat template's tool markers, one token each in the tiny tokenizer."""

FINAL_WORDS = "Consultation finished."
"""What the warm-started clinician says after its diagnosis: a turn without a tool call, which
ends TRL's tool loop."""


def tool_call(action: Any) -> dict[str, Any] | None:
    """The scripted baseline's action as a tool call of `ClinicToolEnv` (None if it has no tool)."""
    if isinstance(action, Ask):
        name, args = "ask_patient", {"question": action.question}
    elif isinstance(action, Examine):
        name, args = "examine", {"system": action.system}
    elif isinstance(action, OrderTest):
        name, args = "order_test", {"test": action.test}
    elif isinstance(action, Prescribe):
        name, args = "prescribe", {"drug": action.drug, "dose": action.dose or ""}
    elif isinstance(action, Diagnose):
        name, args = "diagnose", {"diagnoses": [d.name for d in action.diagnoses]}
    else:
        return None
    return {"type": "function", "function": {"name": name, "arguments": args}}


def scripted_tool_chats(n: int, seed: int, **session_kwargs: Any) -> list[Chat]:
    """Chats of the scripted baseline on consultations seed.. (as tool calls and tool replies,
    worded as TRL words them); a consultation where it acts outside the five tools is skipped."""
    from clinicgym.agents.scripted import ScriptedAgent
    from clinicgym.runs.rl.baselines import run_sync

    env = ClinicToolEnv(**session_kwargs)
    chats: list[Chat] = []
    s = seed
    while len(chats) < n and s < seed + 10 * n:
        opening = env.reset(episode_seed=s)
        s += 1
        session = env.session
        chat: Chat = [
            {"role": "system", "content": system_prompt(session)},
            {"role": "user", "content": opening},
        ]
        agent = ScriptedAgent(session.kb)
        agent.reset(session.observation, session.info)
        while not session.done:
            call = tool_call(run_sync(agent.act(session.observation, session.info)))
            if call is None:
                break
            fn = call["function"]
            reply = getattr(env, fn["name"])(**fn["arguments"])
            chat.append({"role": "assistant", "content": "", "tool_calls": [call]})
            chat.append({"role": "tool", "name": fn["name"], "content": reply})
        if session.done:
            chats.append([*chat, {"role": "assistant", "content": FINAL_WORDS}])
    if not chats:
        raise RLError("the scripted baseline finished no consultation with the five tools")
    return chats


def chat_template() -> str:
    """TRL's Qwen2.5 template: tool schemas in the system turn, calls as <tool_call> JSON."""
    require("trl", "the tiny tool-calling model")
    from trl.chat_template_utils import qwen2_5_chat_template

    return str(qwen2_5_chat_template)


def tools() -> list[Any]:
    """The tool methods of an env instance in the order TRL passes them to the chat template
    (`inspect.getmembers`: by name), so the warm start sees the prompt training will show."""
    env = ClinicToolEnv.__new__(ClinicToolEnv)
    return [getattr(env, name) for name in sorted(TOOL_NAMES)]


def build_tiny_tool_model(
    where: Path, chats: list[Chat], vocab_size: int = 2000, hidden: int = 64, layers: int = 2
) -> Path:
    """Write (once) a random-weight Llama and a BPE tokenizer trained on `chats` into `where`."""
    if (where / "config.json").exists():
        return where
    require("transformers", "the tiny tool-calling model")
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    template = chat_template()
    specials = ["<unk>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,  # its bars write blank lines to stdout, ahead of --json output
    )

    def wrapped() -> Any:  # the tokenizer as transformers uses it, with the chat template
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="<unk>",
            bos_token="<|im_start|>",
            eos_token="<|im_end|>",
            pad_token="<|im_end|>",
            padding_side="left",
        )
        fast.chat_template = template
        return fast

    fast = wrapped()
    corpus = [fast.apply_chat_template(c, tools=tools(), tokenize=False) for c in chats]
    tok.train_from_iterator([str(t) for t in corpus], trainer)
    fast = wrapped()  # wrapped again after training, as before this helper
    # the tool-call tags as single tokens (not special: decoding keeps them), as in Qwen's own
    fast.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    where.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(where)
    fast.save_pretrained(where)
    return where


def _ids(tokenizer: Any, chat: Chat, *, generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(
        chat,
        tools=tools(),
        tokenize=True,
        add_generation_prompt=generation_prompt,
        return_dict=True,
    )
    return list(out["input_ids"])


def supervised_example(tokenizer: Any, chat: Chat) -> tuple[list[int], list[int]]:
    """Token ids of the whole chat, and labels that keep only the clinician's turns (each up to
    and including its end token); -100 elsewhere."""
    ids = _ids(tokenizer, chat, generation_prompt=False)
    labels = [-100] * len(ids)
    eos = tokenizer.eos_token_id
    for i, m in enumerate(chat):
        if m["role"] != "assistant":
            continue
        start = len(_ids(tokenizer, chat[:i], generation_prompt=True))
        end = len(_ids(tokenizer, chat[: i + 1], generation_prompt=False))
        if ids[:start] != _ids(tokenizer, chat[:i], generation_prompt=True):
            raise RLError("the chat template is not prefix-stable; cannot label the turns")
        turn = ids[start:end]
        stop = turn.index(eos) + 1 if eos in turn else len(turn)
        labels[start : start + stop] = turn[:stop]
    return ids, labels


def warm_start(
    model: Any, tokenizer: Any, chats: list[Chat], steps: int, lr: float = 3e-3
) -> float:
    """`steps` supervised steps over `chats` (one chat a step, in turn); returns the last loss."""
    import torch

    examples = []
    for chat in chats:
        ids, labels = supervised_example(tokenizer, chat)
        examples.append((torch.tensor([ids]), torch.tensor([labels])))
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    loss = torch.tensor(0.0)
    for step in range(steps):
        x, y = examples[step % len(examples)]
        loss = model(input_ids=x, labels=y).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return float(loss.detach())
