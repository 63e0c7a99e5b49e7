"""Agent spec strings -> agent factories: the baselines (`random`, `scripted`, `oracle`, ...)
registered here, every model spec of the backend registry (`openai/gpt-4o`, `hf:smollm2`,
...; agents/backends/registry.py), played by the LLM clinician, and custom agents: a class
named as `module:Class` or registered by name in the `clinicgym.agents` entry-point group,
with settings after '#' (`my_agents:Cautious#budget=4`) passed to it as keyword arguments.

The order is fixed: a model spec (a backend prefix), then a baseline, then `module:Class`,
then an entry-point name; so a custom agent cannot shadow a built-in one.

Like inspect_ai's providers, each entry is registered under its name and builds its agents
lazily, so optional backends import their extra only when used.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clinicgym.agents.errors import AgentSpecError
from clinicgym.envs.protocols import Agent
from clinicgym.patients.knowledge.kb import KnowledgeBase

AgentFactory = Callable[[], Agent]
"""Makes one fresh agent per episode (agents keep per-episode state)."""
Builder = Callable[[str, KnowledgeBase, dict[str, Any]], AgentFactory]

_BUILDERS: dict[str, Builder] = {}


def agent_builder(name: str) -> Callable[[Builder], Builder]:
    """Register a builder for specs equal to `name` or starting with `name:`."""

    def deco(fn: Builder) -> Builder:
        _BUILDERS[name] = fn
        return fn

    return deco


def known_agents() -> list[str]:
    """Registered spec names and prefixes, and the agents installed packages register."""
    return sorted({*_BUILDERS, *entry_point_agents()})


def make_agent_factory(
    spec: str, kb: KnowledgeBase, options: dict[str, Any] | None = None
) -> AgentFactory:
    """The factory for an agent spec such as 'scripted', 'openai/gpt-4o' or 'openai:MODEL@URL'."""
    from clinicgym.agents.backends.registry import is_model_spec

    spec = spec.strip()
    if is_model_spec(spec):
        from clinicgym.agents.backends.spec import clinician_factory

        return clinician_factory(spec, dict(options or {}))
    name, _, rest = spec.partition(":")
    if "#" in name:  # baseline options: 'scripted#budget=4'
        name, _, opts = name.partition("#")
        rest = f"#{opts}" + (f":{rest}" if rest else "")
    builder = _BUILDERS.get(name)
    if builder is None:
        return custom_agent_factory(spec, kb)
    if _has_bias(rest):
        from clinicgym.agents.backends.registry import backend_names

        raise AgentSpecError(
            f"agent '{spec}': '{name}' is a baseline, not a language model; a bias is a sentence "
            "in a model's instructions, so only model backends take '#bias=' "
            f"({', '.join(backend_names())}), e.g. 'hf:smollm2#bias=recency'"
        )
    return builder(rest, kb, dict(options or {}))


def check_agent_spec(spec: str) -> None:
    """Raise AgentSpecError if `spec` names no agent, or a model spec is malformed; loads
    nothing and connects nowhere, so a typo fails before cases are made or models load."""
    from clinicgym.agents.backends.registry import is_model_spec, parse_spec

    spec = spec.strip()
    if is_model_spec(spec):
        parse_spec(spec)
    elif spec.partition(":")[0].partition("#")[0] not in _BUILDERS:
        resolve_custom_agent(spec)  # imports the module; builds no agent


# ---- custom agents: `module:Class` and the `clinicgym.agents` entry-point group ---------------

ENTRY_POINT_GROUP = "clinicgym.agents"
"""Entry-point group under which a package registers agents by name:
`[project.entry-points."clinicgym.agents"] cautious = "my_pkg.agents:CautiousAgent"`."""

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_CLASS_SPEC = re.compile(rf"^({_DOTTED}):({_DOTTED})$")
_NAME_SPEC = re.compile(r"^[A-Za-z_][\w.-]*$")
_PROTOCOL = (
    "the Agent protocol (envs/protocols.py): an `agent_id` attribute, "
    "`reset(observation, info)` and `async act(observation, info)`"
)


def entry_point_agents() -> dict[str, str]:
    """Agent name -> 'module:attr' for every agent installed packages register under
    `ENTRY_POINT_GROUP` (read from the installed distributions' metadata; nothing imported)."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def resolve_custom_agent(spec: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The class (or factory) a custom agent spec names and its '#' settings as keyword
    arguments; raises AgentSpecError naming what is missing. Imports the module, builds nothing."""
    head, _, tail = spec.strip().partition("#")
    head = head.strip()
    kwargs = _custom_options(spec, tail)
    if _CLASS_SPEC.match(head):
        target = head
    elif _NAME_SPEC.match(head) and head in (installed := entry_point_agents()):
        target = installed[head]
    else:
        from clinicgym.agents.backends.registry import unknown_model_message

        raise AgentSpecError(unknown_model_message(spec, known_agents()) + _CUSTOM_HINT)
    module_name, _, attr = target.partition(":")
    obj = _import_attr(spec, module_name, attr)
    if not callable(obj):
        raise AgentSpecError(
            f"agent '{spec}': '{target}' is not a class (it is {type(obj).__name__}); name a "
            f"class implementing {_PROTOCOL}"
        )
    if inspect.isclass(obj):
        missing = _missing_methods(obj)
        if missing:
            raise AgentSpecError(
                f"agent '{spec}': class '{target}' does not implement {_PROTOCOL}: "
                + "; ".join(missing)
            )
    _check_arguments(spec, target, obj, kwargs)
    return obj, kwargs


_CUSTOM_HINT = (
    "; custom agents: 'module:Class' (a class with the Agent protocol) or a name in the "
    f"'{ENTRY_POINT_GROUP}' entry-point group"
)


def custom_agent_factory(spec: str, kb: KnowledgeBase) -> AgentFactory:
    """A factory of fresh custom agents: the class is called with the spec's settings (and the
    run's `kb` when its constructor takes one). One agent is built now, so a constructor that
    fails or an object without the protocol is an error before the run starts."""
    cls, kwargs = resolve_custom_agent(spec)
    if _takes_kb(cls):
        kwargs = {"kb": kb, **kwargs}

    def make() -> Agent:
        return cls(**kwargs)

    try:
        first = make()
    except Exception as e:
        raise AgentSpecError(f"agent '{spec}': building it raised {type(e).__name__}: {e}") from e
    check_agent_object(first, f"agent '{spec}'")
    return make


def check_agent_object(agent: object, what: str) -> None:
    """Raise AgentSpecError unless `agent` has the Agent protocol, with `act` a coroutine
    function (a plain `act` would make every turn an error turn, scored as the model's)."""
    missing = [f"no attribute '{n}'" for n in ("agent_id",) if not hasattr(agent, n)]
    missing += _missing_methods(type(agent))
    if missing:
        raise AgentSpecError(
            f"{what}: {type(agent).__name__} does not implement {_PROTOCOL}: " + "; ".join(missing)
        )


def _missing_methods(cls: type) -> list[str]:
    """What a class lacks of the Agent protocol's methods (`agent_id` is set per instance)."""
    out = []
    for name in ("reset", "act"):
        if not callable(getattr(cls, name, None)):
            out.append(f"no method '{name}'")
    act = getattr(cls, "act", None)
    if callable(act) and not inspect.iscoroutinefunction(act):
        out.append("'act' is not async (define it with `async def act(self, observation, info)`)")
    return out


def _import_attr(spec: str, module_name: str, attr: str) -> Any:
    """`module_name`'s `attr` (dotted), the working directory on the import path as for
    `python -m`, so `--agent my_agents:MyAgent` finds my_agents.py where the run starts."""
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise AgentSpecError(
                f"agent '{spec}': no module named '{module_name}' (looked in the working "
                "directory and sys.path)" + _CUSTOM_HINT
            ) from None
        raise AgentSpecError(f"agent '{spec}': importing '{module_name}' failed: {e}") from e
    except Exception as e:
        raise AgentSpecError(
            f"agent '{spec}': importing '{module_name}' raised {type(e).__name__}: {e}"
        ) from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [
                n for n in dir(obj) if not n.startswith("_") and inspect.isclass(getattr(obj, n))
            ]
            close = difflib.get_close_matches(part, names, n=1)
            raise AgentSpecError(
                f"agent '{spec}': module '{module_name}' has no '{attr}'"
                + (f"; did you mean '{module_name}:{close[0]}'?" if close else "")
                + (f" Its classes: {', '.join(names)}" if names else "")
            )
        obj = getattr(obj, part)
    return obj


def _custom_options(spec: str, tail: str) -> dict[str, Any]:
    """'#budget=4,name=x' -> keyword arguments: ints, floats and true/false converted."""
    out: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in tail.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise AgentSpecError(
                f"agent '{spec}': setting '{item}' is not 'key=value' (custom agents take "
                "'#key=value,key=value', passed to the class as keyword arguments)"
            )
        out[key] = _scalar(value.strip())
    return out


def _scalar(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    low = value.lower()
    return {"true": True, "false": False}.get(low, value)


def _takes_kb(cls: Callable[..., Any]) -> bool:
    try:
        return "kb" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def _check_arguments(
    spec: str, target: str, cls: Callable[..., Any], kwargs: dict[str, Any]
) -> None:
    """The '#' settings must be arguments the class takes (checked without building it)."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise AgentSpecError(
            f"agent '{spec}': {target} takes no argument {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(n for n in params if n != 'kb') or 'none'}"
        )


def _has_bias(rest: str) -> bool:
    """A baseline's options ('#bias=recency,budget=4') name a bias."""
    _, _, opts = rest.partition("#")
    return any(o.split("=")[0].strip() in ("bias", "bias_file") for o in opts.split(","))


def _no_argument(name: str, rest: str) -> None:
    if rest:
        raise AgentSpecError(f"agent '{name}' takes no argument, got '{name}:{rest}'")


@agent_builder("random")
def _random(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    from clinicgym.agents.random_agent import RandomAgent

    _no_argument("random", rest)
    return lambda: RandomAgent(kb)


@agent_builder("scripted")
def _scripted(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    """`scripted`, or `scripted#budget=4,stop=0.95` (budget: questions, exams and tests before
    it must diagnose; `inf` for none; stop: the posterior at which it diagnoses)."""
    from clinicgym.agents.scripted import ScriptedAgent, parse_options

    if rest and not rest.startswith("#"):
        raise AgentSpecError(f"agent 'scripted' takes options after '#', got 'scripted:{rest}'")
    try:
        opts = parse_options("scripted", rest[1:])
    except ValueError as e:
        raise AgentSpecError(str(e)) from None
    return lambda: ScriptedAgent(kb, **opts)


@agent_builder("opening")
def _opening(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    """Diagnoses from the opening line alone with the KB posterior: the floor of inquiry."""
    from clinicgym.agents.scripted import ScriptedAgent

    _no_argument("opening", rest)
    return lambda: ScriptedAgent(kb, "opening", budget=0)


@agent_builder("oracle")
def _oracle(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    from clinicgym.agents.oracle import OracleAgent

    _no_argument("oracle", rest)
    return lambda: OracleAgent(kb)


@agent_builder("unsafe")
def _unsafe(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    from clinicgym.agents.unsafe import UnsafeAgent

    _no_argument("unsafe", rest)
    return lambda: UnsafeAgent(kb)


@agent_builder("human")
def _human(rest: str, kb: KnowledgeBase, options: dict[str, Any]) -> AgentFactory:
    from clinicgym.agents.human import HumanAgent

    _no_argument("human", rest)
    return lambda: HumanAgent()
