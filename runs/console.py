"""What every `clinicgym` command shares on the terminal: the error console, how a command
fails (one red `error:` line on stderr, exit status 2) and how a table cell shows an interval."""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from clinicgym.scoring.stats import format_ci

err_console = Console(stderr=True)


def fail(e: Exception, code: int = 2) -> NoReturn:
    """Print `error: <e>` on stderr and exit with `code` (2: bad input or a failed check)."""
    # escaped: a message may hold brackets rich would take for markup ("clinicgym[local]")
    err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def ci_cell(m: Any, **kw: Any) -> str:
    """`format_ci` for a rich table cell: `[undefined]` escaped, or rich takes it for markup
    and prints nothing."""
    return escape(format_ci(m, **kw))
