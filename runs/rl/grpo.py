"""Multi-turn consultations as GRPO rollouts for TRL's `GRPOTrainer` (`rollout_func=`).

TRL hands the rollout function the prompts of one generation batch (each repeated
`num_generations` times, so a group plays one case) and the trainer. `ConsultationRollout`
plays every prompt's consultation to its end, all episodes batched into one `generate` call per
turn, and returns what the trainer needs:

* `prompt_ids`: the chat-templated opening (system prompt, first observation);
* `completion_ids`: every later token of the conversation, the model's turns and the env's
  replies in order, exactly as the model will see them (each reply is the chat template's own
  tokens for a user message, so nothing is re-tokenised across turns);
* `env_mask`: 1 on the model's tokens, 0 on the env's (TRL leaves the 0s out of the loss);
* `logprobs`: the sampling log-probabilities of the model's tokens (0 on the env's);
* `consultation_reward`: the episode's reward from scoring (`RewardSpec`), plus
  `diagnostic_accuracy` and `turns`, forwarded to reward functions; `env_reward` returns the
  first.

A consultation that runs out of `max_completion_length` tokens is stopped there and scored as
undiagnosed (the turn guard still counts its turns). Prompts come from `dataset()`; each names its
episode seed in a tag (`text.EPISODE_TAG`), so the same prompt always plays the same case.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clinicgym.runs.rl.errors import RLError, require
from clinicgym.runs.rl.text import EPISODE_TAG, ClinicSession, seed_of, tag

Generate = Callable[[list[list[int]]], tuple[list[list[int]], list[list[float]]]]
"""Token-id contexts in, (new token ids, their log-probabilities) out, one per context."""


class TransformersGenerator:
    """Sampling with a transformers causal LM: contexts left-padded into one `generate` call."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        do_sample: bool = True,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.do_sample = do_sample

    def __call__(self, contexts: list[list[int]]) -> tuple[list[list[int]], list[list[float]]]:
        import torch

        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        width = max(len(c) for c in contexts)
        ids = torch.full((len(contexts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(contexts), width), dtype=torch.long)
        for i, c in enumerate(contexts):
            ids[i, width - len(c) :] = torch.tensor(c, dtype=torch.long)
            mask[i, width - len(c) :] = 1
        device = next(self.model.parameters()).device
        eos = eos_ids(tok, self.model)
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
            if self.do_sample
            else {"do_sample": False}
        )
        if self.do_sample:
            sampling["top_k"] = self.top_k or None
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=self.max_new_tokens,
                eos_token_id=sorted(eos),
                pad_token_id=pad,
                output_scores=True,
                return_dict_in_generate=True,
                **sampling,
            )
        new = out.sequences[:, width:].cpu()
        scores = torch.stack(out.scores, dim=1).float().log_softmax(-1).cpu()  # B x T x V
        picked = scores.gather(-1, new.unsqueeze(-1)).squeeze(-1)
        tokens: list[list[int]] = []
        logprobs: list[list[float]] = []
        for row, lps in zip(new.tolist(), picked.tolist(), strict=True):
            end = next((j + 1 for j, t in enumerate(row) if t in eos), len(row))
            tokens.append(row[:end])
            logprobs.append(lps[:end])
        return tokens, logprobs


class VLLMTurnGenerator:
    """Per-turn generation through a `GRPOTrainer`'s vLLM engine (`use_vllm=True`), which caps
    each turn at the trainer's `max_completion_length`. Needs a GPU; not exercised in CI."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def __call__(self, contexts: list[list[int]]) -> tuple[list[list[int]], list[list[float]]]:
        _, ids, lps, _ = self.trainer.vllm_generation.generate(
            prompts=contexts, images=None, num_generations=1
        )
        return [list(x) for x in ids], [[float(p[0] or 0.0) for p in seq] for seq in lps]


def eos_ids(tokenizer: Any, model: Any = None) -> set[int]:
    """Token ids that end an assistant turn: the tokenizer's EOS and the model's."""
    out = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None)
    if isinstance(extra, int):
        out.add(extra)
    elif isinstance(extra, list):
        out.update(extra)
    if not out:
        raise RLError("the tokenizer has no eos_token; set one so turns can end")
    return out


@dataclass
class _Episode:
    session: ClinicSession
    prompt_ids: list[int]
    completion: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


class ConsultationRollout:
    """A TRL `rollout_func`: batched multi-turn consultations scored by clinicgym."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_new_tokens: int = 64,
        generator: str = "transformers",
        **session_kwargs: Any,
    ) -> None:
        if generator not in ("transformers", "vllm"):
            raise RLError(f"generator {generator!r} is not one of 'transformers', 'vllm'")
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.generator = generator
        self.session_kwargs = session_kwargs
        self._eos = eos_ids(tokenizer)

    # ---- the dataset ----------------------------------------------------------------------

    def dataset(self, n: int, seed: int = 0) -> list[dict[str, Any]]:
        """`n` prompt rows for episode seeds seed..seed+n-1 (a `datasets.Dataset.from_list`
        input): {'prompt': [system, user (tagged opening)], 'episode_seed': s}."""
        session = ClinicSession(**self.session_kwargs)
        rows = []
        for s in range(seed, seed + n):
            system, user = session.reset(s)
            prompt = [system, {"role": "user", "content": tag(s, user["content"])}]
            rows.append({"prompt": prompt, "episode_seed": s})
        return rows

    # ---- TRL entry point ------------------------------------------------------------------

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        """TRL's hook: roll out `prompts` with the trainer's model and sampling settings."""
        require("torch", "ConsultationRollout")
        args = trainer.args
        model = trainer.accelerator.unwrap_model(trainer.model)
        if self.generator == "vllm":
            generate: Generate = VLLMTurnGenerator(trainer)
        else:
            generate = TransformersGenerator(
                model,
                self.tokenizer,
                max_new_tokens=self.max_new_tokens,
                temperature=float(getattr(args, "temperature", 1.0) or 1.0),
                top_p=float(getattr(args, "top_p", 1.0) or 1.0),
                top_k=int(getattr(args, "top_k", 0) or 0),
            )
        was_training = model.training
        model.eval()
        try:
            return self.rollout(prompts, generate, int(args.max_completion_length))
        finally:
            model.train(was_training)

    # ---- the rollout itself ---------------------------------------------------------------

    def rollout(
        self, prompts: Sequence[Any], generate: Generate, max_completion_length: int
    ) -> dict[str, list[Any]]:
        """Play every prompt's consultation; see the module docstring for what comes back."""
        episodes = [self._start(p) for p in prompts]
        active = list(range(len(episodes)))
        while active:
            contexts = [episodes[i].prompt_ids + episodes[i].completion for i in active]
            new_tokens, new_logprobs = generate(contexts)
            still: list[int] = []
            for i, toks, lps in zip(active, new_tokens, new_logprobs, strict=True):
                if self._advance(episodes[i], list(toks), list(lps), max_completion_length):
                    still.append(i)
            active = still
        return {
            "prompt_ids": [e.prompt_ids for e in episodes],
            "completion_ids": [e.completion for e in episodes],
            "logprobs": [e.logprobs for e in episodes],
            "env_mask": [e.mask for e in episodes],
            "consultation_reward": [e.session.total for e in episodes],
            "diagnostic_accuracy": [
                float((e.session.episode.metrics or {}).get("diagnostic_accuracy") or 0.0)
                if e.session.episode
                else 0.0
                for e in episodes
            ],
            "turns": [
                float(e.session.episode.turns) if e.session.episode else 0.0 for e in episodes
            ],
        }

    def _start(self, prompt: Any) -> _Episode:
        if isinstance(prompt, str):
            raise RLError(
                "ConsultationRollout needs conversational prompts (lists of messages); build the "
                "dataset with ConsultationRollout.dataset()"
            )
        messages = list(prompt)
        seed = seed_of(messages)
        session = ClinicSession(**self.session_kwargs)
        fresh = session.reset(seed)
        user = next(m for m in messages if m.get("role") == "user")
        if EPISODE_TAG.sub("", str(user["content"]), count=1) != fresh[1]["content"]:
            raise RLError(
                f"prompt for episode {seed} does not match the consultation the env opens; was "
                "the dataset built with other cases, KB or max_turns?"
            )
        return _Episode(session=session, prompt_ids=self.prompt_ids(messages))

    def _advance(self, ep: _Episode, toks: list[int], lps: list[float], budget: int) -> bool:
        """Add one model turn and the env's reply; False once the episode is over."""
        room = budget - len(ep.completion)
        cut = len(toks) > room
        toks, lps = toks[:room], lps[:room]
        ep.completion += toks
        ep.mask += [1] * len(toks)
        ep.logprobs += [float(x) for x in lps]
        if cut or room <= 0:
            ep.session.stop()
            return False
        text = self.tokenizer.decode(toks, skip_special_tokens=True).strip() or "..."
        turn = ep.session.step(text)
        if turn.done:
            return False
        reply = self.reply_ids(turn.text, ended=bool(toks) and toks[-1] in self._eos)
        if len(ep.completion) + len(reply) >= budget:
            ep.session.stop()
            return False
        ep.completion += reply
        ep.mask += [0] * len(reply)
        ep.logprobs += [0.0] * len(reply)
        return True

    # ---- chat-template token arithmetic ---------------------------------------------------

    def _template(self, messages: list[dict[str, Any]], *, generation_prompt: bool) -> list[int]:
        ids = self.tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=generation_prompt, return_dict=False
        )
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """The opening chat's tokens, ending with the assistant header."""
        return self._template(messages, generation_prompt=True)

    def reply_ids(self, text: str, *, ended: bool = True) -> list[int]:
        """The template's tokens after an assistant turn: a user message holding `text`, then
        the next assistant header. Worked out by difference on a two-message chat; an
        assistant turn cut off before its end token gets that token here too."""
        base = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
        prefix = self._template(base, generation_prompt=False)
        full = self._template([*base, {"role": "user", "content": text}], generation_prompt=True)
        ends = [j for j, t in enumerate(prefix) if t in self._eos]
        if ends:
            prefix = prefix[: ends[-1] + 1]
        if full[: len(prefix)] != prefix:
            raise RLError(
                "the chat template renders an earlier turn differently once a user message "
                "follows it; multi-turn token accounting needs a prefix-stable template"
            )
        suffix = full[len(prefix) :]
        if not ended and ends:
            suffix = [prefix[-1], *suffix]
        return suffix


def env_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """A TRL reward function returning the rollout's `consultation_reward`."""
    rewards = kwargs.get("consultation_reward")
    if rewards is None:
        raise RLError(
            "env_reward found no 'consultation_reward' field: use it with "
            "rollout_func=ConsultationRollout(...)"
        )
    return [float(r) for r in rewards]
