"""OpenAI's ``semantic_vad``: how long a pause must last to end a turn, from what was said.

OpenAI's semantic VAD ends a turn when a classifier judges the speaker done, and waits longer
when the words so far trail off. Here the words are the running hypothesis of the turn (the
speculative final decode made when a pause opens, ``src.live.session``), and the judgement is
read from its end:

- ``finished``: it ends with ``.``, ``?`` or ``!`` and its last word is not a filler or a word
  that cannot end a sentence;
- ``unfinished``: it ends with a filler (``um``, ``uh``, ...), a conjunction, an article or a
  preposition (``and``, ``but``, ``the``, ``to``, ...), a comma or dash, or an ellipsis;
- ``unknown``: no hypothesis covering the pause yet, or neither of the above (no final
  punctuation on an ordinary word).

Whisper punctuates a fragment as readily as a sentence ("I went to the store." for a speaker
about to go on), so ``finished`` alone is weak evidence; the waits below keep ``low`` and
``medium`` well above a 600 ms mid-sentence pause even when the fragment reads as finished (the
VAD's pause starts a little before the silence does, as a word's last sound fades, so 800 ms
left too thin a margin), and only ``high`` ends a turn sooner than ``server_vad``'s 500 ms
default. ``bench/semantic_vad.py`` measures it: no turn cut at a 600 ms pause with ``low``,
``medium`` or ``auto``.

The waits (ms of silence after the speech stops), each capped by OpenAI's documented maximum
for the eagerness (``low`` 8 s, ``medium`` 4 s, ``high`` 2 s; ``auto`` is ``medium``):

=========  ========  =======  ==========
eagerness  finished  unknown  unfinished
=========  ========  =======  ==========
high       300       600      2000
medium     1000      1500     4000
low        1200      2000     8000
=========  ========  =======  ==========
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

Eagerness = Literal["low", "medium", "high", "auto"]
EAGERNESS: tuple[str, ...] = get_args(Eagerness)
Verdict = Literal["finished", "unknown", "unfinished"]

#: OpenAI's maximum wait for each eagerness (ms)
MAX_WAIT_MS: dict[str, int] = {"low": 8000, "medium": 4000, "high": 2000}


@dataclass(frozen=True)
class Waits:
    finished: int
    unknown: int
    unfinished: int

    def for_verdict(self, verdict: Verdict) -> int:
        return {
            "finished": self.finished,
            "unknown": self.unknown,
            "unfinished": self.unfinished,
        }[verdict]


WAITS: dict[str, Waits] = {
    "high": Waits(finished=300, unknown=600, unfinished=MAX_WAIT_MS["high"]),
    "medium": Waits(finished=1000, unknown=1500, unfinished=MAX_WAIT_MS["medium"]),
    "low": Waits(finished=1200, unknown=2000, unfinished=MAX_WAIT_MS["low"]),
}

#: words after which a sentence goes on: fillers, conjunctions, articles, possessives and
#: prepositions that rarely end a sentence (English; other languages read as ``unknown``
#: unless they end in a comma or an ellipsis)
TRAILING_WORDS = frozenset(
    {
        "um",
        "umm",
        "uh",
        "uhh",
        "er",
        "erm",
        "ah",
        "hmm",
        "mm",
        "and",
        "but",
        "or",
        "because",
        "nor",
        "if",
        "than",
        "which",
        "who",
        "whose",
        "whom",
        "where",
        "when",
        "while",
        "although",
        "though",
        "unless",
        "until",
        "whether",
        "the",
        "a",
        "an",
        "my",
        "your",
        "his",
        "her",
        "our",
        "their",
        "every",
        "to",
        "of",
        "at",
        "by",
        "for",
        "with",
        "from",
        "into",
        "onto",
        "toward",
        "towards",
        "upon",
        "via",
        "between",
        "through",
        "during",
        "without",
        "within",
        "against",
    }
)

_WORD = re.compile(r"[\w']+", re.UNICODE)
_FINAL = (".", "?", "!", "。", "？", "！")
_TRAILING_MARKS = (",", ";", ":", "-", "–", "—", "...", "…")


def judge(text: str) -> Verdict:
    """Whether ``text`` (a turn's hypothesis so far) reads as a finished sentence."""
    stripped = text.strip().strip("\"'”“»«)")
    if not stripped:
        return "unknown"
    if stripped.endswith(_TRAILING_MARKS):
        return "unfinished"
    words = _WORD.findall(stripped.casefold())
    if words and words[-1] in TRAILING_WORDS:
        return "unfinished"
    if stripped.endswith(_FINAL):
        return "finished"
    return "unknown"


def resolve(eagerness: Eagerness) -> str:
    """``auto`` is ``medium``, as OpenAI documents."""
    return "medium" if eagerness == "auto" else eagerness


def silence_ms(eagerness: Eagerness, verdict: Verdict) -> int:
    """The silence (ms) that ends a turn whose hypothesis has ``verdict``."""
    return WAITS[resolve(eagerness)].for_verdict(verdict)
