"""Pictures for vision models: a uint8 array -> PNG bytes -> an OpenAI-style image content part.

The encoder is stdlib only (zlib and struct): a greyscale or RGB 8-bit PNG needs nothing more,
so sending images to a model adds no dependency to the light core. Encoding a 128 x 128
picture takes well under a millisecond; the same array always gives the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from typing import Any

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPE = {2: 0, 3: 2}
"""Array rank -> PNG colour type: (H, W) greyscale is 0, (H, W, 3) RGB is 2."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) greyscale or (H, W, 3) RGB uint8 array (filter 0, deflate 6)."""
    arr = np.asarray(image)
    if (
        arr.dtype != np.uint8
        or arr.ndim not in _COLOUR_TYPE
        or (arr.ndim == 3 and arr.shape[2] != 3)
    ):
        raise ValueError(
            f"encode_png takes an (H, W) or (H, W, 3) uint8 array, got {arr.shape} {arr.dtype}"
        )
    height, width = arr.shape[:2]
    if height < 1 or width < 1:
        raise ValueError(f"encode_png: an empty image {arr.shape}")
    rows = np.ascontiguousarray(arr).reshape(height, -1)
    raw = np.hstack([np.zeros((height, 1), np.uint8), rows]).tobytes()  # filter byte 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPE[arr.ndim], 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


def data_url(image: np.ndarray) -> str:
    """A `data:image/png;base64,...` URL of the picture."""
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode("ascii")


def image_part(image: np.ndarray) -> dict[str, Any]:
    """An OpenAI-style content part carrying the picture (the anthropic and google backends
    translate it to their own image blocks)."""
    return {"type": "image_url", "image_url": {"url": data_url(image)}}


def redact_images(message: dict[str, Any]) -> dict[str, Any]:
    """The message with each image's data URL replaced by its digest and size, for the
    transcript: an episode records which picture was sent, not 10 kB of base64 per turn."""
    content = message.get("content")
    if not isinstance(content, list):
        return message
    parts = []
    for p in content:
        url = str((p.get("image_url") or {}).get("url", "")) if isinstance(p, dict) else ""
        if p.get("type") == "image_url" and url.startswith("data:"):
            payload = base64.b64decode(url.partition(";base64,")[2])
            digest = hashlib.sha256(payload).hexdigest()[:16]
            p = {
                "type": "image_url",
                "image_url": {"url": f"sha256:{digest}"},
                "bytes": len(payload),
            }
        parts.append(p)
    return {**message, "content": parts}
