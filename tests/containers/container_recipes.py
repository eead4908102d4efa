"""Read containers/cass.def and containers/Containerfile into comparable facts, and compare the
versions they name with requirements.lock (the drift checks of test_recipes.py)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEF = REPO / "containers" / "cass.def"
CONTAINERFILE = REPO / "containers" / "Containerfile"
LOCK = REPO / "requirements.lock"
PIN = re.compile(r"(?<![\w.-])([A-Za-z][\w.-]*)==([\w.+!-]+)")
# label -> how to read its value off the lock
LABEL_PINS = {"cass.torch": "torch", "cass.torchvision": "torchvision"}


@dataclass
class Recipe:
    """What one recipe builds: base image, files copied, commands run, environment, labels."""

    base_image: str
    files: dict[str, str]  # source (repo-relative) -> destination in the image
    run: str  # every build-time command, joined
    env: dict[str, str]
    labels: dict[str, str]
    entry: str  # what `apptainer run` / `podman run` executes
    text: str = field(repr=False)


def def_sections(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """An Apptainer definition as (header keys, section name -> body)."""
    parts = re.split(r"^%(\w+)[^\n]*\n", text, flags=re.MULTILINE)
    header = {}
    for line in parts[0].splitlines():
        if line.strip() and not line.lstrip().startswith("#") and ":" in line:
            key, value = line.split(":", 1)
            header[key.strip().lower()] = value.split("#")[0].strip()
    return header, {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _lines(body: str) -> list[str]:
    return [s.strip() for s in body.splitlines() if s.strip() and not s.strip().startswith("#")]


def read_def(path: Path = DEF) -> Recipe:
    text = path.read_text()
    header, sections = def_sections(text)
    arguments = dict(line.split("=", 1) for line in _lines(sections.get("arguments", "")))
    base = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: arguments.get(m[1], m[0]), header["from"])
    env = {}
    for line in _lines(sections.get("environment", "")):
        key, value = line.removeprefix("export ").split("=", 1)
        env[key] = value
    return Recipe(
        base_image=base,
        files=dict(line.split(None, 1) for line in _lines(sections.get("files", ""))),
        run=sections.get("post", ""),
        env=env,
        labels=dict(line.split(None, 1) for line in _lines(sections.get("labels", ""))),
        entry=" ".join(_lines(sections.get("runscript", ""))),
        text=text,
    )


def containerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(_lines(text)))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in _lines(joined)]


def read_containerfile(path: Path = CONTAINERFILE) -> Recipe:
    text = path.read_text()
    args, files, env, labels, run, entry, base = {}, {}, {}, {}, [], "", ""
    for op, rest in containerfile_instructions(text):
        if op == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            args[key] = value
        elif op == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), rest)
        elif op == "COPY":
            *sources, dest = shlex.split(rest)
            for source in sources:
                files[source] = dest if len(sources) == 1 else f"{dest.rstrip('/')}/{source}"
        elif op in ("ENV", "LABEL"):
            pairs = dict(item.split("=", 1) for item in shlex.split(rest))
            (env if op == "ENV" else labels).update(pairs)
        elif op == "RUN":
            run.append(rest)
        elif op == "ENTRYPOINT":
            entry = " ".join(json.loads(rest))
    return Recipe(base, files, "\n".join(run), env, labels, entry, text)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Lock:
    """requirements.lock: exact pins, direct references, the Python version it was frozen on."""

    pins: dict[str, str]  # name -> version
    references: dict[str, str]  # name -> URL (``name @ file:///...`` as pip freeze writes them)
    python: str  # "3.11"

    @classmethod
    def parse(cls, text: str) -> Lock:
        found = re.search(r"Python (\d+\.\d+)", text)
        lines = "\n".join(_lines(text))
        pins = {normalise(name): version for name, version in PIN.findall(lines)}
        refs = re.findall(r"^([A-Za-z][\w.-]*) @ (\S+)", lines, re.MULTILINE)
        return cls(pins, {normalise(name): url for name, url in refs}, found[1] if found else "?")

    def names(self) -> set[str]:
        return set(self.pins) | set(self.references)

    def cuda(self) -> str:
        """CUDA major.minor of the runtime the lock's torch uses (nvidia-cuda-runtime)."""
        version = self.pins.get("nvidia-cuda-runtime", "?")
        return ".".join(version.split(".")[:2])


def pinned_versions(recipe: Recipe) -> dict[str, str]:
    """Every version a recipe names itself: ``pkg==x`` literals, version labels, base Python."""
    named = {f"{normalise(n)}==": v for n, v in PIN.findall(recipe.text)}
    for label in (*LABEL_PINS, "cass.python", "cass.cuda"):
        if label in recipe.labels:
            named[f"label {label}"] = recipe.labels[label]
    python_base = re.search(r"(?:^|/)python:(\d+\.\d+)", recipe.base_image)
    if python_base:
        named["base image python"] = python_base[1]
    return named


def drift(recipe: Recipe, lock: Lock) -> list[str]:
    """One line per version the recipe names that the lock does not: empty when in step."""
    expected = {f"{name}==": version for name, version in lock.pins.items()}
    expected |= {f"label {label}": lock.pins.get(pkg, "?") for label, pkg in LABEL_PINS.items()}
    expected |= {
        "base image python": lock.python,
        "label cass.python": lock.python,
        "label cass.cuda": lock.cuda(),
    }
    problems = []
    for what, version in sorted(pinned_versions(recipe).items()):
        if what.endswith("==") and what not in expected:
            problems.append(f"{what[:-2]}=={version} is pinned but not in requirements.lock")
        elif expected.get(what) != version:
            shown = f"{what}{version}" if what.endswith("==") else f"{what}: {version}"
            problems.append(f"{shown}, but requirements.lock says {expected.get(what)}")
    if not re.search(r"(?:^|/)python:\d", recipe.base_image):
        problems.append(f"base image {recipe.base_image!r} is not a python:X.Y image")
    return problems


def declared_dependencies(pyproject: str) -> set[str]:
    """Names in pyproject.toml's ``[project] dependencies`` and ``[project.optional-dependencies]``
    (read without tomllib: it is Python 3.11+, the project 3.10+)."""
    parts = re.split(r"^\[([^\]\n]+)\]\s*$", pyproject, flags=re.MULTILINE)
    tables = {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}
    lists = re.findall(r"^dependencies = \[(.*?)\]", tables.get("project", ""), re.M | re.S)
    lists += re.findall(
        r"^\S+ = \[(.*?)\]", tables.get("project.optional-dependencies", ""), re.M | re.S
    )
    return {
        normalise(re.split(r"[ ;<>=!~\[@]", requirement, maxsplit=1)[0])
        for block in lists
        for requirement in re.findall(r'"([^"]+)"', block)
    }
