"""Property-based fuzzing of the action parser and the text env: a model's output, however
malformed, is an error observation and a used turn, never an exception (issue 19's first step).

The CI profile runs 200 examples per property; `HYPOTHESIS_PROFILE=deep` runs 100,000 (the
profiles are in tests/envs/conftest.py)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinicgym.envs.action import MAX_JSON_DEPTH, ActionError, parse_action
from clinicgym.envs.consultation import ConsultationEnv

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=30,
)
TOOLS = st.sampled_from(["ask", "examine", "order_test", "diagnose", "prescribe", "end", "x"])


def _tool_calls() -> st.SearchStrategy[str]:
    """JSON objects shaped like tool calls with arbitrary, often wrong, argument types."""
    obj = st.fixed_dictionaries(
        {"tool": TOOLS},
        optional={
            "question": JSON,
            "system": JSON,
            "test": JSON,
            "diagnoses": JSON,
            "drug": JSON,
            "dose": JSON,
        },
    )
    return obj.map(lambda d: json.dumps(d, allow_nan=True))


@given(st.text(max_size=2000))
def test_any_text_parses_or_is_an_error(raw: str) -> None:
    parse_action(raw)


@given(_tool_calls() | JSON.map(lambda v: json.dumps(v, allow_nan=True)))
def test_any_json_parses_or_is_an_error(raw: str) -> None:
    parse_action(raw)


@given(st.integers(MAX_JSON_DEPTH + 1, 5000), st.sampled_from(["[]", "{}", '{"a":}']))
def test_deep_nesting_is_an_error_not_a_recursion_error(depth: int, pair: str) -> None:
    opening, closing = (pair[0], pair[-1]) if pair != '{"a":}' else ('{"a":', "}")
    got = parse_action(opening * depth + closing * depth)
    assert isinstance(got, ActionError) and "nested deeper" in got.message


def test_the_reported_crash_strings_are_errors() -> None:
    for raw in ("[" * 1000 + "]" * 1000, '{"tool": "diagnose", "diagnoses": [1e999]}'):
        assert isinstance(parse_action(raw), ActionError)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=300) | _tool_calls(), min_size=1, max_size=4))
def test_the_text_env_never_raises_on_model_output(actions: list[str]) -> None:
    env = ConsultationEnv(max_turns=6)
    env.reset(seed=0)
    for raw in actions:
        if not raw.strip():
            raw = "?"
        _, _, terminated, truncated, _ = env.step(raw)
        if terminated or truncated:
            break
