"""Every third-party module the worker or the client imports is pinned in that package's own
requirements, exactly (``==``).

The imports are read with ``ast`` (lazy ones inside functions too), mapped to the distributions
that provide them by ``importlib.metadata.packages_distributions()``, and looked up in the pins:
``builder/requirements.txt`` for the worker (``src/``, ``handler.py``; torch and openai-whisper are
pinned by the Dockerfile's build arguments, see that file's comment), ``client/pyproject.toml``
for the client. A module that arrives only as someone else's dependency is at whatever version
that dependency allows: a rebuild could change it.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import tomllib

from tests.conftest import REPO_ROOT
from tests.test_dockerfile import arg_defaults

#: distributions the Dockerfile installs apart, and the build argument holding each pin
DOCKERFILE_PINS = {"torch": "TORCH_VERSION", "openai-whisper": "OPENAI_WHISPER_VERSION"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(files: Iterable[Path]) -> dict[str, set[str]]:
    """Top-level module name -> the files importing it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                found.setdefault(top, set()).add(path.relative_to(REPO_ROOT).as_posix())
    return found


def third_party(modules: dict[str, set[str]], first_party: set[str]) -> dict[str, set[str]]:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    return {m: files for m, files in modules.items() if m not in stdlib | first_party}


def requirement_pins(lines: Iterable[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        assert match, f"not pinned exactly: {line!r}"
        pins[normalise(match.group(1))] = match.group(2)
    return pins


def unpinned(modules: dict[str, set[str]], pins: dict[str, str]) -> list[str]:
    distributions = packages_distributions()
    problems = []
    for module, files in sorted(modules.items()):
        provided_by = {normalise(d) for d in distributions.get(module, [])}
        if not provided_by:
            problems.append(f"{module} (imported by {sorted(files)}) is not installed")
        elif not provided_by & set(pins):
            problems.append(
                f"{module} ({'/'.join(sorted(provided_by))}, imported by {sorted(files)})"
            )
    return problems


def worker_files() -> list[Path]:
    return [REPO_ROOT / "handler.py", *sorted((REPO_ROOT / "src").rglob("*.py"))]


def client_files() -> list[Path]:
    return sorted((REPO_ROOT / "client" / "whisper_client").rglob("*.py"))


def client_pins() -> dict[str, str]:
    project = tomllib.loads((REPO_ROOT / "client" / "pyproject.toml").read_text("utf-8"))
    requirements = list(project["project"]["dependencies"])
    for extra in project["project"].get("optional-dependencies", {}).values():
        requirements += extra
    return requirement_pins(requirements)


def test_the_walk_finds_the_imports_it_checks() -> None:
    """The walk itself: known direct imports of each package are found."""
    worker = third_party(imported_modules(worker_files()), {"src", "handler"})
    assert {"faster_whisper", "numpy", "pydantic", "runpod", "fastapi"} <= set(worker)
    client = third_party(imported_modules(client_files()), {"whisper_client"})
    assert {"httpx", "jsonschema", "tqdm", "uvicorn", "fastapi"} <= set(client)


def test_every_module_the_worker_imports_is_pinned() -> None:
    pins = requirement_pins(
        (REPO_ROOT / "builder" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    )
    defaults = arg_defaults()
    for distribution, argument in DOCKERFILE_PINS.items():
        assert re.fullmatch(r"\d[\w.]*", defaults[argument]), argument
        pins[distribution] = defaults[argument]
    modules = third_party(imported_modules(worker_files()), {"src", "handler"})
    problems = unpinned(modules, pins)
    assert not problems, "unpinned in builder/requirements.txt:\n" + "\n".join(problems)


def test_every_module_the_client_imports_is_pinned_and_the_worker_is_not_one() -> None:
    modules = imported_modules(client_files())
    assert not {"src", "handler", "builder"} & set(modules), "the client imports the worker"
    problems = unpinned(third_party(modules, {"whisper_client"}), client_pins())
    assert not problems, "unpinned in client/pyproject.toml:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "where",
    [
        "builder/requirements.txt",
        "builder/requirements-openai-whisper.txt",  # openai-whisper's image only
        "client/pyproject.toml",
    ],
)
def test_pins_are_the_tested_versions(where: str) -> None:
    from importlib.metadata import version

    if where == "client/pyproject.toml":
        pins = client_pins()
    else:
        pins = requirement_pins((REPO_ROOT / where).read_text(encoding="utf-8").splitlines())
    for name, pinned in pins.items():
        assert version(name).split("+")[0] == pinned, f"{name}: pinned {pinned} in {where}"
