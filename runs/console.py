"""What every `clinicgym` command shares on the terminal: the error console and how a command
fails (one red `error:` line on stderr, exit status 2)."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

err_console = Console(stderr=True)


def fail(e: Exception, code: int = 2) -> NoReturn:
    """Print `error: <e>` on stderr and exit with `code` (2: bad input or a failed check)."""
    err_console.print(f"[red]error:[/red] {e}", highlight=False)
    raise typer.Exit(code)
