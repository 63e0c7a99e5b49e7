"""`clinicgym rl grpo`: TRL's `GRPOTrainer` on consultations played through `ClinicToolEnv` tools.

`train_grpo` builds (or loads) the model, the dataset of consultations (generated cases, or a
suite: a pinned directory from `clinicgym rl pin-suite` or a registered `name@version`), and the
trainer with `environment_factory=ClinicToolEnv.factory(...)`; the env's `get_reward` is the
reward, the metrics of `trl_env.METRICS` are logged beside it at weight 0. Each logged step goes
to `progress` and into `reward_curve.json` (and `reward_curve.png`) in the output directory.

Without `model`, a tiny random-weight Llama with a locally trained tokenizer is built and warm
started on the scripted baseline's tool calls (runs/rl/tiny.py): a CPU smoke run of the whole
loop, nothing downloaded. Every argument is checked before anything expensive starts.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clinicgym.runs.rl.errors import RLError, require

CURVE_JSON = "reward_curve.json"
CURVE_PNG = "reward_curve.png"
SUMMARY_JSON = "summary.json"
WARM_CHATS = 32
EVAL_SEEDS = 1_000_000
"""Where evaluation's episode seeds start (plus the run's seed), far from training's."""
"""Scripted consultations (episode seeds from 10,000, apart from training's) the tiny model
imitates before GRPO."""


@dataclass
class GRPORun:
    """The settings of one `clinicgym rl grpo` run (the CLI's options)."""

    out: Path
    model: str | None = None
    """A local model directory (or a cached hub id; the machine may be offline); None: tiny."""
    steps: int = 3
    seed: int = 0
    cases: int = 8
    """Distinct consultations in the dataset (episode seeds seed..seed+cases-1)."""
    suite: str | None = None
    """A pinned suite directory or a registered suite `name@version`; None: generated cases."""
    generations: int = 4
    max_turns: int = 5
    max_completion_length: int = 768
    learning_rate: float | None = None
    """None: 5e-5 for the tiny model, 1e-6 for a real one."""
    temperature: float | None = None
    """None: 0.7 for the tiny model (its tool calls are fragile), 1.0 for a real one."""
    warm_steps: int = 600
    """Supervised warm-start steps (tiny model only)."""
    policy_packs: list[str] = field(default_factory=list)
    violation_penalty: float = 0.0
    """Subtracted per monitor violation (RewardSpec.violation_penalty for every severity)."""
    threads: int = 1
    save_model: bool = True
    groups: int = 1
    """Cases per step (each played `generations` times)."""
    grad_accum: int = 1
    vllm: bool = False
    """Generate with vLLM colocated with training (needs a GPU and the vllm package)."""
    eval_cases: int = 0
    """Consultations (episode seeds from `EVAL_SEEDS`) scored before and after training."""

    def check(self) -> None:
        """Refuse settings that cannot work, before any model or case is built."""
        if self.steps < 1:
            raise RLError(f"--steps must be >= 1, got {self.steps}")
        if self.cases < 1:
            raise RLError(f"--cases must be >= 1, got {self.cases}")
        if self.generations < 2:
            raise RLError(
                f"--generations must be >= 2 (GRPO compares completions of a group), "
                f"got {self.generations}"
            )
        if self.max_turns < 1:
            raise RLError(f"--max-turns must be >= 1, got {self.max_turns}")
        if self.max_completion_length < 16:
            raise RLError(
                f"--max-completion-length must be >= 16, got {self.max_completion_length}"
            )
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise RLError(f"--lr must be > 0, got {self.learning_rate}")
        if self.temperature is not None and not self.temperature > 0:
            raise RLError(f"--temperature must be > 0, got {self.temperature}")
        if self.warm_steps < 0:
            raise RLError(f"--warm-steps must be >= 0, got {self.warm_steps}")
        if self.violation_penalty < 0:
            raise RLError(f"--violation-penalty must be >= 0, got {self.violation_penalty}")
        if self.threads < 1:
            raise RLError(f"--threads must be >= 1, got {self.threads}")
        if self.eval_cases < 0:
            raise RLError(f"--eval-cases must be >= 0, got {self.eval_cases}")
        if self.groups < 1 or self.grad_accum < 1:
            raise RLError(
                f"--groups and --grad-accum must be >= 1, got {self.groups}, {self.grad_accum}"
            )
        if self.vllm:
            if self.tiny:
                raise RLError("--vllm needs --model: the tiny model is for CPU smoke runs")
            require("vllm", "clinicgym rl grpo --vllm")
        if self.model is not None:
            path = Path(self.model)
            looks_local = path.exists() or self.model.startswith((".", "/", "~"))
            if looks_local and not (path / "config.json").is_file():
                raise RLError(f"--model {self.model}: no config.json there (not a model directory)")
        if self.out.exists() and not self.out.is_dir():
            raise RLError(f"--out {self.out} exists and is not a directory")
        for name in ("trl", "torch", "transformers", "datasets", "matplotlib"):
            require(name, "clinicgym rl grpo")

    @property
    def tiny(self) -> bool:
        """Whether the run builds the tiny local model."""
        return self.model is None


def offline() -> None:
    """Keep the hub and TRL's experimental warnings quiet: nothing may be downloaded."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def session_settings(run: GRPORun) -> dict[str, Any]:
    """`ClinicSession` keyword arguments: cases, turn budget, packs, reward."""
    from clinicgym.scoring.reward import RewardSpec

    penalty = (
        dict.fromkeys(("low", "medium", "high", "critical"), run.violation_penalty)
        if run.violation_penalty
        else {}
    )
    kw: dict[str, Any] = {
        "max_turns": run.max_turns,
        "policy_packs": list(run.policy_packs),
        "reward": RewardSpec(violation_penalty=penalty),
    }
    if run.suite:
        kw["cases"] = suite_cases(run.suite)
    return kw


def suite_cases(suite: str) -> list[Any]:
    """The cases of a suite: a `clinicgym rl pin-suite` directory, a registered `name@version`,
    or a directory written by `clinicgym suite export`."""
    from clinicgym.runs.rl.suite import MANIFEST_FILE

    path = Path(suite)
    if (path / MANIFEST_FILE).is_file():
        from clinicgym.runs.rl.suite import load_suite

        cases, _ = load_suite(path)
        return list(cases)
    from clinicgym.runs.integrations.consultation import case_list

    cases, _ = case_list(suite=suite)
    return list(cases)


def dataset_rows(run: GRPORun, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per consultation; with a suite, row i plays case i (cycling)."""
    from clinicgym.runs.rl.trl_env import tool_dataset

    return tool_dataset(run.cases, seed=run.seed, **settings)


def _eval_rows(run: GRPORun, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The other consultations scored before and after training (episode seeds from
    `EVAL_SEEDS`, apart from training's); none without `eval_cases`."""
    from clinicgym.runs.rl.trl_env import tool_dataset

    if not run.eval_cases:
        return []
    return tool_dataset(run.eval_cases, EVAL_SEEDS + run.seed, **settings)


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


CURVE_KEYS = {
    "reward": "reward",
    "reward_std": "reward_std",
    "env_reward": "rewards/ClinicToolEnv/mean",
    "accuracy": "rewards/diagnostic_accuracy/mean",
    "violations": "rewards/violations/mean",
    "turns": "rewards/turns/mean",
    "env_tool_calls": "rewards/tool_calls/mean",
    "tool_call_frequency": "tools/call_frequency",
    "tool_failure_frequency": "tools/failure_frequency",
    "loss": "loss",
    "completion_length": "completions/mean_length",
}
"""Curve column -> TRL's log key."""


def curve_row(log: dict[str, Any], step: int) -> dict[str, Any]:
    """One step of the reward curve from a TRL log record."""
    row: dict[str, Any] = {"step": step}
    for col, key in CURVE_KEYS.items():
        row[col] = _finite(log.get(key))
    return row


def played(trainer: Any) -> list[dict[str, Any]]:
    """The consultations of the step just logged: episode seed, case, reward, per rollout (TRL
    keeps the batch's envs on the trainer), so passes over the same case can be compared."""
    out = []
    for env in getattr(trainer, "environments", None) or []:
        session = getattr(env, "session", None)
        if session is None or session.case is None:
            continue
        out.append(
            {"seed": session.seed, "case": session.case.id, "reward": round(session.total, 4)}
        )
    return out


def rolling(values: Sequence[float], window: int) -> list[float]:
    """The mean of each value and up to `window - 1` before it (NaNs skipped)."""
    out = []
    for i in range(len(values)):
        part = [v for v in values[max(0, i - window + 1) : i + 1] if not math.isnan(v)]
        out.append(sum(part) / len(part) if part else float("nan"))
    return out


def plot_curve(rows: Sequence[dict[str, Any]], path: Path, title: str, window: int = 1) -> None:
    """Mean reward per step with its within-group spread, its mean over the last `window`
    steps (one pass over the cases, so case-to-case differences average out), and accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    steps = [r["step"] for r in rows]
    mean = [r["reward"] if r["reward"] is not None else float("nan") for r in rows]
    std = [r["reward_std"] or 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, mean, marker="o", label="mean reward")
    low = [m - s for m, s in zip(mean, std, strict=True)]
    high = [m + s for m, s in zip(mean, std, strict=True)]
    ax.fill_between(steps, low, high, alpha=0.2)
    if window > 1:
        ax.plot(steps, rolling(mean, window), "-", lw=2, label=f"mean of the last {window} steps")
    acc = [r["accuracy"] for r in rows]
    if any(a is not None for a in acc):
        ax.plot(steps, [a if a is not None else float("nan") for a in acc], "--", label="accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("reward")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as e:
        raise RLError(
            f"cannot load --model {model}'s tokenizer from local files ({e}); the hub is "
            "offline here: pass a directory with config.json and the tokenizer"
        ) from None


def _checked_tokenizer(run: GRPORun) -> Any:
    """A real model's tokenizer, its chat template checked before any case or weight is loaded
    (None for the tiny model: its tokenizer is built with it)."""
    if run.tiny:
        return None
    tok = _tokenizer(str(run.model))
    check_tool_template(tok)
    return tok


def _load(
    run: GRPORun, settings: dict[str, Any], say: Callable[[str], None], tok: Any = None
) -> tuple[Any, Any]:
    """The model and tokenizer: tiny (built, warm started) or loaded from `run.model`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if run.tiny:
        from clinicgym.runs.rl import tiny

        say("playing the scripted baseline's consultations for the tiny model's warm start")
        chats = tiny.scripted_tool_chats(WARM_CHATS, 10_000, **settings)
        where = tiny.build_tiny_tool_model(run.out / "tiny-model", chats)
        tok = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where)
        if run.warm_steps:
            t0 = time.perf_counter()
            say(f"warm start: {run.warm_steps} supervised steps on {len(chats)} scripted chats")
            loss = tiny.warm_start(model, tok, chats, run.warm_steps)
            say(f"warm start done: loss {loss:.3f} ({time.perf_counter() - t0:.0f} s)")
        return model, tok
    say(f"loading {run.model}")
    tok = tok if tok is not None else _tokenizer(str(run.model))
    try:
        model = AutoModelForCausalLM.from_pretrained(run.model)
    except (OSError, ValueError) as e:
        raise RLError(
            f"cannot load --model {run.model} from local files ({e}); the hub is offline here: "
            "pass a directory with config.json and the tokenizer"
        ) from None
    return model, tok


def check_tool_template(tokenizer: Any) -> None:
    """Refuse a tokenizer whose chat template cannot carry tool calls TRL can parse back."""
    from trl.chat_template_utils import add_response_schema, supports_tool_calling

    if not supports_tool_calling(tokenizer):
        raise RLError(
            "the model's chat template cannot render tool calls and tool replies; use an "
            "instruct model trained for tool calling (e.g. a Qwen2.5/Qwen3 instruct model)"
        )
    has = getattr(tokenizer, "response_template", None) or getattr(
        tokenizer, "response_schema", None
    )
    if not has:
        try:
            add_response_schema(tokenizer)
        except ValueError as e:
            raise RLError(f"TRL cannot parse this model's tool calls: {e}") from None


def train_grpo(run: GRPORun, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Train; returns the summary also written to `out/summary.json`."""
    run.check()
    offline()
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # loading bars would interleave with the progress lines
    torch.set_num_threads(run.threads)
    torch.manual_seed(run.seed)
    run.out.mkdir(parents=True, exist_ok=True)
    tok = _checked_tokenizer(run)
    settings = session_settings(run)
    say(f"building {run.cases} consultations (episode seeds {run.seed}..)")
    rows = dataset_rows(run, settings)
    eval_rows = _eval_rows(run, settings)
    model, tok = _load(run, settings, say, tok)
    check_tool_template(tok)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    lr = run.learning_rate if run.learning_rate is not None else (5e-5 if run.tiny else 1e-6)
    temperature = run.temperature if run.temperature is not None else (0.7 if run.tiny else 1.0)
    cuda = torch.cuda.is_available()
    if run.vllm and not cuda:
        raise RLError("--vllm needs a CUDA GPU; none is visible to torch")
    with warnings.catch_warnings():  # transformers' deprecation notes about TRL's own defaults
        warnings.simplefilter("ignore", FutureWarning)
        config = _config(run, lr, temperature, cuda)
    curve: list[dict[str, Any]] = []
    started = time.perf_counter()
    progress = _progress_callback(run, curve, started, say)
    trainer = _trainer(model, tok, config, rows, eval_rows, settings, progress)
    say(
        f"training: {run.steps} GRPO steps, {run.groups} case(s) x {run.generations} "
        f"consultations a step "
        f"({'GPU' if cuda else 'CPU'}, lr {lr:g}, temperature {temperature:g})"
    )
    evaluation = _train(trainer, len(eval_rows), say)
    moved = sum(float((p.detach() - before[k]).abs().sum()) for k, p in model.named_parameters())
    _write_outputs(run, trainer, tok, curve, window=max(1, len(rows) // run.groups))
    rewards = [r["reward"] for r in curve if r["reward"] is not None]
    summary = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(run).items()},
        "learning_rate": lr,
        "temperature": temperature,
        "steps": int(trainer.state.global_step),
        "seconds": round(time.perf_counter() - started, 1),
        "reward_first": rewards[0] if rewards else None,
        "reward_last": rewards[-1] if rewards else None,
        "weights_moved_l1": moved,
        "evaluation": evaluation,
        "curve": str(run.out / CURVE_JSON),
        "plot": str(run.out / CURVE_PNG),
    }
    (run.out / SUMMARY_JSON).write_text(json.dumps(summary, indent=2))
    return summary


def _progress_callback(
    run: GRPORun, curve: list[dict[str, Any]], started: float, say: Callable[[str], None]
) -> Any:
    """A trainer callback that appends each logged step to `curve` (with the seconds since
    `started` and the consultations played) and says it in one line."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if not logs or "reward" not in logs:
                return
            row = curve_row(logs, int(state.global_step))
            row["seconds"] = round(time.perf_counter() - started, 1)
            row["episodes"] = played(getattr(self, "trainer", None))
            curve.append(row)
            say(
                f"step {row['step']}/{run.steps}  reward {_fmt(row['reward'])} "
                f"(std {_fmt(row['reward_std'])})  accuracy {_fmt(row['accuracy'])}  "
                f"tool calls reaching the env {_fmt(row['env_tool_calls'])} "
                f"(failed calls {_fmt(row['tool_failure_frequency'])})  "
                f"violations {_fmt(row['violations'])}  {row['seconds']:.0f} s"
            )

    return Progress()


def _trainer(
    model: Any,
    tok: Any,
    config: Any,
    rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]],
    settings: dict[str, Any],
    progress: Any,
) -> Any:
    """TRL's GRPOTrainer over the consultations, the env's tools and metrics as rewards, with
    `progress` printing each step in place of TRL's own log lines."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOTrainer

    from clinicgym.runs.rl.trl_env import METRICS, ClinicToolEnv

    with warnings.catch_warnings():  # transformers' deprecation notes about TRL's own calls
        warnings.simplefilter("ignore", FutureWarning)
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=list(METRICS),
            args=config,
            train_dataset=Dataset.from_list(rows),
            eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
            processing_class=tok,
            environment_factory=ClinicToolEnv.factory(**settings),
            callbacks=[progress],
        )
    trainer.remove_callback(PrinterCallback)  # Progress prints each step instead
    progress.trainer = trainer
    return trainer


def _train(trainer: Any, n_eval: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Train, with `n_eval` other consultations scored before and after (none: no evaluation);
    returns the evaluation rows, `before` and `after`."""
    evaluation: dict[str, Any] = {}
    if n_eval:
        say(f"evaluating on {n_eval} other consultations before training")
        evaluation["before"] = _evaluate(trainer)
        say(f"before: {_eval_line(evaluation['before'])}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        trainer.train()
    if n_eval:
        say(f"evaluating on the same {n_eval} consultations after training")
        evaluation["after"] = _evaluate(trainer)
        say(f"after: {_eval_line(evaluation['after'])}")
    return evaluation


def _write_outputs(
    run: GRPORun, trainer: Any, tok: Any, curve: list[dict[str, Any]], window: int
) -> None:
    """The reward curve as JSON and a plot (its rolling mean over `window` steps), and the
    trained model with its tokenizer unless the run says not to save it."""
    title = f"clinicgym rl grpo: {run.model or 'tiny local model'}, seed {run.seed}"
    (run.out / CURVE_JSON).write_text(json.dumps(curve, indent=2))
    plot_curve(curve, run.out / CURVE_PNG, title, window=window)
    if run.save_model:
        trainer.save_model(str(run.out / "model"))
        tok.save_pretrained(str(run.out / "model"))


def _config(run: GRPORun, lr: float, temperature: float, cuda: bool) -> Any:
    """TRL's GRPOConfig for the run: one group of `generations` consultations a step."""
    import torch
    from trl import GRPOConfig

    from clinicgym.runs.rl.trl_env import METRICS

    return GRPOConfig(
        output_dir=str(run.out / "trainer"),
        max_steps=run.steps,
        per_device_train_batch_size=run.generations * run.groups,
        per_device_eval_batch_size=run.generations * run.groups,
        gradient_accumulation_steps=run.grad_accum,
        use_vllm=run.vllm,
        vllm_mode="colocate",
        num_generations=run.generations,
        max_completion_length=run.max_completion_length,
        max_tool_calling_iterations=run.max_turns + 1,
        temperature=temperature,
        learning_rate=lr,
        reward_weights=[0.0] * len(METRICS),
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=run.seed,
    )


def _evaluate(trainer: Any) -> dict[str, Any]:
    """TRL's evaluation pass over the eval consultations (sampled as in training), as a curve
    row without the eval_ prefix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        logs = trainer.evaluate()
    row = curve_row({k.removeprefix("eval_"): v for k, v in logs.items()}, 0)
    row.pop("step")
    return row


def _eval_line(row: dict[str, Any]) -> str:
    return (
        f"reward {_fmt(row['reward'])}  accuracy {_fmt(row['accuracy'])}  "
        f"turns {_fmt(row['turns'])}  tool calls reaching the env {_fmt(row['env_tool_calls'])}"
    )


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.3f}"
