"""Property-based fuzzing of both envs (issue 19): whatever a model or a policy sends, a step is
an observation (an error observation for anything unusable) and a turn used, never an exception.

Each example is one action on a long-lived env (reset when an episode ends), so the profile's
`max_examples` is the number of generated actions per env: 200 in the `ci` profile, 100,000 with
`HYPOTHESIS_PROFILE=deep` (tests/envs/conftest.py). With `-s` the counts are printed at the end.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from clinicgym.envs.action import ActionError
from clinicgym.envs.consultation import ConsultationEnv
from clinicgym.envs.structured import StructuredConsultationEnv

COUNTS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    sys.__stderr__.write(
        f"\n[fuzz] generated actions stepped without an exception: text env "
        f"{COUNTS['text']:,} ({COUNTS['text_error']:,} error observations), structured env "
        f"{COUNTS['structured']:,} ({COUNTS['structured_error']:,} error observations), "
        f"structured env in record mode {COUNTS['record']:,}\n"
    )


# ---- what a model may send the text env ----------------------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # lone surrogates included (JSON "\ud800")
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(ANY_CHAR, max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=30,
)
TOOLS = st.sampled_from(
    ["ask", "examine", "order_test", "diagnose", "prescribe", "disclose", "refer", "end", "x"]
)
TOOL_CALL = st.fixed_dictionaries(
    {"tool": TOOLS},
    optional={
        k: JSON
        for k in ("question", "system", "test", "diagnoses", "drug", "dose", "to", "urgency")
    },
)
OPENAI_CALL = st.builds(
    lambda name, args, raw: {
        "id": "call_0",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args) if raw else args},
    },
    TOOLS,
    JSON,
    st.booleans(),
)


def _nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return '{"tool": "diagnose", "diagnoses": ' + "[" * depth + "]" * depth + "}"


def _deep_dict(depth: int) -> dict:
    d: dict = {"tool": "ask", "question": "x"}
    for _ in range(depth):
        d = {"tool": "diagnose", "diagnoses": [d]}
    return d


class _Hostile:
    """An object whose str() raises (its repr works, so Hypothesis can report it)."""

    def __str__(self) -> str:
        raise RuntimeError("a __str__ that raises")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("a __format__ that raises")

    def __repr__(self) -> str:
        return "<hostile>"


class _Unprintable(_Hostile):
    def __repr__(self) -> str:
        raise RuntimeError("a __repr__ that raises")


TEXT_ACTIONS = st.one_of(
    st.text(max_size=300),
    st.text(ANY_CHAR, max_size=300),
    st.builds(
        lambda p, t: p + t,
        st.sampled_from(
            [
                "DIAGNOSIS: ",
                "EXAMINE: ",
                "ORDER: ",
                "PRESCRIBE: ",
                "DISCLOSE: ",
                "REFER: ",
                "END ",
                "[",
                "{",
            ]
        ),
        st.text(ANY_CHAR, max_size=80),
    ),
    JSON.map(lambda v: json.dumps(v, allow_nan=True)),
    TOOL_CALL.map(lambda d: json.dumps(d, allow_nan=True)),
    TOOL_CALL,
    OPENAI_CALL,
    st.dictionaries(st.text(ANY_CHAR, max_size=8), JSON, max_size=5),
    st.builds(_nested, st.integers(1, 100_000), st.sampled_from(["list", "object", "dx"])),
    st.integers(1, 5_000).map(_deep_dict),
    st.builds(
        lambda n, c: c * n, st.integers(2_000, 200_000), st.sampled_from(["a", "é", "[", "{ "])
    ),
    st.none() | st.integers() | st.floats() | st.binary(max_size=50) | st.booleans(),
    st.lists(JSON, max_size=3) | st.tuples(st.text(max_size=5)),
    st.just(_Hostile()),
    st.sampled_from(
        [{"tool": _Hostile()}, {"tool": "ask", "question": _Hostile()}, {_Hostile(): "ask"}]
    ),
    st.builds(lambda m: ActionError(message=m, raw=""), st.text(max_size=50)),
)


@pytest.fixture(scope="module")
def text_env():
    env = ConsultationEnv(max_turns=40)
    env.reset(seed=0)
    return env


@given(action=TEXT_ACTIONS)
def test_the_text_env_turns_any_action_into_an_observation(text_env, action):
    env = text_env
    turn = env._turn
    obs, reward, terminated, truncated, info = env.step(action)
    COUNTS["text"] += 1
    COUNTS["text_error"] += info["error"] is not None
    assert info["turn"] == turn + 1  # a turn used, whatever was sent
    assert env.observation_space.contains(obs), obs
    assert np.isfinite(float(reward))
    if not isinstance(action, str | dict):
        assert info["error"] is not None and obs["error"] == 1
    if terminated or truncated:
        assert info["episode"].turns == turn + 1
        env.reset(seed=COUNTS["text"])


# ---- what a policy may send the structured env ---------------------------------------------

NUMPY_SCALARS = hnp.arrays(hnp.scalar_dtypes(), shape=()).map(lambda a: a[()])
NUMPY_ARRAYS = hnp.arrays(
    hnp.scalar_dtypes(), shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)
)
IN_RANGE = st.integers(-2, 42)  # the small KB has 40 actions: mostly valid, edges included
STRUCTURED_ACTIONS = st.one_of(
    IN_RANGE,
    IN_RANGE.map(np.int64) | st.integers(0, 42).map(np.uint16) | IN_RANGE.map(np.array),
    IN_RANGE.map(float) | IN_RANGE.map(np.float32),  # 3.0 is not an action id either
    st.integers(),
    st.integers(2**62, 2**70) | st.integers(max_value=-(2**62)),
    st.integers(2, 5).map(lambda k: 10 ** (10**k)),  # far beyond int64 and str() limits
    st.floats(),  # NaN, infinities, 1.9, -0.5, 3.0
    st.booleans(),
    st.none(),
    st.text(max_size=10) | st.binary(max_size=10),
    st.integers(0, 400).map(str) | st.integers(0, 400).map(lambda i: str(i).encode()),
    st.complex_numbers() | st.decimals() | st.fractions(),
    st.sampled_from([Decimal(3), Fraction(3, 1), 3 + 0j, np.bool_(True)]),
    NUMPY_SCALARS,
    NUMPY_ARRAYS,
    st.lists(st.integers(0, 5), max_size=3) | st.tuples(st.integers(0, 5)),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(_Hostile()),
)


def _is_action_id(value: object) -> bool:
    """The env's contract: a Python int (not a bool), a NumPy integer scalar or a 0-d NumPy
    integer array (integer dtype kinds only: timedelta64 subclasses np.signedinteger)."""
    if isinstance(value, np.ndarray | np.generic):
        return value.shape == () and value.dtype.kind in "iu"
    return isinstance(value, int) and not isinstance(value, bool)


def _valid(env: StructuredConsultationEnv, action: object) -> bool:
    return _is_action_id(action) and 0 <= int(action) < env.action_space.n  # type: ignore[call-overload]


def _check_structured(env: StructuredConsultationEnv, action: object, key: str) -> None:
    turn, events = env._turn, len(env.events)
    before = env._obs.copy()
    obs, reward, terminated, truncated, info = env.step(action)
    COUNTS[key] += 1
    COUNTS[f"{key}_error"] += "error" in info
    assert info["turn"] == turn + 1  # a turn used, whatever was sent
    assert env.observation_space.contains(obs)
    assert np.isfinite(float(reward))
    valid = _valid(env, action)
    if valid:
        assert "error" not in info
        assert info["action"] == env.action_names()[int(action)]  # type: ignore[call-overload]
    else:
        assert info["error"] and info["action"] is None
        changed = np.flatnonzero(obs != before)  # nothing learned but the turn
        assert set(changed.tolist()) <= {env.cat.o_turn}
    if isinstance(action, float | np.floating | str | bytes | bool | np.bool_ | None):
        assert not valid
    if env.record:  # the transcript holds the turn, as an error turn when it was unusable
        errors = [e.error for e in env.events[events:] if e.actor == "clinician"]
        assert len(errors) == 1 and bool(errors[0]) == (not valid)
    if terminated or truncated:
        env.reset(seed=COUNTS[key])


@pytest.fixture(scope="module")
def structured_env(sampler):
    env = StructuredConsultationEnv(sampler, n_cases=50, max_turns=40)
    env.reset(seed=0)
    return env


@given(action=STRUCTURED_ACTIONS)
def test_the_structured_env_accepts_only_action_ids(structured_env, action):
    _check_structured(structured_env, action, "structured")


@pytest.fixture(scope="module")
def record_env(sampler):
    env = StructuredConsultationEnv(sampler, n_cases=50, max_turns=40, record=True)
    env.reset(seed=0)
    return env


@settings(max_examples=min(settings().max_examples, 2_000))  # the real patient: slower
@given(action=STRUCTURED_ACTIONS)
def test_the_structured_env_in_record_mode_transcribes_a_bad_action_as_an_error_turn(
    record_env, action
):
    _check_structured(record_env, action, "record")


def test_objects_whose_str_and_repr_raise_are_error_observations(sampler):
    text = ConsultationEnv(max_turns=5)
    text.reset(seed=0)
    structured = StructuredConsultationEnv(sampler, n_cases=5)
    structured.reset(seed=0)
    for bad in (_Unprintable(), {"tool": _Unprintable()}, [_Unprintable()]):
        assert text.step(bad)[4]["error"]
        assert structured.step(bad)[4]["error"]


@pytest.mark.parametrize(
    "action",
    [
        float("inf"),
        float("nan"),
        1.9,
        -0.5,
        3.0,
        "5",
        b"1",
        True,
        None,
        10**30,
        -1,
        np.float64(3),
        np.array([3]),
        np.array(3.0),
    ],
    ids=repr,
)
def test_the_reported_structured_actions_are_error_observations(sampler, action):
    env = StructuredConsultationEnv(sampler, n_cases=5)
    env.reset(seed=0)
    _obs, _r, _t, _tr, info = env.step(action)
    assert info["turn"] == 1 and info["action"] is None
    assert "not an action id" in info["error"] or "outside 0.." in info["error"]


@pytest.mark.parametrize("action", [3, np.int64(3), np.uint8(3), np.array(3)], ids=repr)
def test_integer_action_ids_are_accepted(sampler, action):
    env = StructuredConsultationEnv(sampler, n_cases=5)
    env.reset(seed=0)
    _obs, _r, _t, _tr, info = env.step(action)
    assert "error" not in info and info["action"] == env.action_names()[3]
