"""The size rules of docs/architecture.md: no function over 60 lines (a typer command's
signature, a table of options, not counted), and every module over 500 lines listed there with
the reason it stays one module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agents", "envs", "patients", "policies", "runs", "scoring")
MAX_FUNCTION = 60
MAX_MODULE = 500


def _modules() -> list[Path]:
    return sorted(p for d in PACKAGES for p in (ROOT / d).rglob("*.py"))


def _is_command(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A typer command or callback: `@app.command(...)`, `@group.callback()`."""
    for dec in fn.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Attribute) and target.attr in ("command", "callback"):
            return True
    return False


def _length(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from `def` to the end; a command's from its first statement after the docstring."""
    assert fn.end_lineno is not None
    if not _is_command(fn):
        return fn.end_lineno - fn.lineno + 1
    body = fn.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return fn.end_lineno - body[0].lineno + 1


def long_functions() -> list[str]:
    """Every function over the limit, as 'path:line name (N lines)'."""
    out = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = _length(node)
                if n > MAX_FUNCTION:
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_no_function_is_over_60_lines() -> None:
    assert long_functions() == []


def test_the_length_rule_counts_a_commands_body_and_everything_else_whole() -> None:
    src = (
        "@app.command()\ndef c(\n"
        + "    a: int = 1,\n" * 70
        + ") -> None:\n    '''Doc.'''\n    pass\n"
    )
    fn = ast.parse(src).body[0]
    assert isinstance(fn, ast.FunctionDef) and _length(fn) == 1
    plain = ast.parse(src.replace("@app.command()\n", "")).body[0]
    assert isinstance(plain, ast.FunctionDef) and _length(plain) == 74


def test_every_module_over_500_lines_is_listed_with_its_reason() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc.split("## Size limits, and the files above them", 1)[1].split("\n## ", 1)[0]
    listed = dict(re.findall(r"^\| `([\w/]+\.py)` \| (.+?) \|$", section, re.M))
    big = [
        str(p.relative_to(ROOT)) for p in _modules() if len(p.read_text().splitlines()) > MAX_MODULE
    ]
    assert [m for m in big if not listed.get(m, "").strip()] == []
    assert [m for m in listed if m not in big] == [], "listed but no longer over 500 lines"


def private_imports() -> list[str]:
    """Every `from clinicgym.X import _name` in the package (function-level ones included)."""
    out = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("clinicgym"):
                out += [
                    f"{path.relative_to(ROOT)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    return out


def test_no_module_imports_a_private_name_from_another() -> None:
    assert private_imports() == []
