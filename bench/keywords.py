"""``keywords[]`` on rare names: the benchmark clips where tiny.en misspells a proper noun,
transcribed through ``/v1/audio/transcriptions`` without keywords, with ``keywords[]`` (which
open the prompt), and with the worker's ``hotwords`` option (faster-whisper's, every window).

    .venv/bin/python -m bench.keywords
    .venv/bin/python -m bench.keywords --model base

The clips were found by transcribing the 40 short English clips with tiny.en and listing the
reference words missing from the hypothesis; the five below are the proper nouns among them.
Per clip and way: whether the name is spelled right, and the clip's WER.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.data import manifest_items
from bench.live import start_server
from bench.metrics import scores

#: clip file name -> the rare name in it
CASES = {
    "en_ls-test-clean_1221-135766-0002.wav": "Hester Prynne",
    "en_ls-dev-clean_3752-4944-0000.flac": "Frere",
    "en_ls-dev-clean_1272-128104-0004_8k.wav": "Birket Foster",
    "en_fleurs_002.ogg": "Sintra",
    "en_fleurs_006.ogg": "Marianas",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from openai import OpenAI

    items = {os.path.basename(i.path): i for i in manifest_items()}
    process, base = start_server(args.model, args.device, "WARNING")
    rows = []
    try:
        with OpenAI(base_url=f"{base}/v1", api_key=os.environ.get("API_KEY", "none")) as client:
            for name, keyword in CASES.items():
                item = items[name]
                data = Path(item.path).read_bytes()
                ways = {
                    "none": {},
                    "keywords[]": {"keywords": [keyword]},
                    "hotwords": {"extra_body": {"hotwords": keyword}},
                }
                texts = {
                    way: client.audio.transcriptions.create(
                        file=(name, data), model="gpt-transcribe", **kwargs
                    ).text
                    for way, kwargs in ways.items()
                }
                rows.append((name, keyword, item.text, texts))
    finally:
        process.terminate()
        process.wait(30)
    print(f"model {args.model} on {args.device}\n")
    print("| clip | name | none | keywords[] | hotwords |\n|---|---|---|---|---|")
    totals: dict[str, list[tuple[str, str]]] = {"none": [], "keywords[]": [], "hotwords": []}
    for name, keyword, reference, texts in rows:
        cells = []
        for way, text in texts.items():
            wer, _ = scores([(reference, text)])
            totals[way].append((reference, text))
            cells.append(f"{'right' if keyword in text else 'wrong'}, WER {100 * (wer or 0):.1f}%")
        print(f"| {name} | {keyword} | " + " | ".join(cells) + " |")
    pooled = {way: scores(pairs)[0] or 0 for way, pairs in totals.items()}
    print(
        "\npooled WER: "
        + ", ".join(f"{way} {100 * wer:.1f}%" for way, wer in pooled.items())
        + "; names right: "
        + ", ".join(
            f"{way} {sum(k in t for (_, k, _, ts) in rows for w, t in ts.items() if w == way)}/"
            f"{len(rows)}"
            for way in totals
        )
    )
    for name, _, _, texts in rows:
        for way, text in texts.items():
            print(f"  {name} [{way}]: {text}")


if __name__ == "__main__":
    main()
