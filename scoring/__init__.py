"""Scoring: diagnosis matching, per-episode metrics, and aggregates with bootstrap intervals."""

from clinicgym.scoring.diagnosis import matches, normalise, rank_of
from clinicgym.scoring.metric_registry import METRICS
from clinicgym.scoring.metrics import episode_metrics, episode_reward
from clinicgym.scoring.stats import mean_ci

__all__ = [
    "METRICS",
    "episode_metrics",
    "episode_reward",
    "matches",
    "mean_ci",
    "normalise",
    "rank_of",
]
