"""Docs that cannot drift: every code block in README.md and docs/*.md runs in a test, or says
why it cannot run offline.

A block is code when its fence says `python`, `bash`, `sh`, `shell` or `console`, or when an
untagged block holds a command line (`$ ...`, or a line starting `clinicgym`, `python`, `pip`,
`inspect`, `curl` or `.venv/bin/...`). Other blocks (output, tables, diagrams, YAML, TOML) are
text. HTML comments on the lines just above a fence say how its block is treated:

- `<!-- not-run: REASON -->`: never executed (a reason is required: needs an API key, a GPU, a
  server, placeholders, minutes of CPU...);
- `<!-- slow -->`: executed by the slow test only (`-m slow`);
- `<!-- file: PATH -->`: the block is saved as PATH (relative) in its page's folder, for later
  blocks to read: a text block (a spec file, a pack) is only written, a python block is saved
  there and run from there (so a later block can import it);
- `<!-- output -->`: what the docs show the block printing is checked: for a console block, the
  lines after each `$ command`; for a python block, the untagged block that follows it. Every
  shown line must appear in what was printed (spaces and table borders normalised; `...`
  stands for any text, so each piece between them must appear); a console
  command's exit status is then not checked, so error examples can be shown.

Without a marker a block runs in the default test: python blocks as a script, shell blocks
command by command (the `$ ` lines, or every line when there are none) with bash; each must
exit 0. Each page's blocks run in document order in one temporary folder per page (linking the
repository's `tests`, `examples`, `bench` and `patients/knowledge`, the bundled KB, so relative
paths in the docs resolve and nothing is written into the checkout), so a block reads what an
earlier block of its page wrote: a run directory, a saved file. A slow block run alone
(`-m slow`) first runs the page's earlier default blocks; a default block never waits for a
slow one (one that needs a slow block's output is itself slow). When an earlier block failed,
the later blocks of its page are skipped (or failed, when the earlier one ran as their
prerequisite) with a message naming it.

Whatever the marker, the fast test checks every `clinicgym ...` line of every code block names
a real subcommand and only options it has, and every `python FILE.py` names a file that exists.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^ {0,3}(`{3,})\s*(\S*)")
MARKER = re.compile(r"^\s*<!--\s*(not-run|slow|output|file)\s*(?::\s*(.*?))?\s*-->\s*$")
SHELL_LANGS = {"bash", "sh", "shell", "console"}
COMMAND = re.compile(
    r"^(\$ |(clinicgym|python|pip|inspect|curl|\.venv/bin/\S+)(\s|$)|[A-Z_]+=\S*\s+(clinicgym|inspect)\b)"
)
LINKED = ("tests", "examples", "bench", "patients/knowledge")
"""Repository folders each page's folder links (read only by the docs' blocks)."""
BLOCK_TIMEOUT_S = int(os.environ.get("DOC_BLOCK_TIMEOUT_S", "600"))


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text and the markers above it."""

    path: Path
    line: int
    lang: str
    text: str
    markers: dict[str, str]
    shown: str = ""
    """For a python block: the text block right after it (what the docs say it prints)."""

    @property
    def id(self) -> str:
        """`docs/x.md:LINE`, the block's test id."""
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path.as_posix()}:{self.line}"

    @property
    def kind(self) -> str | None:
        """'python', 'shell', or None for a text block."""
        if self.lang == "python":
            return "python"
        if self.lang in SHELL_LANGS:
            return "shell"
        if not self.lang and any(COMMAND.match(s.strip()) for s in self.text.splitlines()):
            return "shell"
        return None


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of one markdown file, with the HTML-comment markers just above each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i
        markers: dict[str, str] = {}
        j = i - 1
        while j >= 0 and (mm := MARKER.match(lines[j])):
            markers[mm.group(1)] = mm.group(2) or ""
            j -= 1
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        out.append(Block(path, start + 1, lang, "\n".join(body), markers))
        i += 1
    for k, b in enumerate(out[:-1]):
        if b.lang == "python" and not out[k + 1].lang:
            out[k] = dataclasses.replace(b, shown=out[k + 1].text)
    return out


ALL = [b for p in DOCS for b in blocks(p)]
CODE = [b for b in ALL if b.kind is not None]


def commands(text: str) -> list[tuple[str, list[str]]]:
    """(command, the output lines shown after it): the `$ ` lines of a console block, or every
    line when it has none; a trailing backslash, or an indented line in a block without `$ `,
    continues the command."""
    lines = text.splitlines()
    console = any(s.startswith("$ ") for s in lines)
    out: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(lines):
        s = lines[i]
        if console and not s.startswith("$ "):
            if out:
                out[-1][1].append(s)
            i += 1
            continue
        if not console and s[:1].isspace() and out:  # an indented synopsis line continues
            out[-1] = (f"{out[-1][0]} {s.strip()}", out[-1][1])
            i += 1
            continue
        cmd = s[2:] if console else s
        while cmd.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd = cmd.rstrip()[:-1].rstrip() + " " + lines[i].strip()
        if cmd.strip() and not cmd.lstrip().startswith("#"):
            out.append((cmd.strip(), []))
        i += 1
    return out


def test_every_code_block_runs_or_says_why_not():
    missing = [b.id for b in CODE if "not-run" in b.markers and not b.markers["not-run"]]
    assert not missing, f"<!-- not-run: REASON --> needs a reason: {missing}"
    assert len(CODE) > 40  # the extraction finds the docs' blocks
    text_only = {b.id for b in ALL if b.kind is None}
    stray = [
        b.id
        for b in ALL
        if b.markers and b.id in text_only and not b.markers.keys() & {"output", "file"}
    ]
    saved = [(b.id, b.kind, Path(b.markers["file"])) for b in ALL if "file" in b.markers]
    bad = [i for i, kind, f in saved if kind == "shell" or f.is_absolute() or ".." in f.parts]
    assert not bad, f"<!-- file: PATH --> takes a relative path, on a text or python block: {bad}"
    assert not stray, f"markers on blocks that are not code: {stray}"


def test_the_extraction_sees_console_commands_and_their_output():
    text = "$ clinicgym run --agent x \\\n    --cases 2\nshown line\n$ echo hi\nhi"
    assert commands(text) == [
        ("clinicgym run --agent x --cases 2", ["shown line"]),
        ("echo hi", ["hi"]),
    ]
    assert Block(ROOT, 1, "", "clinician: hello", {}).kind is None
    assert Block(ROOT, 1, "", "$ clinicgym version", {}).kind == "shell"


def test_shown_output_is_matched_by_cells_and_pieces_and_can_fail():
    b = Block(ROOT, 1, "", "", {"output": ""})
    printed = "┃ agent ┃ top-1 ┃\n│ scripted │  80% │\nerror: unknown agent spec 'x'; did you mean"
    _check_shown(b, "it", ["│ scripted │ 80% │", "error: unknown agent spec 'x'; ..."], printed)
    with pytest.raises(pytest.fail.Exception, match="did not print"):
        _check_shown(b, "it", ["│ scripted │ 67% │"], printed)


# ---- every clinicgym line names real subcommands and options ------------------------------


def _cli():
    typer = pytest.importorskip("typer")
    from clinicgym.runs.cli import app

    return typer.main.get_command(app)


def _words(cmd: str) -> list[str]:
    cmd = cmd.split(" #", 1)[0]
    try:
        return shlex.split(cmd)
    except ValueError:
        return cmd.split()


def _flag_problems(root, cmd: str) -> list[str]:
    """What a `clinicgym ...` command line names that the CLI does not have."""
    words = _words(cmd)
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words.pop(0)
    if not words or words[0] != "clinicgym":
        return []
    command, path = root, ["clinicgym"]
    rest = words[1:]
    while rest and hasattr(command, "commands") and not rest[0].startswith("-"):
        name = rest.pop(0)
        if name not in command.commands:
            return [f"{' '.join(path)} has no subcommand '{name}'"]
        command, path = command.commands[name], [*path, name]
    known = {"--help"}
    for p in command.params:
        known.update(getattr(p, "opts", []))
        known.update(getattr(p, "secondary_opts", []))
    problems = []
    for w in rest:
        w = w.strip("[]|(),")
        if re.match(r"^--?[A-Za-z]", w):
            flag = w.split("=", 1)[0]
            if flag not in known:
                problems.append(f"{' '.join(path)} has no option {flag}")
    return problems


def test_every_clinicgym_line_names_real_subcommands_and_options():
    root = _cli()
    problems = []
    for b in CODE:
        if b.kind != "shell":
            continue
        for cmd, _ in commands(b.text):
            problems += [f"{b.id}: {p}" for p in _flag_problems(root, cmd)]
    assert not problems, "\n".join(problems)


def test_every_python_script_named_exists():
    missing = []
    for b in CODE:
        if b.kind != "shell":
            continue
        for cmd, _ in commands(b.text):
            for w in _words(cmd):
                local = w.endswith(".py") and "/" in w and not w.startswith("/")
                if local and not (ROOT / w).is_file():
                    missing.append(f"{b.id}: {w}")
    assert not missing, missing


def test_the_flag_check_can_fail():
    root = _cli()
    assert _flag_problems(root, "clinicgym run --agent scripted --cases 2") == []
    assert _flag_problems(root, "clinicgym run --agnet scripted") == [
        "clinicgym run has no option --agnet"
    ]
    assert _flag_problems(root, "clinicgym rnu") == ["clinicgym has no subcommand 'rnu'"]


# ---- running the blocks -------------------------------------------------------------------


def _workdir(tmp_path: Path) -> Path:
    for name in LINKED:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", COLUMNS="300", NO_COLOR="1")
    return env


BOX = re.compile(r"[\u2500-\u257f]")
"""Rich's table borders: a table is compared by its cells, whatever the terminal width."""


def _norm(s: str) -> str:
    return " ".join(BOX.sub(" ", s).split())


def _optional_modules() -> set[str]:
    """Import names of the optional extras' distributions ('inspect_ai', 'stable_baselines3')."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = set()
    for reqs in extras.get("optional-dependencies", {}).values():
        for r in reqs:
            names.add(re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower().replace("-", "_"))
    return names


CLI_EXTRAS = {"inspect": "inspect_ai"}
"""Commands a doc runs that an extra installs, by the module that provides them."""


def _missing_extra(output: str) -> str | None:
    """Why a failed block could not run here because an optional extra is not installed (the
    light core on another Python): never a reason where the extra is installed, so a block that
    fails for any other cause still fails."""
    from importlib.util import find_spec

    m = re.search(r"needs the '([\w-]+)' extra|pip install \"?clinicgym\[(\w+)\]", output)
    if m:
        return f"needs the '{m.group(1) or m.group(2)}' extra, not installed here"
    m = re.search(r"No module named '([\w.]+)'", output)
    if m:
        top = m.group(1).split(".")[0]
        if find_spec(top) is None and top.lower() in _optional_modules():
            return f"needs {top} (an optional extra), not installed here"
    m = re.search(r"(?:^|\n)bash: (?:line \d+: )?([\w-]+): command not found", output)
    if m and m.group(1) in CLI_EXTRAS and find_spec(CLI_EXTRAS[m.group(1)]) is None:
        return f"needs the `{m.group(1)}` command ({CLI_EXTRAS[m.group(1)]}), not installed here"
    return None


def run_block(b: Block, where: Path) -> None:
    """Run one block in `where`; fail with its output if a command fails or shown output is
    not printed."""
    env = _env()
    if b.kind == "python":
        script = where / b.markers.get("file", "block.py")
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(b.text + "\n")
        p = subprocess.run(
            [sys.executable, str(script)],
            cwd=where,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )
        if p.returncode and (why := _missing_extra(p.stderr)):
            pytest.skip(f"{b.id}: {why}")
        assert p.returncode == 0, f"{b.id}: python block failed\n{p.stdout}\n{p.stderr}"
        if "output" in b.markers:
            _check_shown(b, "the block", b.shown.splitlines(), p.stdout)
        return
    for cmd, shown in commands(b.text):
        p = subprocess.run(
            ["bash", "-c", cmd],
            cwd=where,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )
        said = p.stdout + "\n" + p.stderr
        if p.returncode and (why := _missing_extra(said)):
            pytest.skip(f"{b.id}: {why}")
        if "output" in b.markers:
            _check_shown(b, f"`{cmd}`", shown, said)
        else:
            assert p.returncode == 0, f"{b.id}: `{cmd}` exited {p.returncode}\n{said}"


def _check_shown(b: Block, what: str, shown: list[str], printed: str) -> None:
    """Every line the docs show (but `...`) is in what was printed, spaces normalised."""
    said = _norm(printed)
    for line in shown:
        pieces = [_norm(p) for p in line.split("...") if p.strip()]
        if any(p not in said for p in pieces):
            pytest.fail(f"{b.id}: {what} did not print {line!r}; it printed:\n{printed}")


def _is_file(b: Block) -> bool:
    """A text block whose `<!-- file: PATH -->` marker saves it into the page's folder."""
    return b.kind is None and "file" in b.markers


def _slow(b: Block) -> bool:
    return "slow" in b.markers


STEPS = {
    p: [b for b in ALL if b.path == p and (_is_file(b) or (b.kind and "not-run" not in b.markers))]
    for p in DOCS
}
"""Each page's blocks that take part, in document order: the code blocks that run and the
files written."""


@dataclass
class Page:
    """One page's working folder, shared by its blocks in order, and how each step went."""

    where: Path
    done: dict[str, str] = dataclasses.field(default_factory=dict)
    """block id -> '' once it ran, or why it failed."""


def _play(b: Block, where: Path) -> None:
    """Run a code block in `where`, or write a `file` block there."""
    if not _is_file(b):
        run_block(b, where)
        return
    (where / b.markers["file"]).parent.mkdir(parents=True, exist_ok=True)
    (where / b.markers["file"]).write_text(b.text + "\n", encoding="utf-8")


def play_in_order(block: Block, steps: list[Block], page: Page) -> None:
    """Run `block` in its page's folder after the page's earlier steps.

    An earlier step that already ran in this session is not repeated; one that failed skips
    this block, naming it. One not run yet (deselected: a slow block under `-m slow` runs the
    earlier default blocks first) runs now, and its failure fails this block, naming it. A
    default block never waits for a slow one: a block that needs a slow block's output is
    itself marked slow."""
    for earlier in steps[: steps.index(block)]:
        if earlier.id in page.done:
            if page.done[earlier.id].startswith("skipped"):
                pytest.skip(f"{block.id}: not run: the earlier block {page.done[earlier.id]}")
            if page.done[earlier.id]:
                pytest.skip(
                    f"{block.id}: not run: the earlier block {earlier.id} of this page failed "
                    "(a page's blocks run in order in one folder)"
                )
            continue
        if _slow(earlier) and not _slow(block):
            continue
        try:
            _play(earlier, page.where)
        except pytest.skip.Exception as e:
            page.done[earlier.id] = f"skipped: {e}"
            pytest.skip(f"{block.id}: not run: the earlier block {page.done[earlier.id]}")
        except (Exception, pytest.fail.Exception) as e:
            page.done[earlier.id] = f"failed: {e}"
            pytest.fail(
                f"{block.id}: the earlier block {earlier.id}, run first because this one may "
                f"need what it writes, failed:\n{e}"
            )
        page.done[earlier.id] = ""
    page.done[block.id] = "did not finish"
    try:
        _play(block, page.where)
    except pytest.skip.Exception as e:
        page.done[block.id] = f"skipped: {e}"
        raise
    except (Exception, pytest.fail.Exception) as e:
        page.done[block.id] = f"failed: {e}"
        raise
    page.done[block.id] = ""


@pytest.fixture(scope="session")
def pages(tmp_path_factory):
    """The working folder of each page, made on first use and shared by its blocks."""
    made: dict[Path, Page] = {}

    def page(path: Path) -> Page:
        if path not in made:
            name = path.relative_to(ROOT).as_posix().replace("/", "-")
            made[path] = Page(_workdir(tmp_path_factory.mktemp(name, numbered=True)))
        return made[path]

    return page


RUN = [b for p in DOCS for b in STEPS[p] if not _is_file(b)]


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, marks=[pytest.mark.slow] if _slow(b) else [], id=b.id) for b in RUN],
)
def test_block_runs(block, pages):
    play_in_order(block, STEPS[block.path], pages(block.path))


def test_a_failed_earlier_block_is_named_by_the_later_ones(tmp_path):
    md = tmp_path / "page.md"
    md.write_text(
        "<!-- file: notes/a.txt -->\n```\nkept\n```\n\n"
        "```bash\nexit 3\n```\n\n"
        "```bash\ncat notes/a.txt\n```\n",
        encoding="utf-8",
    )
    steps = blocks(md)
    first, later = steps[1], steps[2]
    # the earlier block was not selected: it runs first, and its failure names it
    page = Page(tmp_path / "w")
    page.where.mkdir()
    with pytest.raises(pytest.fail.Exception, match=f"earlier block {re.escape(first.id)}.*failed"):
        play_in_order(later, steps, page)
    assert (page.where / "notes/a.txt").read_text() == "kept\n"
    # the earlier block failed as its own test: the later one is skipped, naming it
    with pytest.raises(pytest.skip.Exception, match=re.escape(first.id)):
        play_in_order(later, steps, page)
    # with the failing block fixed, the later block sees the file the page wrote
    fixed = Page(page.where)
    play_in_order(later, [steps[0], later], fixed)
    assert list(fixed.done.values()) == ["", ""]


def test_only_a_missing_optional_extra_excuses_a_failed_block():
    """A block may be skipped only for an extra this interpreter lacks (the light core on
    another Python); a module that is installed, or belongs to no extra, still fails it."""
    assert _missing_extra("MissingExtra: SDV cohorts needs the 'cohorts' extra (sdv not")
    assert _missing_extra('error: needs Ray; run `pip install "clinicgym[ray]"`')
    assert _missing_extra("ModuleNotFoundError: No module named 'no_such_module'") is None
    assert _missing_extra("ModuleNotFoundError: No module named 'pytest'") is None  # installed
    assert _missing_extra("bash: line 1: no-such-cli: command not found") is None
