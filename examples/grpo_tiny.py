"""A few GRPO steps on clinicgym consultations with a tiny local model: the LLM-RL loop end to end.

Builds (once) a random-weight Llama with a byte-level BPE tokenizer trained here with
`tokenizers` (no download), then runs TRL's `GRPOTrainer` with clinicgym's multi-turn
`ConsultationRollout`: each prompt is a consultation the model plays turn by turn against the
grounded patient, rewarded by scoring's `RewardSpec`. A random model never names a diagnosis,
so every completion of a group would score alike and GRPO would have nothing to learn from; a
short warm start first imitates the scripted baseline's transcripts on other cases (supervised,
a few seconds), after which sampled consultations differ in length and outcome. This checks the
plumbing (token ids, masks, rewards, a real gradient step) on CPU in a minute or two, not the
learning. docs/rl.md shows the same loop on a GPU with a real model.

    python examples/grpo_tiny.py [--steps 2] [--out /tmp/grpo-tiny] [--json summary.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus() -> list[str]:
    """Text the tokenizer is trained on: the KB's questions and the clinician prompt's words."""
    from clinicgym.patients.knowledge.kb import default_kb

    kb = default_kb()
    lines = [f.question for f in kb.findings.values() if f.question]
    lines += [c.name for c in kb.conditions.values()]
    lines += [
        "You are the doctor. Reply with exactly one line each turn.",
        "EXAMINE: respiratory. ORDER: full blood count. DIAGNOSIS: Pneumonia; Asthma",
        "Patient: I have had a cough for three days. New consultation (primary care).",
    ]
    return lines


def build_tiny_model(where: Path) -> Path:
    """Write (once) a ~150K-parameter Llama and its tokenizer into `where`; return `where`."""
    if (where / "config.json").exists():
        return where
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<unk>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    where.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(where)
    fast.save_pretrained(where)
    return where


def scripted_transcripts(n: int, seed: int, max_turns: int) -> list[list[dict[str, str]]]:
    """Chats of the scripted baseline on `n` consultations (seeds from `seed`), worded as the
    rollout words them: the warm start's training data."""
    from clinicgym.agents.scripted import ScriptedAgent
    from clinicgym.runs.rl.baselines import run_sync
    from clinicgym.runs.rl.text import ClinicSession

    session = ClinicSession(max_turns=max_turns)
    chats = []
    for s in range(seed, seed + n):
        session.reset(s)
        agent = ScriptedAgent(session.kb)
        agent.reset(session.observation, session.info)
        while not session.done:
            action = run_sync(agent.act(session.observation, session.info))
            session.step(action.render())
        chats.append(list(session.messages))
    return chats


def warm_start(model: Any, rollout: Any, chats: list[list[dict[str, str]]], steps: int) -> float:
    """Supervised steps on the chats, laid out as the rollout lays them out (prompt, then model
    turns and env replies); the loss is on the clinician's tokens only. Returns the last loss."""
    import torch

    eos = rollout.tokenizer.eos_token_id
    examples = []
    for chat in chats:
        ids = rollout.prompt_ids(chat[:2])
        labels = [-100] * len(ids)
        for m in chat[2:]:
            if m["role"] == "assistant":
                turn = [*rollout.tokenizer.encode(m["content"], add_special_tokens=False), eos]
                ids, labels = ids + turn, labels + turn
            else:
                reply = rollout.reply_ids(m["content"])
                ids, labels = ids + reply, labels + [-100] * len(reply)
        examples.append((torch.tensor([ids]), torch.tensor([labels])))
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    loss = torch.tensor(0.0)
    for step in range(steps):
        x, y = examples[step % len(examples)]
        loss = model(input_ids=x, labels=y).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return float(loss)


def run(
    out: Path,
    steps: int = 2,
    prompts: int = 4,
    generations: int = 4,
    max_turns: int = 4,
    max_new_tokens: int = 24,
    max_completion_length: int = 256,
    warm_steps: int = 120,
    threads: int = 1,
) -> dict[str, Any]:
    """Train `steps` GRPO steps; returns a summary (rewards, loss, how far the weights moved).
    One torch thread by default: on a shared 2-core machine more threads thrash."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from clinicgym.runs.rl.grpo import ConsultationRollout, env_reward

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model_dir = build_tiny_model(out / "tiny-model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rollout = ConsultationRollout(tokenizer, max_new_tokens=max_new_tokens, max_turns=max_turns)
    t0 = time.perf_counter()
    chats = scripted_transcripts(6, seed=10_000, max_turns=max_turns)
    warm_loss = warm_start(model, rollout, chats, warm_steps) if warm_steps else None
    warm_seconds = time.perf_counter() - t0
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    dataset = Dataset.from_list(rollout.dataset(prompts, seed=0))
    config = GRPOConfig(
        output_dir=str(out / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=generations,
        num_generations=generations,
        max_completion_length=max_completion_length,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[env_reward],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        rollout_func=rollout,
    )
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    logs = [h for h in trainer.state.log_history if "loss" in h]
    moved = sum(float((p.detach() - before[k]).abs().sum()) for k, p in model.named_parameters())
    return {
        "warm_start": {"steps": warm_steps, "loss": warm_loss, "seconds": round(warm_seconds, 1)},
        "steps": trainer.state.global_step,
        "seconds": round(seconds, 1),
        "loss": [h.get("loss") for h in logs],
        "reward": [h.get("reward") for h in logs],
        "reward_std": [h.get("reward_std") for h in logs],
        "completion_mean_length": [h.get("completions/mean_length") for h in logs],
        "weights_moved_l1": moved,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=4, help="distinct consultations")
    ap.add_argument("--generations", type=int, default=4, help="completions per consultation")
    ap.add_argument("--max-turns", type=int, default=4)
    ap.add_argument("--warm-steps", type=int, default=120, help="supervised warm-start steps")
    ap.add_argument("--out", type=Path, default=Path("/tmp/clinicgym-grpo-tiny"))
    ap.add_argument("--json", type=Path, help="also write the summary here")
    args = ap.parse_args()
    summary = run(
        args.out,
        steps=args.steps,
        prompts=args.prompts,
        generations=args.generations,
        max_turns=args.max_turns,
        warm_steps=args.warm_steps,
    )
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
