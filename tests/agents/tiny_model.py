"""A tiny random-weight Llama chat model with a locally trained tokenizer, built in seconds.

Real transformers classes and a real chat template, so the hf backend runs its true code path
(batching, prefix cache, generate) without any download. Built once per directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def _tiny_tokenizer(specials: list[str]) -> Any:
    """A byte-level BPE of 400 tokens trained on `CORPUS`, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )


def _tiny_llama_config(fast: Any, max_positions: int, **extra: Any) -> Any:
    """The 2-layer, 64-wide Llama both tiny models use, for `fast`'s vocabulary."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        **extra,
    )


def build_tiny_chat_model(where: Path) -> Path:
    """Write (once) a ~200K-parameter Llama and its tokenizer into `where`; return it."""
    if (where / "config.json").exists():
        return where
    import torch
    from transformers import LlamaForCausalLM

    fast = _tiny_tokenizer(["<unk>", "<|im_start|>", "<|im_end|>"])
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = _tiny_llama_config(fast, 4096, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    where.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(where)
    fast.save_pretrained(where)
    return where


VISION_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% for p in m['content'] %}{% if p['type'] == 'image' %}<image>"
    "{% elif p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Content as a list of parts, each image where its part is: the shape of LLaVA's templates."""


def build_tiny_vision_model(where: Path) -> Path:
    """Write (once) a tiny random-weight LLaVA (a 2-layer Llama behind a 2-layer CLIP vision
    tower, 32 px pictures in 16 patches) with its tokenizer and processor into `where`."""
    if (where / "config.json").exists():
        return where
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    fast = _tiny_tokenizer(["<unk>", "<|im_start|>", "<|im_end|>", "<image>"])
    torch.manual_seed(0)
    text = _tiny_llama_config(fast, 16384)
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=fast.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=fast,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, which "default" drops
        chat_template=VISION_CHAT_TEMPLATE,
    )
    where.mkdir(parents=True, exist_ok=True)
    LlavaForConditionalGeneration(config).save_pretrained(where)
    processor.save_pretrained(where)
    return where
