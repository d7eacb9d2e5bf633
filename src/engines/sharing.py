"""Where a decode may give the model to another: the engine's side of the model's gate.

The model service (``src/service/gate.py``) lets one decode use the model at a time, live
decodes first. A file's decode holds it step by step, but some of a step's work does not use the
model at all (Silero VAD over the whole file runs in ONNX Runtime; the chunk plan is Python),
and some steps are long (a batched pass over several windows, then the coverage check's
re-decodes). Engine code marks those places with the functions here, and the gate the calling
thread holds (if any) acts on them:

``off_model()``  a block that does not use the model: the gate is free meanwhile and taken back
                 (in the same place in line) after it; a live decode, which is short, keeps it.
``let_in()``     a step boundary: a decode that goes before this one (a live decode) and is
                 waiting runs now, then this decode goes on.
``wanted()``     whether such a decode is waiting (a step may then be made smaller).

Outside a held gate (tests, benchmarks, the engine used on its own) all three do nothing. This
module knows nothing of the service, so that imports still flow one way (service -> engines).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class ModelTurn(Protocol):
    """The gate as held by one thread."""

    def wanted(self) -> bool:
        """A decode that goes before this holder is waiting for the model."""
        ...

    def let_in(self) -> None:
        """Let a waiting decode that goes before this holder run now, then take the model back."""
        ...

    def released(self) -> AbstractContextManager[None]:
        """The model free for the block, taken back (in the same place in line) after it."""
        ...


_local = threading.local()


@contextmanager
def turn(held: ModelTurn) -> Iterator[None]:
    """The gate's side: while the block runs, this thread holds the model as ``held``."""
    previous = getattr(_local, "turn", None)
    _local.turn = held
    try:
        yield
    finally:
        _local.turn = previous


def current() -> ModelTurn | None:
    return getattr(_local, "turn", None)


@contextmanager
def off_model() -> Iterator[None]:
    """The block does not use the model: the gate this thread holds is free meanwhile."""
    held = current()
    if held is None:
        yield
        return
    with held.released():
        yield


def let_in() -> None:
    """A step boundary: a waiting decode that goes first (a live one) runs now."""
    held = current()
    if held is not None:
        held.let_in()


def wanted() -> bool:
    """Whether a decode that goes before this one waits for the model."""
    held = current()
    return held is not None and held.wanted()
