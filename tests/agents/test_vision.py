"""Images to vision models: a result's picture reaches a model that declares vision support
(`#vision=1`) as an image content part, over a real loopback HTTP server, in OpenAI's,
Anthropic's and Gemini's shapes; a text-only spec receives none."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
from fake_openai import FakeOpenAIServer, Reply, clinician_turn

from clinicgym.agents.images import encode_png, image_part, redact_images
from clinicgym.agents.registry import make_agent_factory
from clinicgym.envs.consultation import ConsultationEnv


def _decode(png: bytes) -> np.ndarray:
    """Pixels of PNG bytes by an independent decoder (Pillow)."""
    image = pytest.importorskip("PIL.Image")
    return np.asarray(image.open(io.BytesIO(png)))


def test_png_decodes_to_the_same_pixels():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    rgb = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    assert np.array_equal(_decode(encode_png(grey)), grey)
    assert np.array_equal(_decode(encode_png(rgb)), rgb)
    assert encode_png(grey) == encode_png(grey.copy())  # the same array, the same bytes
    with pytest.raises(ValueError, match="uint8"):
        encode_png(grey.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 3\)"):
        encode_png(np.zeros((4, 4, 2), np.uint8))


def test_transcripts_keep_a_digest_not_the_picture():
    part = image_part(np.full((8, 8), 200, np.uint8))
    message = {"role": "user", "content": [{"type": "text", "text": "x"}, part]}
    kept = redact_images(message)
    assert kept["content"][0] == {"type": "text", "text": "x"}
    assert kept["content"][1]["image_url"]["url"].startswith("sha256:")
    assert "base64" not in json.dumps(kept) and "base64" in json.dumps(message)
    assert redact_images({"role": "user", "content": "text"}) == {"role": "user", "content": "text"}


def _orders_then_diagnoses(body, n):
    """Orders a chest X-ray, then diagnoses once a result is in (any API's request shape)."""
    turns = body.get("messages") or body.get("contents") or []
    if "Result: " not in json.dumps(turns[-1]):
        return Reply("ORDER: chest X-ray")
    return Reply("DIAGNOSIS: Community-acquired pneumonia (60%)")


def _play(factory, env, seed=0):
    async def go():
        obs, info = env.reset(seed=seed)
        agent = factory()
        agent.reset(obs, info)
        shown = []
        try:
            while True:
                out = await agent.act(obs, info)
                obs, _, term, trunc, info = await env.astep(out.action)
                if "image" in info:
                    shown.append(info["image"].copy())
                if term or trunc:
                    return info["episode"], shown
        finally:
            await factory.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    "provider, prefix",
    [
        ("openai", "openai:m@{url}"),
        ("anthropic", "anthropic/m@{root}"),
        ("google", "google/m@{root}"),
    ],
)
def test_the_picture_reaches_a_vision_model_and_not_a_text_only_one(
    small_kb, sampler, provider, prefix
):
    env = ConsultationEnv(sampler, kb=small_kb, max_turns=4, modality="image")
    with FakeOpenAIServer(_orders_then_diagnoses) as srv:
        root = srv.url.removesuffix("/v1")
        spec = prefix.format(url=srv.url, root=root)
        ep, shown = _play(make_agent_factory(spec + "#vision=1", small_kb), env)
        assert ep.turns == 2 and len(shown) == 1 and shown[0].any()
        assert srv.images(0) == []  # the opening has no picture
        [(media, png)] = srv.images(1)
        assert media == "image/png"
        assert np.array_equal(_decode(png), shown[0])  # the env's pixels, exactly
        n = len(srv.requests)
        ep, shown = _play(make_agent_factory(spec, small_kb), env)  # text-only: no vision
        assert len(shown) == 1 and srv.requests[n + 1]
        assert srv.images(n) == [] and srv.images(n + 1) == []
        assert "Image attached." in json.dumps(srv.requests[n + 1])
    # the transcript records which picture was sent, never its base64
    added = json.dumps([e.meta for e in ep.events])
    assert "base64" not in added


def test_tool_mode_sends_the_picture_after_the_tool_result(small_kb, sampler):
    def script(body, n):
        if clinician_turn(body.get("messages", [])) == 0:
            return Reply(tool=("order_test", {"test": "chest X-ray"}))
        return Reply(tool=("diagnose", {"diagnoses": [{"name": "Asthma", "confidence": 0.5}]}))

    env = ConsultationEnv(sampler, kb=small_kb, max_turns=4, modality="both")
    with FakeOpenAIServer(script) as srv:
        ep, shown = _play(make_agent_factory(f"openai:m@{srv.url}#vision=1,tools=1", small_kb), env)
        second = srv.requests[1]["messages"]
        assert [m["role"] for m in second[-3:]] == ["assistant", "tool", "user"]
        assert isinstance(second[-2]["content"], str)  # OpenAI tool messages carry text only
        [(_, png)] = srv.images(1)
        assert np.array_equal(_decode(png), shown[0])
    assert ep.turns == 2


def test_text_modality_sends_no_picture_even_to_a_vision_model(small_kb, sampler):
    env = ConsultationEnv(sampler, kb=small_kb, max_turns=4, modality="text")
    with FakeOpenAIServer(_orders_then_diagnoses) as srv:
        _, shown = _play(make_agent_factory(f"openai:m@{srv.url}#vision=1", small_kb), env)
        assert shown == [] and all(srv.images(i) == [] for i in range(len(srv.requests)))


def test_vision_is_a_setting_of_the_http_and_hf_backends_only(small_kb):
    from clinicgym.agents.errors import AgentSpecError

    f = make_agent_factory("openai:m@http://127.0.0.1:1/v1#vision=yes", small_kb)
    assert f().vision is True
    assert make_agent_factory("openai:m@http://127.0.0.1:1/v1", small_kb)().vision is False
    with pytest.raises(AgentSpecError, match="unknown setting 'vision=1'"):
        make_agent_factory("langchain:mod:fn#vision=1", small_kb)
