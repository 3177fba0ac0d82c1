"""Layout and the dependency direction: entry points -> worker -> scheduler, providers -> model layer."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sendq", "worker", "scheduler", "providers")
#: modules of the sendq package that are entry points (may import anything), with the HTTP API package
#: (``sendq/api/``) and the CLI modules (``sendq/cli*.py``); the rest is the model layer
ENTRY_POINTS = {"sendq/cli.py", "sendq/dev.py", "sendq/__main__.py"}
#: what each layer may import from the project
ALLOWED = {
    "model": {"sendq"},
    "providers": {"sendq", "providers"},
    "scheduler": {"sendq", "scheduler"},
    "worker": {"sendq", "scheduler", "providers", "worker"},
    "entry": set(PACKAGES),
}


def layer_of(path: Path) -> str:
    rel = path.relative_to(ROOT).as_posix()
    if rel in ENTRY_POINTS or rel.startswith(("sendq/api/", "sendq/cli")):
        return "entry"
    top = rel.split("/")[0]
    return "model" if top == "sendq" else top


def project_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


SOURCES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_dependency_direction(path: Path) -> None:
    """No module imports a layer above its own."""
    layer = layer_of(path)
    assert project_imports(path) <= ALLOWED[layer], f"{path.name} ({layer}) imports {project_imports(path)}"


def test_required_files_exist() -> None:
    """The top-level layout the product card fixes."""
    for name in ("pyproject.toml", "README.md", "CHANGELOG.md", "docker-compose.yml", "Makefile", ".ci/run"):
        assert (ROOT / name).is_file(), name
    for pkg in (*PACKAGES, "tests"):
        assert (ROOT / pkg / "__init__.py").is_file(), pkg


def test_readme_status_diagram_matches_table() -> None:
    """The README's status diagram lists exactly the transitions of the table."""
    from sendq.status import TRANSITIONS

    text = (ROOT / "README.md").read_text()
    block = text.split("```mermaid", 1)[1].split("```", 1)[0]
    edges = set()
    for line in block.splitlines():
        if "-->" in line and "[*]" not in line:
            left, right = line.split("-->")
            edges.add((left.strip(), right.split(":")[0].strip()))
    expected = {(a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets}
    assert edges == expected


def test_readme_lists_every_setting() -> None:
    """The README's configuration table names every SENDQ_* variable, nested ones included."""
    from pydantic import BaseModel

    from sendq.settings import Settings

    names = []
    for name, field in Settings.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names += [f"SENDQ_{name}__{sub}".upper() for sub in kind.model_fields]
        else:
            names.append(f"SENDQ_{name}".upper())
    text = (ROOT / "README.md").read_text()
    assert [n for n in names if f"`{n}`" not in text] == []
