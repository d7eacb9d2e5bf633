"""Find the audio and video files under a folder, by what they hold rather than what they are named.

Every file is probed with ffprobe (in a few threads), so a recording saved without an extension,
or under a wrong one, is found. A file whose extension says audio or video is kept even when
ffprobe cannot read it: a corrupt recording should be reported as failed, not silently ignored.
Hidden files and folders (``.DS_Store``, ``._*`` AppleDouble files, ``.git``) are skipped, and so
are types that are never media (text, subtitles, documents, images), to keep probing cheap.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from whisper_client.probe import MediaInfo, probe

logger = logging.getLogger(__name__)


def _extensions(*groups: str) -> frozenset[str]:
    return frozenset(" ".join(groups).split())


MEDIA_EXTENSIONS = _extensions(
    # audio
    ".wav .wave .flac .mp3 .m4a .aac .ogg .oga .opus .wma .aif .aiff .aifc .amr .mka .ac3",
    ".caf .au .snd .mp2 .m4b .spx .wv .ape .dss .ra",
    # video
    ".mp4 .m4v .mkv .mov .avi .wmv .flv .webm .mpg .mpeg .ts .mts .m2ts .3gp .3g2 .ogv .vob",
)
NEVER_MEDIA_EXTENSIONS = _extensions(
    ".txt .md .json .jsonl .csv .tsv .xml .html .htm .srt .vtt .ass .ssa .sub .log .pdf",
    ".doc .docx .xls .xlsx .ppt .pptx .odt .rtf .jpg .jpeg .png .gif .bmp .tif .tiff .webp",
    ".heic .svg .zip .gz .tar .7z .rar .py .sh .ini .yaml .yml .toml .tmp",
)


@dataclass(frozen=True)
class MediaFile:
    """A file to transcribe, and what identifies its content at the time it was found."""

    path: Path
    rel: str  # POSIX path relative to the input folder: the key of the output mirror
    size: int
    mtime_ns: int
    duration: float | None


def discover(
    root: Path,
    *,
    exclude: Iterable[Path] = (),
    workers: int = 4,
    prober: Callable[[Path], MediaInfo] = probe,
) -> list[MediaFile]:
    """The media files under ``root``, sorted by relative path; folders in ``exclude`` skipped."""
    excluded = {p.resolve() for p in exclude}
    candidates = list(_candidates(root, excluded))
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        infos = list(pool.map(prober, candidates))
    found = []
    for path, info in zip(candidates, infos, strict=True):
        known = path.suffix.lower() in MEDIA_EXTENSIONS
        if not (info.has_audio or known):
            continue
        if known and not info.has_audio:
            logger.warning("%s: no readable audio stream; it will be reported as failed", path)
        try:
            stat = path.stat()
        except OSError:  # removed while the folder was being probed
            continue
        found.append(
            MediaFile(
                path=path,
                rel=PurePosixPath(path.relative_to(root).as_posix()).as_posix(),
                size=stat.st_size,
                mtime_ns=stat.st_mtime_ns,
                duration=info.duration,
            )
        )
    found.sort(key=lambda f: f.rel)
    return found


def _candidates(root: Path, excluded: set[Path]) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (here / d).resolve() not in excluded
        )
        for name in sorted(files):
            path = here / name
            if name.startswith(".") or path.suffix.lower() in NEVER_MEDIA_EXTENSIONS:
                continue
            if path.is_file():
                yield path
