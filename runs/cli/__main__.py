"""`python -m clinicgym.runs.cli` runs the command line."""

from clinicgym.runs.cli.main import main

main()
