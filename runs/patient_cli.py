"""`clinicgym patients ...`: measure the patient simulator (question bank, fidelity of a run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from clinicgym.errors import ClinicGymError
from clinicgym.runs.console import ci_cell

patients_app = typer.Typer(
    help="Measure the patient simulator: question-bank accuracy and a run's fidelity.",
    no_args_is_help=True,
)
console = Console()


def _fmt(m: object) -> str:
    if isinstance(m, dict) and "mean" in m:
        return ci_cell(m, spec=".3f")
    return str(m)


@patients_app.command("qbank")
def qbank(
    cases: Annotated[int, typer.Option(help="Cases to ask (sampled from the KB).")] = 20,
    seed: Annotated[int, typer.Option(help="Seed for the cases.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Ask the paraphrased question bank of KB cases; print answer and retrieval accuracy."""
    from clinicgym.patients.kb import default_kb
    from clinicgym.patients.question_bank import evaluate_bank

    try:
        r = evaluate_bank(default_kb(), n_cases=cases, seed=seed)
    except ClinicGymError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    if as_json:
        print(r.model_dump_json(indent=2))
        return
    console.print(
        f"{r.questions} questions over {r.cases} cases: answer accuracy "
        f"{r.answer_accuracy:.1%}, strict retrieval {r.retrieval_accuracy:.1%}, leaks {r.leaks}"
    )
    t = Table("expected", "right", "wrong", title="by expected answer")
    for k, v in sorted(r.by_expected.items()):
        t.add_row(k, str(v.get("right", 0)), str(v.get("wrong", 0)))
    console.print(t)
    for f in r.failures[:10]:
        console.print(
            f"  missed: {f['question']!r} (want {f['expected']} for {f['asked']})", highlight=False
        )


@patients_app.command("fidelity")
def fidelity(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    out: Annotated[Path | None, typer.Option(help="Write the report as JSON here.")] = None,
) -> None:
    """Audit a run's patient: guard catches, and hallucination/contradiction/leak rates."""
    from clinicgym.patients.kb import default_kb, load_kb
    from clinicgym.runs.store import RunStore
    from clinicgym.scoring.patient_fidelity import run_fidelity

    store = RunStore(run_dir)
    try:
        manifest = store.manifest()
        kb_dir = manifest["spec"].get("kb_dir")
        kb = load_kb(kb_dir) if kb_dir else default_kb()
        report = run_fidelity(store.iter_episodes(), {c.id: c for c in store.cases()}, kb)
    except ClinicGymError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    report["patient"] = manifest["spec"].get("patient", "grounded")
    t = Table("measure", "value", title=f"patient fidelity: {run_dir} ({report['patient']})")
    for k, v in report.items():
        if k != "patient":
            t.add_row(k, _fmt(v))
    console.print(t)
    if out:
        out.write_text(json.dumps(report, indent=2))
