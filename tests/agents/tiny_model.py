"""A tiny random-weight Llama chat model with a locally trained tokenizer, built in seconds.

Real transformers classes and a real chat template, so the hf backend runs its true code path
(batching, prefix cache, generate) without any download. Built once per directory.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Do you have a fever? Any cough, chest pain or shortness of breath?",
    "EXAMINE: respiratory. ORDER: full blood count. DIAGNOSIS: Pneumonia; Asthma",
    "Patient: I have had a cough for three days and I feel hot.",
    "New consultation (primary care). Patient: 54-year-old woman.",
    "You are the doctor. Reply with exactly one line each turn.",
    "No, nothing like that. Yes, it started last week. I don't know.",
]


def build_tiny_chat_model(where: Path) -> Path:
    """Write (once) a ~200K-parameter Llama and its tokenizer into `where`; return it."""
    if (where / "config.json").exists():
        return where
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
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
    model = LlamaForCausalLM(config)
    where.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(where)
    fast.save_pretrained(where)
    return where
