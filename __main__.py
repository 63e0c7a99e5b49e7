"""`python -m clinicgym` runs the command-line interface."""

from clinicgym.runs.cli import main

main()
