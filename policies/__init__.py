"""Policy monitors: versioned, regulation-mapped packs of rules checked at every step.

Packs are data (`policies/packs/<id>/<version>.yaml`); checks are registered factories
(`@check("name")`); `PolicyMonitor` runs them on every event as an episode streams; scenarios
put policy under stress; `rescore` re-judges stored transcripts under any pack version.
"""

from clinicgym.policies.check import BaseCheck, CheckArgs, Finding, Judge, check, registered_checks
from clinicgym.policies.errors import (
    PackError,
    PackNotFoundError,
    PolicyError,
    ReplayError,
    ScenarioError,
)
from clinicgym.policies.library import available, load, load_packs, resolve
from clinicgym.policies.monitor import PolicyMonitor, apply_settled, build_monitor, require_judge
from clinicgym.policies.pack import PolicyPack, Rule, load_pack
from clinicgym.policies.scenario import (
    SUITE,
    known_scenarios,
    make_scenario,
    make_scenarios,
    played_case,
    validate_specs,
)
from clinicgym.policies.setup import PolicySetup

__all__ = [
    "SUITE",
    "BaseCheck",
    "CheckArgs",
    "Finding",
    "Judge",
    "PackError",
    "PackNotFoundError",
    "PolicyError",
    "PolicyMonitor",
    "PolicyPack",
    "PolicySetup",
    "ReplayError",
    "Rule",
    "ScenarioError",
    "apply_settled",
    "available",
    "build_monitor",
    "check",
    "known_scenarios",
    "load",
    "load_pack",
    "load_packs",
    "make_scenario",
    "make_scenarios",
    "played_case",
    "registered_checks",
    "require_judge",
    "resolve",
    "validate_specs",
]
