"""The transformers backend on a tiny local model: batching across concurrent episodes and the
prefix cache give the same text as plain `generate`; real SmolLM2 in an integration test."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_model import build_tiny_chat_model

from clinicgym.agents.backends import hf
from clinicgym.agents.backends.hf import HFBackend, PrefixCache, load_model, smollm2_gguf
from clinicgym.agents.errors import BackendError
from clinicgym.runs.runner import execute, finalise, prepare
from clinicgym.runs.spec import RunSpec
from clinicgym.runs.store import RunStore

SMALL_KB = Path(__file__).parents[2] / "data" / "kb_small"
OPENINGS = [
    "I have had a cough for three days.",
    "My head hurts.",
    "It burns when I wee.",
    "I feel hot and tired.",
    "No, nothing like that.",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny") / "model")


def _reference(backend, messages, max_new_tokens):
    """What plain, unbatched, uncached greedy `generate` says."""
    tok = backend.tokenizer
    ids = torch.tensor([backend.encode(messages, None)])
    with torch.inference_mode():
        out = backend.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=backend.eos,
            pad_token_id=tok.pad_token_id,
        )
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def test_batched_prefix_cached_replies_equal_plain_generate(tiny):
    model, tok, _ = load_model(str(tiny), dtype="float32")
    backend = HFBackend(model, tok, "hf:tiny", max_new_tokens=12, wait_s=0.05)
    system = {
        "role": "system",
        "content": "You are the doctor. Reply with exactly one line each turn.",
    }
    convs = [[system, {"role": "user", "content": o}] for o in OPENINGS]

    async def turn():
        return await asyncio.gather(*(backend.chat(c) for c in convs))

    first = asyncio.run(turn())
    assert backend.queue.batch_sizes == [5]  # one generate call for five episodes
    for c, r in zip(convs, first, strict=True):
        assert r.text == _reference(backend, c, 12) and r.completion_tokens >= 1
        c += [
            {"role": "assistant", "content": r.text},
            {"role": "user", "content": "Yes, since Monday."},
        ]
    computed = backend.prompt_tokens_computed
    second = asyncio.run(turn())
    for c, r in zip(convs, second, strict=True):
        assert r.text == _reference(backend, c, 12)
        assert 0 < r.cached_tokens < r.prompt_tokens  # only the new turn was computed
    new = backend.prompt_tokens_computed - computed
    assert new < sum(r.prompt_tokens for r in second) / 3
    # the system prompt, shared by every episode, was computed once in the first batch
    assert min(r.cached_tokens for r in first[1:]) > 0


def test_prefix_cache_evicts_by_bytes_and_replaces_what_a_conversation_extends():
    kv = lambda n: [(torch.zeros(1, 1, n, 4), torch.zeros(1, 1, n, 4))]  # noqa: E731
    cache = PrefixCache(max_bytes=2 * 2 * 10 * 4 * 4)  # room for 20 tokens
    a = cache.store(np.arange(6), kv(6))
    n, got, key = cache.lookup(np.array([0, 1, 2, 9]), limit=3)
    assert (n, key) == (3, a) and got[0][0].shape[2] == 3
    b = cache.store(np.arange(8), kv(8), replaces=a)  # extends a: a goes
    assert len(cache) == 1 and cache.lookup(np.arange(8), 8)[2] == b
    cache.store(np.arange(100, 112), kv(12))
    cache.store(np.arange(200, 205), kv(5))  # over budget: the oldest (b) is evicted
    assert cache.lookup(np.arange(8), 8) == (0, None, -1) and cache.bytes <= cache.max_bytes


def test_hf_spec_runs_episodes_batched_with_usage_recorded(tiny, tmp_path):
    spec = RunSpec(
        agents=[f"hf:{tiny}#batch=4,max_tokens=6,dtype=float32"],
        cases=4,
        seed=1,
        max_turns=3,
        kb_dir=str(SMALL_KB),
        out=tmp_path / "run",
        concurrency=4,
    )
    ctx = prepare(spec)
    (factory,) = ctx.factories.values()
    store = RunStore.open(spec, ctx.cases, ctx.kb.version)
    asyncio.run(execute(ctx, store))
    store.close()
    (agent,) = finalise(ctx, store)["agents"].values()
    assert agent["completed"] + agent["errors"] == 4 and agent["errors"] == 0
    assert agent["usage"]["requests"] == 12 and agent["usage"]["completion_tokens"] <= 12 * 6
    assert max(factory.backend.queue.batch_sizes) > 1


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match="cannot load the model offline"):
        load_model(str(tmp_path / "nope"))


@pytest.mark.integration
def test_smollm2_loads_from_its_wheel_and_answers():
    assert smollm2_gguf().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    backend = HFBackend.load("smollm2", max_new_tokens=8)
    reply = asyncio.run(
        backend.chat([{"role": "user", "content": "What is the capital of France?"}])
    )
    assert "Paris" in reply.text and reply.completion_tokens <= 8


def test_a_failing_model_is_a_backend_error(tiny):
    model, tok, _ = load_model(str(tiny), dtype="float32")
    backend = HFBackend(model, tok, "hf:tiny", max_new_tokens=4)

    def broken(**kwargs):
        raise RuntimeError("out of memory")

    model.generate = broken
    with pytest.raises(
        BackendError, match=r"hf:tiny: generation failed \(RuntimeError: out of memory\)"
    ):
        asyncio.run(backend.chat([{"role": "user", "content": "Any fever?"}]))


def test_stop_strings_end_a_reply_where_plain_generate_would_be_cut(tiny):
    model, tok, _ = load_model(str(tiny), dtype="float32")
    backend = HFBackend(model, tok, "hf:tiny", max_new_tokens=16)
    msgs = [{"role": "user", "content": "Do you have a fever?"}]
    full = _reference(backend, msgs, 16)
    assert "\n" in full  # this random model starts with line breaks
    reply = asyncio.run(backend.chat(msgs, stop=["\n"]))
    assert reply.text == full.split("\n")[0] and reply.finish_reason == "stop"
    assert reply.completion_tokens < 16
    # the next turn reuses the cache of the stopped reply and still matches plain generate
    msgs += [{"role": "assistant", "content": reply.text}, {"role": "user", "content": "Yes."}]
    again = asyncio.run(backend.chat(msgs))
    assert again.cached_tokens > 0 and again.text == _reference(backend, msgs, 16)


def test_generation_runs_on_the_backend_thread_count_in_its_worker(tiny):
    model, tok, _ = load_model(str(tiny), dtype="float32")
    want = 1 if torch.get_num_threads() > 1 else 2  # differs from the process default
    backend = HFBackend(model, tok, "hf:tiny", max_new_tokens=4, threads=want)
    seen = []
    generate = model.generate

    def spy(**kwargs):
        seen.append(torch.get_num_threads())  # in the batch worker thread
        return generate(**kwargs)

    model.generate = spy
    asyncio.run(backend.chat([{"role": "user", "content": "Any fever?"}]))
    assert seen == [want]
    with pytest.raises(ValueError, match="threads must be >= 1"):
        HFBackend(model, tok, "hf:tiny", threads=0)


def test_one_thread_unless_idle_openmp_threads_sleep(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert hf.default_threads() == 1
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert hf.default_threads() == max(1, min(os.cpu_count() or 1, torch.get_num_threads()))


def test_gguf_cache_is_keyed_by_the_files_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINICGYM_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF one")
    first = hf.gguf_cache_dir(f)
    assert first.parent == tmp_path / "cache" / "gguf" and first.name.startswith("m-")
    assert hf.gguf_cache_dir(f) == first
    f.write_bytes(b"GGUF two")
    assert hf.gguf_cache_dir(f) != first


def test_a_converted_copy_loads_and_answers_as_the_original(tiny, tmp_path):
    model, tok, _ = load_model(str(tiny), dtype="float32")
    msgs = [{"role": "user", "content": "Do you have a fever?"}]
    want = _reference(HFBackend(model, tok, "hf:tiny"), msgs, 12)
    dest = tmp_path / "copy"
    assert not hf._complete(dest)
    hf._save_converted(model, tok, dest)
    assert hf._complete(dest) and tok.padding_side == "left"  # the caller's tokenizer unchanged
    assert not list(tmp_path.glob("copy.tmp*"))
    again, tok2, _ = load_model(str(dest), dtype="float32")
    assert _reference(HFBackend(again, tok2, "hf:copy"), msgs, 12) == want


@pytest.mark.integration
def test_smollm2_is_dequantized_once_then_loaded_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINICGYM_CACHE", str(tmp_path))
    loads = []
    real = hf._from_pretrained

    def spy(name, where, kwargs):
        loads.append("gguf_file" in kwargs)
        return real(name, where, kwargs)

    monkeypatch.setattr(hf, "_from_pretrained", spy)
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    replies = []
    for _ in range(2):
        model, tok, _label = load_model("smollm2")
        replies.append(_reference(HFBackend(model, tok, "hf:smollm2"), msgs, 8))
    assert loads == [True, False]  # the second load read the converted copy
    assert hf._complete(hf.gguf_cache_dir(smollm2_gguf()))
    assert replies[0] == replies[1] and "Paris" in replies[0]
