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
    from clinicgym.patients.knowledge.kb import default_kb
    from clinicgym.patients.patient.question_bank import evaluate_bank

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
    from clinicgym.patients.knowledge.kb import default_kb, load_kb
    from clinicgym.runs.store import RunStore
    from clinicgym.scoring.patient_fidelity import run_fidelity

    store = RunStore(run_dir)
    try:
        manifest = store.manifest()
        kb_dir = manifest.spec.kb_dir
        kb = load_kb(kb_dir) if kb_dir else default_kb()
        report = run_fidelity(store.iter_episodes(), {c.id: c for c in store.cases()}, kb)
    except ClinicGymError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    report["patient"] = manifest.spec.patient
    t = Table("measure", "value", title=f"patient fidelity: {run_dir} ({report['patient']})")
    for k, v in report.items():
        if k != "patient":
            t.add_row(k, _fmt(v))
    console.print(t)
    if out:
        out.write_text(json.dumps(report, indent=2))


@patients_app.command("ask")
def ask(
    cases_from: Annotated[
        Path, typer.Option("--cases-from", help="Case file (AgentClinic JSONL, ...).")
    ],
    questions: Annotated[
        Path,
        typer.Option(help="Question bank JSONL: 'case' (line index or case id) and 'question'."),
    ],
    out: Annotated[Path, typer.Option(help="Where to write one answer per question (JSONL).")],
    fresh: Annotated[
        bool, typer.Option("--fresh", help="A new patient for every question.")
    ] = False,
) -> None:
    """Ask each case's questions in order and write every answer with its status, so anyone can
    validate the simulator with their own bank (docs/patients.md#question-banks)."""
    from rich.progress import track

    from clinicgym.patients.importers.external import read_cases
    from clinicgym.patients.knowledge.kb import default_kb
    from clinicgym.patients.patient.ask import ask as ask_bank
    from clinicgym.patients.patient.ask import grade, read_questions
    from clinicgym.patients.patient.matching import matcher_for
    from clinicgym.patients.patient.patient import GroundedPatient

    try:
        kb = default_kb()
        rows = read_questions(questions)
        cases = read_cases(cases_from, kb)
        matcher = matcher_for(kb)
        out.parent.mkdir(parents=True, exist_ok=True)
        answered = []
        with out.open("w", encoding="utf-8") as fh:
            asked = ask_bank(cases, rows, lambda c: GroundedPatient(c, matcher), fresh=fresh)
            for row in track(asked, total=len(rows), description="asking", console=console):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                answered.append(row)
    except (ClinicGymError, OSError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    console.print(f"{len(answered)} answers over {len(cases)} cases -> {out}")
    g = grade(answered)
    if g["questions"]:
        console.print(
            f"agreement with the bank's 'expect': {g['right']}/{g['questions']} "
            f"({g['accuracy']:.1%}; with the expected statement {g['content_accuracy']:.1%}); "
            f"facts and denials {g['fact_accuracy']:.1%}; "
            f"contradictions {g['contradictions']}; diagnosis leaks {g['leaks']}"
        )
        for key in ("by_expect", "by_kind", "by_wording"):
            if key in g:
                t = Table(key[3:], "right", "of", "share")
                for k, (r, n) in g[key].items():
                    t.add_row(k, str(r), str(n), f"{r / n:.0%}")
                console.print(t)
