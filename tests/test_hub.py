"""The RunPod Hub listing (.runpod/hub.json, .runpod/tests.json) and the official worker's inputs.

The Hub builds the image from the Dockerfile as it is (its default build arguments) and runs
``tests.json`` on a GPU with public audio URLs. Here, without a GPU or a network: every listed
choice is a setting the worker accepts, every model offered either is the baked one or may be
downloaded, and every test input is accepted and runs on the real worker (tiny.en) with its
audio swapped for a local clip. The inputs of RunPod's official ``worker-faster_whisper`` (its own
Hub tests, as published) run unchanged, and ``"diarize": true`` works right after
``scripts/setup.sh`` with nothing set.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from src.config import Settings
from src.request import COMPAT_MODELS, parse_request
from tests.conftest import REPO_ROOT, Clip, b64_file, wer
from tests.test_dockerfile import arg_defaults, instructions

HUB = json.loads((REPO_ROOT / ".runpod" / "hub.json").read_text(encoding="utf-8"))
TESTS = json.loads((REPO_ROOT / ".runpod" / "tests.json").read_text(encoding="utf-8"))
CONFIG = HUB["config"]
ENV = {item["key"]: item for item in CONFIG["env"]}
GETTYSBURG = "https://github.com/runpod-workers/sample-inputs/raw/main/audio/gettysburg.wav"

#: the official worker's Hub tests as published (runpod-workers/worker-faster_whisper:
#: .runpod/tests.json, whose model moved from "large-v2" to "turbo", and .github/tests.json)
OFFICIAL_INPUTS = [
    {
        "audio": GETTYSBURG,
        "model": model,
        "transcription": "plain text",
        "translate": False,
        "temperature": 0,
        "best_of": 5,
        "beam_size": 5,
        "suppress_tokens": "-1",
        "condition_on_previous_text": False,
        "temperature_increment_on_fallback": 0.2,
        "compression_ratio_threshold": 2.4,
        "logprob_threshold": -1,
        "no_speech_threshold": 0.6,
    }
    for model in ("large-v2", "turbo", "base")
]
#: and its README's example
OFFICIAL_INPUTS.append({"audio": GETTYSBURG, "model": "turbo"})


# --- hub.json ----------------------------------------------------------------------------------


def test_hub_json_has_what_the_hub_requires() -> None:
    assert HUB["title"] and HUB["description"]
    assert HUB["type"] == "serverless"
    assert HUB["category"] in ("audio", "embedding", "language", "video", "image")
    assert CONFIG["runsOn"] == "GPU"
    assert isinstance(CONFIG["containerDiskInGb"], int) and CONFIG["containerDiskInGb"] >= 10
    assert CONFIG["gpuCount"] == 1 and CONFIG["gpuIds"]
    for preset in CONFIG["presets"]:
        assert preset["name"] and set(preset["defaults"]) <= set(ENV), preset["name"]


def _cuda_of_the_base() -> tuple[int, int]:
    base = next(rest for keyword, rest in instructions() if keyword == "FROM")
    match = re.match(r"nvidia/cuda:(\d+)\.(\d+)", base)
    assert match, base
    return int(match.group(1)), int(match.group(2))


def test_gpus_allowed_run_the_images_cuda() -> None:
    """A host whose driver is older than the base image's CUDA cannot start the image."""
    base = _cuda_of_the_base()
    for config in (CONFIG, TESTS["config"]):
        versions = [tuple(int(n) for n in v.split(".")) for v in config["allowedCudaVersions"]]
        assert versions and all(v >= base for v in versions), config["allowedCudaVersions"]


def _value(key: str, value: Any) -> str:
    """What the Hub puts in the environment for ``value`` of ``key``'s input."""
    spec = ENV[key].get("input", {})
    if spec.get("type") == "boolean":
        return str(spec["trueValue"] if value else spec["falseValue"])
    return str(value)


def _environments() -> list[tuple[str, dict[str, str]]]:
    """Every preset, and every single choice on top of the defaults, as environments."""
    defaults = {
        key: str(item["value"]) if "value" in item else _value(key, item["input"]["default"])
        for key, item in ENV.items()
    }
    cases = [("defaults", defaults)]
    for preset in CONFIG["presets"]:
        chosen = {k: _value(k, v) for k, v in preset["defaults"].items()}
        cases.append((preset["name"], {**defaults, **chosen}))
    for key, item in ENV.items():
        for option in item.get("input", {}).get("options", []):
            cases.append((f"{key}={option['value']}", {**defaults, key: str(option["value"])}))
    return cases


@pytest.mark.parametrize(("name", "env"), _environments(), ids=[n for n, _ in _environments()])
def test_every_choice_is_a_setting_the_worker_accepts(name: str, env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    assert settings.model == env["WHISPER_MODEL"]
    assert settings.engine == arg_defaults()["WHISPER_ENGINE"], (
        "the Hub builds with the default build arguments: only that engine is installed"
    )


def test_only_the_baked_model_starts_without_a_download() -> None:
    baked = arg_defaults()["WHISPER_MODEL"]
    model = ENV["WHISPER_MODEL"]["input"]
    assert model["default"] == baked
    offline = _value("HF_HUB_OFFLINE", ENV["HF_HUB_OFFLINE"]["input"]["default"])
    assert offline == "1", "by default a cold start never downloads"
    for option in model["options"]:
        assert option["value"] in COMPAT_MODELS, option  # a name faster-whisper downloads
        assert ("baked" in option["label"]) == (option["value"] == baked), option
    for preset in CONFIG["presets"]:
        defaults = preset["defaults"]
        if defaults["WHISPER_MODEL"] != baked:
            assert _value("HF_HUB_OFFLINE", defaults["HF_HUB_OFFLINE"]) == "0", preset["name"]
            assert "download" in preset["name"], preset["name"]


# --- tests.json and the official worker's inputs ------------------------------------------


def test_tests_json_has_what_the_hub_requires() -> None:
    assert TESTS["tests"][0]["input"] == OFFICIAL_INPUTS[1], "the official worker's own test"
    for test in TESTS["tests"]:
        assert test["name"] and isinstance(test["input"], dict)
        assert isinstance(test["timeout"], int) and test["timeout"] >= 10_000
    assert TESTS["config"]["gpuTypeId"] and TESTS["config"]["gpuCount"] == 1


def audio_urls(job_input: dict[str, Any]) -> list[str]:
    if isinstance(job_input.get("audio"), str):
        return [job_input["audio"]]
    if "audio" in job_input:
        return [job_input["audio"]["url"]]
    return [item["url"] for item in job_input["audios"]]


def with_local_audio(job_input: dict[str, Any], encoded: str) -> dict[str, Any]:
    """The same input with each audio URL replaced by a local clip, as base64."""
    swapped = dict(job_input)
    if isinstance(swapped.get("audio"), str):
        del swapped["audio"]
        swapped["audio_base64"] = encoded
    elif "audio" in swapped:
        swapped["audio"] = {"base64": encoded}
    else:
        swapped["audios"] = [{"name": a["name"], "base64": encoded} for a in swapped["audios"]]
    return swapped


ALL_INPUTS = [(t["name"], t["input"]) for t in TESTS["tests"]]
ALL_INPUTS += [(f"official-{i}", job) for i, job in enumerate(OFFICIAL_INPUTS)]
#: run for real: the Hub's tests (the first is the official worker's own, with "turbo") and the
#: official README's example; the other official inputs differ from the first only in ``model``
RUN_INPUTS = [(t["name"], t["input"]) for t in TESTS["tests"]]
RUN_INPUTS += [("official-readme-example", OFFICIAL_INPUTS[-1])]


@pytest.mark.parametrize(("name", "job_input"), ALL_INPUTS, ids=[n for n, _ in ALL_INPUTS])
def test_every_input_is_accepted_as_it_is(name: str, job_input: dict[str, Any]) -> None:
    for url in audio_urls(job_input):
        assert url.startswith("https://"), url  # public: the worker refuses private addresses
    parse_request(job_input)


def texts_of(output: dict[str, Any]) -> list[str]:
    """The transcript text(s) of a job's output, in either shape; fails on any error."""
    assert "error" not in output, output["error"]
    if "results" in output:
        for result in output["results"]:
            assert "error" not in result, result["error"]
        return [r["transcription"]["text"] for r in output["results"]]
    if isinstance(output.get("transcription"), str):  # the official worker's shape
        return [output["transcription"]]
    return [output["transcription"]["text"]]


@pytest.mark.parametrize(("name", "job_input"), RUN_INPUTS, ids=[n for n, _ in RUN_INPUTS])
def test_the_hub_tests_run_on_the_real_worker(
    name: str,
    job_input: dict[str, Any],
    handler_module: ModuleType,
    jfk: Clip,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the environment scripts/setup.sh leaves: no model or speaker-model variable set."""
    for variable in ("MODEL_DIR", "DIARIZATION_MODEL"):
        monkeypatch.delenv(variable, raising=False)
    job = {"id": f"hub-{name}", "input": with_local_audio(job_input, b64_file(jfk.path))}
    output = handler_module.handler(job)
    for text in texts_of(output):
        assert wer(jfk.text, text) < 0.2, text
    if job_input.get("options", {}).get("diarize"):
        segments = output["transcription"]["segments"]
        assert segments and all(s["speaker"].startswith("SPEAKER_") for s in segments)


def test_diarization_works_after_the_set_up_with_nothing_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """scripts/setup.sh bakes the speaker model where the worker looks outside the image."""
    from src.diarization.pipeline import default_encoder_path
    from src.speakers import speaker_encoder

    for variable in ("MODEL_DIR", "DIARIZATION_MODEL"):
        monkeypatch.delenv(variable, raising=False)
    path = default_encoder_path()
    assert path == REPO_ROOT / "models" / "diarization" / "resemblyzer-ge2e.npz"
    assert path.is_file(), "run bash scripts/setup.sh: it bakes the speaker model there"
    assert speaker_encoder() is not None
    assert "bake_diarizer.py --dest models" in Path(REPO_ROOT / "scripts" / "setup.sh").read_text()


# --- the official worker's shape, as it accepts it ---------------------------------------------

BASE = {"audio": GETTYSBURG}


@pytest.mark.parametrize(
    ("extra", "transcription", "translation"),
    [
        ({"transcription": "plain text"}, "plain_text", "plain_text"),
        (
            {"transcription": "Plain-Text", "translation": "FORMATTED TEXT"},
            "plain_text",
            "formatted_text",
        ),
        ({"transcription": "SRT", "translate": True, "translation": " vtt "}, "srt", "vtt"),
        ({"transcription": "formatted_text"}, "formatted_text", "plain_text"),
    ],
)
def test_format_spellings_its_clients_send(
    extra: dict[str, Any], transcription: str, translation: str
) -> None:
    job = parse_request({**BASE, **extra})
    assert job.compat is not None
    assert (job.compat.transcription, job.compat.translation) == (transcription, translation)


@pytest.mark.parametrize(
    "job_input",
    [
        {"audio": "", "audio_base64": "AAAA"},  # empty counts as absent, as there
        {"audio": None, "audio_base64": "AAAA"},
        {"audio": GETTYSBURG, "audio_base64": ""},
        {**BASE, "model": "large-v3"},
        {**BASE, "model": "distil-large-v3"},
        {**BASE, "model": None},
        {**BASE, "suppress_tokens": "-1,50363"},
        {**BASE, "suppress_tokens": [-1]},
        {**BASE, "temperature": 0, "patience": 1, "logprob_threshold": -1, "length_penalty": 0},
        {**BASE, "language": None, "initial_prompt": None, "enable_vad": False},
        {**BASE, "word_timestamps": True, "translate": True},
    ],
)
def test_what_the_official_worker_accepts_is_accepted(job_input: dict[str, Any]) -> None:
    assert parse_request(job_input).compat is not None


@pytest.mark.parametrize(
    ("job_input", "field", "expected"),
    [
        ({**BASE, "transcription": "txt"}, "transcription", "'plain_text'"),
        ({**BASE, "model": "gpt-4"}, "model", "Whisper model name"),
        ({**BASE, "suppress_tokens": "all"}, "suppress_tokens", "token ids"),
        ({**BASE, "audio_base64": "AAAA"}, "input", "exactly one"),
        ({"audio": "", "model": "base"}, "input", "exactly one"),
        ({**BASE, "temperature": 1.5}, "temperature", "less than"),
        ({**BASE, "enable_vad": "maybe"}, "enable_vad", "boolean"),
        ({**BASE, "bogus": 1}, "bogus", "unknown field"),
    ],
)
def test_real_mistakes_are_still_refused(
    job_input: dict[str, Any], field: str, expected: str
) -> None:
    from src.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as caught:
        parse_request(job_input)
    message = str(caught.value)
    assert f"{field}:" in message and expected in message, message
