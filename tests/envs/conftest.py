"""Hypothesis profiles for the fuzz tests of the action parser and both envs (issue 19).

`ci` (the default) runs 200 generated examples per property, a few seconds in all;
`HYPOTHESIS_PROFILE=deep` runs 100,000 per property: 100,000 generated actions per env (each
example of the env properties is one action). Run the deep profile with `-s` to see the counts:
    HYPOTHESIS_PROFILE=deep .venv/bin/pytest -s tests/envs/test_action_fuzz.py \
        tests/envs/test_env_fuzz.py
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=_SLOW_OK, print_blob=True
)
settings.register_profile(
    "deep", max_examples=100_000, deadline=None, suppress_health_check=_SLOW_OK, print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
