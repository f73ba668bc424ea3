"""Every third-party module the package and the benchmarks import is declared in pyproject.toml
(the package's dependencies, or the extra its users install) and pinned in requirements.txt."""

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported(folder: str) -> set[str]:
    """Top-level modules imported anywhere under ``folder``, standard library and local aside."""
    names = set()
    for file in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    local = {p.stem for p in (ROOT / folder).glob("*.py")} | {"xlcore"}
    return {n for n in names if n not in sys.stdlib_module_names and n not in local}


def _distributions(modules: set[str]) -> set[str]:
    owners = md.packages_distributions()
    return {_name(d) for m in modules for d in owners.get(m, [m])}


@pytest.mark.parametrize(
    ("folder", "groups"), [("xlcore", ("book",)), ("benchmarks", ("book", "bench"))]
)
def test_every_imported_package_is_declared_and_pinned(folder, groups):
    declared = {_name(r) for r in PROJECT["dependencies"]}
    for group in groups:
        declared |= {_name(r) for r in PROJECT["optional-dependencies"][group]}
    missing = _distributions(_imported(folder)) - declared
    assert not missing, f"{folder} imports undeclared packages: {sorted(missing)}"
    pinned = {_name(line) for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line and not line.startswith("#")}  # fmt: skip
    every = declared | {_name(r) for rs in PROJECT["optional-dependencies"].values() for r in rs}
    assert not every - pinned, f"not pinned in requirements.txt: {sorted(every - pinned)}"
