"""The NumPy MiniLM encoder: the same embeddings as the transformers forward pass, no torch."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from clinicgym.patients.errors import EncoderError
from clinicgym.patients.patient.encoder import SentenceEncoder, default_encoder, read_safetensors
from clinicgym.patients.patient.matching import INTENTS

TEXTS = [
    *[t for examples in INTENTS.values() for t in examples],
    "Do you have a fever or a cough?",
    "hav u had trouble brushin ur hair, like ur arms get too weak?",
    "Any chest pain when you breathe in deeply, and have you had shortness of breath?",
    "Héllo, café naïve 中文",
    "",
    "word " * 300,  # truncated at 128 tokens
]


def test_embeddings_are_unit_vectors_and_similar_questions_are_close():
    enc = default_encoder()
    v = enc.encode(["Do you have a fever?", "Have you had a high temperature?", "Any allergies?"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_a_text_embeds_the_same_alone_as_in_a_padded_batch():
    enc = SentenceEncoder()
    batch = enc._forward(TEXTS)
    alone = np.stack([enc._forward([t])[0] for t in TEXTS[-6:]])
    assert np.abs(batch[-6:] - alone).max() < 1e-5


@pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None,
    reason="transformers and torch (extra 'local') are the reference for the NumPy forward pass",
)
def test_numpy_forward_pass_matches_transformers():
    import torch
    from transformers import AutoModel, AutoTokenizer

    enc = SentenceEncoder()
    tok = AutoTokenizer.from_pretrained(enc.model_dir)
    model = AutoModel.from_pretrained(enc.model_dir).eval()
    batch = tok(TEXTS, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    ref = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    ours = enc._forward(TEXTS)
    assert np.abs(ours - ref).max() < 1e-6  # measured 2e-7; matcher thresholds are 0.55-0.75


def test_a_bad_weights_file_is_an_encoder_error(tmp_path):
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).write_bytes((default_encoder().model_dir / name).read_bytes())
    header = b'{"embeddings.word_embeddings.weight": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}}'
    (tmp_path / "model.safetensors").write_bytes(
        len(header).to_bytes(8, "little") + header + b"\0\0"
    )
    with pytest.raises(EncoderError, match="unsupported dtype BF16"):
        read_safetensors(tmp_path / "model.safetensors")
    with pytest.raises(EncoderError, match="unsupported dtype"):
        SentenceEncoder(tmp_path)


def test_the_encoder_imports_neither_torch_nor_transformers():
    code = (
        "import sys\n"
        "from clinicgym.patients.patient.encoder import default_encoder\n"
        "default_encoder().encode(['Any cough?'])\n"
        "print(sorted(m for m in ('torch', 'transformers', 'scipy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
