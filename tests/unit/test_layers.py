"""The layout is the architecture: each layer imports only the layers below it, and nothing
that ships in the image imports the local harness, the simulator or the tests.

  shared.clock                  time as a dependency (nothing of the project)
  shared.duo                    the Duo Admin API client: no Google Cloud, no pipeline
  shared.pipeline               the pipeline's pure rules: no Google Cloud, no I/O
  shared.gcp                    the Google Cloud adapters that do the rules' I/O
  shared.secops                 what SecOps makes of the bucket
  services                      the three services' HTTP surfaces and their own work
  harness, simulator, tests     local only, never in the image
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("shared", "services", "harness", "simulator", "tests")
LOCAL_ONLY = ("harness", "simulator", "tests")

# What each layer may import from the project (a module may always import its own layer).
ALLOWED: dict[str, tuple[str, ...]] = {
    "shared": (),  # a new top-level module of shared/ must first be given a layer here
    "shared.clock": (),
    "shared.duo": ("shared.clock",),
    "shared.pipeline": ("shared.clock", "shared.duo"),
    "shared.gcp": ("shared.clock", "shared.duo", "shared.pipeline"),
    "shared.secops": ("shared.clock", "shared.duo", "shared.pipeline", "shared.gcp"),
    "services": ("shared",),
}
# Third-party packages a pure layer must not reach for.
CLOUD = ("google", "flask", "gunicorn")


def _layer(module: str) -> str:
    return next(layer for layer in sorted(ALLOWED, key=len, reverse=True) if _under(module, layer))


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, *, at_run_time: bool = False) -> set[str]:
    """Every module a source imports (or imports from), at the top or inside a function;
    ``at_run_time`` leaves out what only type checkers import (``if TYPE_CHECKING:``)."""
    tree = ast.parse(source)
    if at_run_time:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
                node.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def production_modules() -> list[Path]:
    return sorted(
        path
        for package in ("shared", "services")
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def violations(module: str, source: str) -> list[str]:
    layer = _layer(module)
    allowed = (layer, *ALLOWED[layer])
    wrong = []
    for name in sorted(imports_of(source)):
        top = name.split(".")[0]
        if top in LOCAL_ONLY:
            wrong.append(f"{module} imports {name}, which is not in the production image")
        elif top in PROJECT and not any(_under(name, ok) for ok in allowed):
            wrong.append(f"{module} ({layer}) imports {name}")
        elif top in CLOUD and layer in ("shared.clock", "shared.duo", "shared.pipeline"):
            wrong.append(f"{module} ({layer}) imports {name}: this layer does no Cloud I/O")
    return wrong


@pytest.mark.parametrize("path", production_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_module_imports_only_the_layers_below_it(path: Path) -> None:
    assert violations(_module_name(path), path.read_text()) == []


def test_the_rule_catches_a_module_that_breaks_it() -> None:
    # The check must be able to fail: a Duo-layer module that imports Firestore, the pipeline
    # and (inside a function) the harness is caught on each count.
    source = (
        "import google.cloud.firestore\n"
        "from shared.clock import Clock\n"
        "from shared.pipeline.windows import Claim\n"
        "def later():\n"
        "    import harness.demo\n"
    )
    assert violations("shared.duo.probe", source) == [
        "shared.duo.probe (shared.duo) imports google.cloud.firestore: "
        "this layer does no Cloud I/O",
        "shared.duo.probe imports harness.demo, which is not in the production image",
        "shared.duo.probe (shared.duo) imports shared.pipeline.windows",
    ]


def _transitive_imports(module: str) -> set[str]:
    """Every module reached from ``module`` through the project's own imports."""
    reached: set[str] = set()
    read: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = _source_path(name)
        if name in read or path is None:
            continue
        read.add(name)
        for imported in imports_of(path.read_text(), at_run_time=True):
            reached.add(imported)
            if imported.split(".")[0] in PROJECT:
                todo.append(imported)
    return reached


def _source_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_the_settings_check_needs_only_the_standard_library() -> None:
    # cloudbuild.yaml checks the deployment's settings with services.settings in a bare Python
    # image, before any package is installed.
    third_party = {
        name
        for name in _transitive_imports("services.settings")
        if name.split(".")[0] not in (*PROJECT, "__future__")
        and name.split(".")[0] not in sys.stdlib_module_names
    }
    assert third_party == set()
