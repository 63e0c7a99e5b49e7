"""The hf backend feeds a result's picture to a local vision-language model (`hf:PATH#vision=1`).

No vision weights can be downloaded here, so the model is a tiny random-weight LLaVA built in
the test (`build_tiny_vision_model`): real transformers classes, processor and chat template.
Its answers mean nothing; what is checked is that the env's pixels reach the model's forward
as the processor's own `pixel_values` for that picture, that they change its logits, that
without `vision=1` no picture reaches it, and that a text-only model is refused with the reason.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from tiny_model import build_tiny_chat_model, build_tiny_vision_model

from clinicgym.agents.backends.hf_vision import HFVisionBackend, decode_image
from clinicgym.agents.backends.registry import make_backend, parse_spec
from clinicgym.agents.errors import BackendError
from clinicgym.agents.images import image_part
from clinicgym.agents.registry import make_agent_factory
from clinicgym.envs.consultation import ConsultationEnv

PIL = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    return build_tiny_vision_model(tmp_path_factory.mktemp("vlm") / "model")


class Spy:
    """Records the pictures a model's vision tower is given (`pixel_values`: transformers runs
    the tower once, before generation) and the last-position logits of each forward call."""

    def __init__(self, model) -> None:
        self.pixels: list[torch.Tensor] = []
        self.logits: list[torch.Tensor] = []
        model.model.vision_tower.register_forward_pre_hook(self._tower, with_kwargs=True)
        model.register_forward_hook(self._after)

    def _tower(self, module, args, kwargs):
        pixels = kwargs["pixel_values"] if "pixel_values" in kwargs else args[0]
        self.pixels.append(pixels.detach().clone())

    def _after(self, module, args, output):
        self.logits.append(output.logits[:, -1].detach().clone())


def _play_two_turns(factory, env):
    """The model's opening turn, then the clinician's chest X-ray is ordered for it (as the
    modality probe does) and the model's next turn sees the result: (picture shown, spy)."""

    async def go():
        obs, info = env.reset(seed=0)
        agent = factory()
        spy = Spy(factory.backend.model)
        agent.reset(obs, info)
        try:
            first = await agent.act(obs, info)
            opening = (len(spy.pixels), len(spy.logits))
            obs, _, _, _, info = await env.astep("ORDER: chest X-ray")
            second = await agent.act(obs, info)
        finally:
            await factory.aclose()
        return info["image"].copy(), spy, opening, (first, second)

    return asyncio.run(go())


def test_the_env_picture_reaches_a_local_vision_model_as_its_pixel_values(vlm, small_kb, sampler):
    env = ConsultationEnv(sampler, kb=small_kb, max_turns=4, modality="image")
    spec = f"hf:{vlm}#vision=1,dtype=float32,max_tokens=3"
    factory = make_agent_factory(spec, small_kb)
    assert isinstance(factory.backend, HFVisionBackend)
    shown, spy, opening, (first, second) = _play_two_turns(factory, env)
    assert shown.any() and opening[0] == 0 and opening[1] >= 1  # no picture at the opening
    [pixels] = spy.pixels  # the picture, once, on the turn after the order
    expected = factory.backend.processor.image_processor(
        images=[PIL.fromarray(shown).convert("RGB")], return_tensors="pt"
    )["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32) and torch.equal(pixels, expected)
    assert second.meta["request"]["added"][0]["content"][1]["image_url"]["url"].startswith(
        "sha256:"
    )  # the transcript keeps the digest, as for the HTTP backends
    assert second.meta["prompt_tokens"] > first.meta["prompt_tokens"]


def test_without_vision_the_same_model_runs_on_text_and_sees_no_picture(vlm, small_kb, sampler):
    env = ConsultationEnv(sampler, kb=small_kb, max_turns=4, modality="image")
    factory = make_agent_factory(f"hf:{vlm}#dtype=float32,max_tokens=3", small_kb)
    assert isinstance(factory.backend, HFVisionBackend)  # LLaVA is no causal LM: text only
    shown, spy, _, (_, second) = _play_two_turns(factory, env)
    assert shown.any() and len(spy.logits) >= 2
    assert spy.pixels == []
    assert "Image attached." in second.meta["request"]["added"][0]["content"]


def _first_logits(backend, spy, picture: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixel_values, logits of the first reply token) when `picture` follows the same text."""
    message = {
        "role": "user",
        "content": [{"type": "text", "text": "Result:"}, image_part(picture)],
    }
    spy.pixels.clear()
    spy.logits.clear()
    asyncio.run(backend.chat([message], max_tokens=1))
    [pixels], [logits] = spy.pixels, spy.logits
    return pixels, logits


def test_two_pictures_give_different_logits_and_the_same_picture_the_same(vlm):
    backend = make_backend(f"hf:{vlm}#vision=1,dtype=float32")
    spy = Spy(backend.model)
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (128, 128), dtype=np.uint8) for _ in range(2))
    pa, la = _first_logits(backend, spy, a)
    pb, lb = _first_logits(backend, spy, b)
    pa2, la2 = _first_logits(backend, spy, a.copy())
    assert not torch.equal(pa, pb) and not torch.allclose(la, lb, atol=1e-4)
    assert torch.equal(pa, pa2) and torch.allclose(la, la2)
    # the data URL decodes to the picture itself, greyscale as RGB
    decoded = np.asarray(decode_image(image_part(a)["image_url"]["url"]))
    assert decoded.shape == (128, 128, 3) and all(
        np.array_equal(decoded[..., c], a) for c in range(3)
    )
    asyncio.run(backend.aclose())


def test_concurrent_turns_with_and_without_a_picture_share_one_generate(vlm):
    backend = make_backend(f"hf:{vlm}#vision=1,dtype=float32,max_tokens=4")
    backend.queue.wait_s = 0.05
    picture = np.full((64, 64), 180, np.uint8)
    convs = [
        [{"role": "user", "content": [{"type": "text", "text": "Result:"}, image_part(picture)]}],
        [{"role": "user", "content": "Do you have a fever?"}],
    ]

    async def together():
        return await asyncio.gather(*(backend.chat(c) for c in convs))

    async def alone():
        return [await backend.chat(c) for c in convs]

    batched = asyncio.run(together())
    assert backend.queue.batch_sizes[-1] == 2
    single = asyncio.run(alone())
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.prompt_tokens for r in batched] == [r.prompt_tokens for r in single]
    assert batched[0].prompt_tokens > batched[1].prompt_tokens  # the picture's 16 tokens
    asyncio.run(backend.aclose())


def test_vision_on_a_text_only_model_is_refused_with_the_reason(tmp_path):
    text_only = build_tiny_chat_model(tmp_path / "llama")
    with pytest.raises(BackendError, match="vision=1, but it is not a vision-language model"):
        make_backend(f"hf:{text_only}#vision=1")
    with pytest.raises(BackendError, match="smollm2: vision=1, but it is a text-only"):
        make_backend("hf:smollm2#vision=1")  # refused before any weights load
    assert parse_spec("hf:smollm2#vision=yes").options["vision"] is True
