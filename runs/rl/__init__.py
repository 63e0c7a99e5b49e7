"""RL on clinicgym: baselines and probes for the structured env, evaluation, pinned suites, and
the LLM adapters (a TRL GRPO rollout function, OpenEnv- and verifiers-shaped text envs).

The trainer libraries (stable-baselines3, trl) are the optional extra `rl`; modules that need
them import them inside functions and name the extra when it is missing.
"""
