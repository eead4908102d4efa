"""Every command in README.md and docs/ is checked, cheaply but for real, so the pages cannot
drift from the code: a shell line in a ```bash block is taken apart as a shell would (``\\``
continuations joined, comments dropped) and checked by what it runs —

- ``make X [VAR=v]``: ``make -n X`` accepts it (the target exists);
- ``python -m cass_hpc.run …`` (and ``apptainer run cass.sif …``, whose runscript it is): the
  command line passes the toolkit's own check of keys and group choices, composes with Hydra (a
  sweep ``a,b`` with its first value) and gives a valid cell (``spec_from_config``);
- ``python -m MODULE …``: the module's own argument parser accepts the arguments (its ``main`` is
  called with ``parse_args`` stopped right after parsing, so nothing runs);
- scripts (``slurm/cluster.sh``) exist and are executable; ``apptainer test`` has a ``%test``.

Every relative link must point to an existing file (and a ``#fragment`` to a heading in it);
docs/results/ is written by the task targets, so links into it are allowed before it exists.
A line the test does not know how to check fails: teach it, or move the line out of ```bash.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import subprocess
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from omegaconf import OmegaConf

from cass_hpc.overrides import _options, _parse, check_command_line
from cass_hpc.run import spec_from_config

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
RESULTS = REPO / "docs" / "results"  # another job writes it: neither read nor required here
PAGES = [REPO / "README.md"] + sorted(
    p for p in (REPO / "docs").rglob("*.md") if RESULTS not in p.parents
)
SHELL_FENCES = {"bash", "sh", "shell", "console"}
PYTHONS = {"python", "python3", ".venv/bin/python", "$(PY)"}
SKIPPED = {"export", "cd"}  # environment lines: nothing to check
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


def shell_lines(page: Path) -> Iterator[tuple[int, str]]:
    """(line number, command) of every shell line in the page's ```bash blocks, continuations
    joined, comments and blank lines dropped."""
    fence, pending, start = None, "", 0
    for number, line in enumerate(page.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip().lower()
            continue
        if fence not in SHELL_FENCES:
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        command, pending = pending + stripped, ""
        words = shlex.split(command, comments=True)
        if words:
            yield start, shlex.join(words)


class _Parsed(Exception):
    """Raised by the patched ``parse_args`` once a module's parser accepted the arguments."""


def check_module(module: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> str | None:
    """None if ``python -m module args`` gets past the module's argument parser."""
    try:
        target = importlib.import_module(module)
        if not hasattr(target, "main"):  # a package: its __main__ holds the command
            target = importlib.import_module(f"{module}.__main__")
    except ImportError as err:
        return f"no module {module} ({err})"
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, *a: object, **k: object) -> None:
        raise _Parsed(original(self, *a, **k))

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        try:
            target.main(args)
        except _Parsed as parsed:
            namespace = parsed.args[0]
        except SystemExit as exit_:
            return f"its argument parser refused {args} (exit {exit_.code})"
        else:
            return "its main() returned without parsing arguments"
    if module == "cass_hpc.weights":  # the grid's overrides, as for run -m
        return check_run(namespace.overrides)
    return None


def check_run(argv: list[str]) -> str | None:
    """None if a ``cass_hpc.run`` command line composes into a valid cell."""
    args, unknown = get_args_parser().parse_known_args(argv)
    if unknown:
        return f"Hydra's parser does not know {unknown}"
    try:
        check_command_line(argv, CONF)
        first = [_options(o)[0] for o in _parse(args.overrides)]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", first, return_hydra_config=True)
        spec_from_config(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
    except Exception as err:  # noqa: BLE001 - any refusal is the finding
        return f"{type(err).__name__}: {str(err).splitlines()[0]}"
    return None


def check_make(words: list[str]) -> str | None:
    proc = subprocess.run(
        ["make", "-n", "-C", str(REPO), *words], capture_output=True, text=True, timeout=20
    )
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


def check_line(command: str, monkeypatch: pytest.MonkeyPatch) -> str | None:
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value command
        words = words[1:]
    head, rest = words[0], words[1:]
    if head in SKIPPED:
        return None
    if head == "make":
        return check_make(rest)
    if head in PYTHONS and rest[:1] == ["-m"] and len(rest) > 1:
        module, args = rest[1], rest[2:]
        if module == "cass_hpc.run":
            return check_run(args)
        return check_module(module, args, monkeypatch)
    if head == "apptainer" and rest[:1] == ["run"]:  # the image's runscript is cass_hpc.run
        return check_run(rest[2:])
    if head == "apptainer" and rest[:1] == ["test"]:
        return None if "%test" in (REPO / "containers" / "cass.def").read_text() else "no %test"
    script = REPO / head
    if "/" in head and script.is_file():
        return None if script.stat().st_mode & 0o111 else f"{head} is not executable"
    return "the docs test does not know how to check this command; teach it in test_docs.py"


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def broken_links(page: Path) -> Iterator[tuple[int, str]]:
    in_code = False
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, fragment = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if file == RESULTS or RESULTS in file.parents:
                continue
            if not file.exists():
                yield number, f"{target}: no such file"
            elif fragment and file.suffix == ".md" and fragment not in anchors(file):
                yield number, f"{target}: no heading #{fragment} in {file.relative_to(REPO)}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_command_in_the_page_is_accepted(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failures = [
        f"{page_id(page)}:{number}: {command}\n    {problem}"
        for number, command in shell_lines(page)
        if (problem := check_line(command, monkeypatch))
    ]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_in_the_page_resolves(page: Path) -> None:
    failures = [f"{page_id(page)}:{n}: {problem}" for n, problem in broken_links(page)]
    assert not failures, "\n".join(failures)


def test_the_pages_have_commands_to_check() -> None:
    """The parser finds the README's two commands (a broken fence reader would pass vacuously)."""
    commands = [command for _, command in shell_lines(REPO / "README.md")]
    assert "make demo" in commands and "make test" in commands, commands
