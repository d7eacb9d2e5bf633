"""The job model: both input shapes, defaults, and errors that name the field."""

from __future__ import annotations

import pytest

from src.errors import InvalidRequest
from src.languages import LANGUAGES
from src.request import OUTPUT_FORMATS, parse_request

B64 = {"base64": "AAAA"}


def error_of(job_input: object) -> str:
    with pytest.raises(InvalidRequest) as info:
        parse_request(job_input)
    return str(info.value)


def test_native_defaults() -> None:
    job = parse_request({"audio": {"url": "https://example.com/a.wav"}})
    options = job.request.options
    assert job.compat is None
    assert job.request.audio.url == "https://example.com/a.wav"
    assert (options.task, options.language, options.output_format) == ("transcribe", None, "all")
    assert options.beam_size is None and options.vad_filter is True
    assert options.temperatures() == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def test_temperature_schedule() -> None:
    opts = parse_request({"audio": B64, "options": {"temperature": 0.5}}).request.options
    assert opts.temperatures() == (0.5, 0.7, 0.9)
    opts = parse_request(
        {"audio": B64, "options": {"temperature": 0.3, "temperature_increment_on_fallback": None}}
    ).request.options
    assert opts.temperatures() == (0.3,)
    opts = parse_request({"audio": B64, "options": {"temperature": [0.0, 0.5]}}).request.options
    assert opts.temperatures() == (0.0, 0.5)
    assert opts.decode_options().temperatures == (0.0, 0.5)


def test_decode_options_carry_every_field() -> None:
    opts = parse_request(
        {
            "audio": B64,
            "options": {
                "task": "translate",
                "language": "de",
                "beam_size": 3,
                "best_of": 2,
                "patience": 1.5,
                "length_penalty": 0.8,
                "compression_ratio_threshold": 2.0,
                "log_prob_threshold": -0.5,
                "no_speech_threshold": 0.7,
                "condition_on_previous_text": False,
                "initial_prompt": "Glossary: Kubernetes.",
                "word_timestamps": True,
                "vad_filter": False,
                "vad_parameters": {"threshold": 0.4, "min_silence_duration_ms": 500},
            },
        }
    ).request.options.decode_options()
    assert (opts.task, opts.language, opts.beam_size, opts.best_of) == ("translate", "de", 3, 2)
    assert (opts.patience, opts.length_penalty) == (1.5, 0.8)
    assert (opts.compression_ratio_threshold, opts.log_prob_threshold) == (2.0, -0.5)
    assert opts.no_speech_threshold == 0.7 and opts.condition_on_previous_text is False
    assert opts.initial_prompt == "Glossary: Kubernetes." and opts.word_timestamps is True
    assert opts.vad_filter is False
    assert (opts.vad.threshold, opts.vad.min_silence_duration_ms) == (0.4, 500)


@pytest.mark.parametrize(
    ("job_input", "field", "expected"),
    [
        ({"audio": {"url": "https://x/a.wav"}, "optoins": {}}, "optoins", "unknown field"),
        ({"audio": B64, "options": {"beam_sise": 2}}, "options.beam_sise", "unknown field"),
        ({"audio": B64, "options": {"beam_size": 0}}, "options.beam_size", "greater than"),
        ({"audio": B64, "options": {"beam_size": "five"}}, "options.beam_size", "integer"),
        ({"audio": B64, "options": {"temperature": 1.5}}, "options.temperature", "less than"),
        ({"audio": B64, "options": {"task": "summarize"}}, "options.task", "'transcribe'"),
        ({"audio": B64, "options": {"output_format": "docx"}}, "options.output_format", "'srt'"),
        ({"audio": B64, "options": {"language": "klingon"}}, "options.language", "language code"),
        ({"audio": {"url": "file:///etc/passwd"}}, "audio.url", "http"),
        ({"audio": {"url": "https://x", "base64": "AA"}}, "audio", "exactly one"),
        ({"audio": {}}, "audio", "exactly one"),
        ({}, "audio", "exactly one"),
        ({"audio": B64, "options": {"custom_vocabulary": {"": "x"}}}, "custom_vocabulary", ""),
        ({"audio": B64, "options": {"initial_prompt": "x" * 5000}}, "initial_prompt", "at most"),
        ({"audio": "https://x/a.wav", "transcription": "docx"}, "transcription", "plain_text"),
        ({"audio": "https://x/a.wav", "beam_size": -1}, "beam_size", "greater"),
        ({"audio": "https://x/a.wav", "audio_base64": "AA"}, "audio", "exactly one"),
    ],
)
def test_errors_name_the_field(job_input: dict, field: str, expected: str) -> None:
    message = error_of(job_input)
    assert message.startswith("invalid input: ")
    assert field in message
    assert expected in message


@pytest.mark.parametrize("not_a_dict", [None, [], "audio", 3, [{"audio": B64}]])
def test_input_must_be_an_object(not_a_dict: object) -> None:
    assert "expected a JSON object" in error_of(not_a_dict)


def test_language_names_and_case_are_normalised() -> None:
    for given, code in (("German", "de"), ("EN", "en"), (" fr ", "fr")):
        job = parse_request({"audio": B64, "options": {"language": given}})
        assert job.request.options.language == code


def test_language_table_matches_both_engines() -> None:
    import whisper.tokenizer
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    assert set(LANGUAGES) == set(_LANGUAGE_CODES) == set(whisper.tokenizer.LANGUAGES)


def test_output_formats_are_the_literal() -> None:
    assert OUTPUT_FORMATS == ("all", "text", "json", "srt", "vtt")


def test_official_worker_shape_is_converted() -> None:
    job = parse_request(
        {
            "audio": "https://example.com/a.mp3",
            "model": "base",
            "transcription": "srt",
            "translate": True,
            "translation": "vtt",
            "language": "de",
            "temperature": 0.2,
            "logprob_threshold": -0.8,
            "enable_vad": False,
            "word_timestamps": True,
        }
    )
    assert job.compat is not None
    assert (job.compat.transcription, job.compat.translate, job.compat.translation) == (
        "srt",
        True,
        "vtt",
    )
    options = job.request.options
    assert job.request.audio.url == "https://example.com/a.mp3"
    assert (options.language, options.log_prob_threshold, options.vad_filter) == ("de", -0.8, False)
    assert options.word_timestamps is True and options.temperatures()[0] == 0.2


def test_official_worker_base64_shape() -> None:
    job = parse_request({"audio_base64": "AAAA"})
    assert job.compat is not None and job.request.audio.base64 == "AAAA"
