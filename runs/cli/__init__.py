"""The `clinicgym` command line: thin typer commands over the `runs` library.

One module per command group (`main` holds the app and `run`, `kb`, `cases`); nothing outside
this package imports it. The console script is `clinicgym.runs.cli:main`.
"""

from clinicgym.runs.cli.main import app, main

__all__ = ["app", "main"]
