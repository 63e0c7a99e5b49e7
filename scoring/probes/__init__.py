"""Explainability probes, run on request over a sample of cases: fact attribution (Shapley
values and LIME-style weights over the case's facts, aligned with the KB), counterfactual
fairness (attributes that should not matter, flipped) and self-explanation faithfulness.

Probes take agent factories (anything returning an `Agent`), so `scoring` never imports
`agents`; `runs` builds the factories from agent specs.
"""

from clinicgym.scoring.probes.attribution import Attribution, FactAttribution, attribute
from clinicgym.scoring.probes.counterfactual import Counterfactual, Flip, counterfactual
from clinicgym.scoring.probes.masking import default_players, mask_case, masked_patient
from clinicgym.scoring.probes.self_explanation import SelfExplanation, self_explanation
from clinicgym.scoring.probes.suite import AgentProbes, ProbeResults, run_probes

__all__ = [
    "AgentProbes",
    "Attribution",
    "Counterfactual",
    "FactAttribution",
    "Flip",
    "ProbeResults",
    "SelfExplanation",
    "attribute",
    "counterfactual",
    "default_players",
    "mask_case",
    "masked_patient",
    "run_probes",
    "self_explanation",
]
