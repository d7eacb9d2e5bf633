// The page: a file (chosen or dropped) streamed through POST /v1/audio/transcriptions, or the
// microphone through the Realtime socket; the transcript, the player and the downloads.

import { ApiError, apiFetch, apiRequest, currentKey, errorFrom, jsonEvents, onKeyNeeded, saveKey } from "./api.js";
import { LANGUAGES } from "./languages.js";
import { LIVE_RATE, LiveSession } from "./live.js";
import { formatClock, toSrt, toText, toVtt, toJson } from "./subtitles.js";
import { TranscriptView } from "./transcript.js";

const $ = (selector) => document.querySelector(selector);

const el = {
  status: $("#server-status"),
  statusLabel: $("#server-status .label"),
  keyButton: $("#key-button"),
  banner: $("#error"),
  bannerTitle: $("#error .banner-title"),
  bannerMessage: $("#error .banner-message"),
  bannerClose: $("#error .banner-close"),
  dropzone: $("#dropzone"),
  file: $("#file"),
  fileName: $("#file-name"),
  record: $("#record"),
  recordLabel: $("#record .record-label"),
  recordTime: $("#record-time"),
  level: $("#level"),
  levelBar: $("#level > span"),
  options: $("#options"),
  language: $("#language"),
  languageHint: $("#language-hint"),
  diarize: $("#diarize"),
  numSpeakers: $("#num-speakers"),
  vad: $("#vad"),
  prompt: $("#prompt"),
  transcribe: $("#transcribe"),
  meta: $("#result-meta"),
  downloads: $("#downloads"),
  srt: $("#download-srt"),
  vtt: $("#download-vtt"),
  txt: $("#download-txt"),
  json: $("#download-json"),
  copy: $("#copy"),
  progressRow: $("#progress-row"),
  progress: $("#progress"),
  progressText: $("#progress-text"),
  cancel: $("#cancel"),
  player: $("#player"),
  empty: $("#empty"),
  transcript: $("#transcript"),
  footerModel: $("#footer-model"),
  keyDialog: $("#key-dialog"),
  keyInput: $("#api-key"),
  keyReason: $("#key-reason"),
};

const state = {
  model: null, // the served model's id, from GET /v1/models
  multilingual: true,
  file: null,
  fileUrl: null,
  run: null, // { controller } while a file is being transcribed
  live: null, // LiveSession while recording
  result: null, // the last finished result (verbose_json shape)
  downloadUrls: [],
  duration: null,
};

const view = new TranscriptView(el.transcript, (seconds) => seek(seconds));
const narrow = window.matchMedia("(max-width: 820px)");

// ---------------------------------------------------------------------------------- errors

function showError(error, title = null) {
  const message = error instanceof Error ? error.message : String(error);
  let heading = title;
  if (!heading && error instanceof ApiError) {
    heading =
      {
        400: "The request was refused.",
        401: "The API key was refused.",
        413: "Too large.",
        415: "That file type is not supported.",
        422: "The request was refused.",
        429: "Too many requests.",
        503: "The server is busy.",
        504: "The server took too long.",
        524: "The server took too long.",
      }[error.status] ?? (error.status >= 500 ? "The server failed." : "Something went wrong.");
    if (!error.status && error.type === "invalid_request_error") heading = "The request was refused.";
    if (error.retryAfter) heading += ` Try again in ${error.retryAfter} s.`;
  }
  el.bannerTitle.textContent = heading ?? "Something went wrong.";
  el.bannerMessage.textContent = message;
  el.banner.hidden = false;
}

function clearError() {
  el.banner.hidden = true;
}

el.bannerClose.addEventListener("click", clearError);

// ---------------------------------------------------------------------------------- API key

function askForKey(reason) {
  return new Promise((resolve) => {
    el.keyReason.textContent = reason ?? "Ask whoever runs it for the key. It is kept in this browser only.";
    el.keyInput.value = "";
    const done = () => {
      el.keyDialog.removeEventListener("close", done);
      const key = el.keyDialog.returnValue === "save" ? el.keyInput.value.trim() : "";
      if (key) el.keyButton.hidden = false;
      resolve(key || null);
    };
    el.keyDialog.addEventListener("close", done);
    el.keyDialog.returnValue = "";
    el.keyDialog.showModal();
    el.keyInput.focus();
  });
}

onKeyNeeded(askForKey);

el.keyButton.addEventListener("click", async () => {
  const key = await askForKey("Enter a new key, or leave it empty and cancel to keep the current one.");
  if (key) {
    saveKey(key);
    refreshStatus();
  }
});

if (currentKey()) el.keyButton.hidden = false;

// ---------------------------------------------------------------------------------- server status

function setStatus(kind, label) {
  el.status.dataset.state = kind;
  el.statusLabel.textContent = label;
}

let statusTimer = 0;

async function refreshStatus() {
  clearTimeout(statusTimer);
  try {
    const response = await apiFetch("/v1/models");
    if (response.status === 401) {
      setStatus("down", "API key needed");
      el.keyButton.hidden = false;
      return;
    }
    if (!response.ok) throw await errorFrom(response);
    const body = await response.json();
    const model = body?.data?.[0];
    state.model = model?.id ?? null;
    // an English-only checkpoint (tiny.en, base.en, ...) neither detects languages nor translates
    state.multilingual = model?.multilingual ?? !/\.en$/.test(state.model ?? "");
    applyModel();
    if (model?.ready === false) {
      // loading (at start, or again after an idle unload): requests wait for it meanwhile
      setStatus("loading", `Loading ${state.model}…`);
      statusTimer = setTimeout(refreshStatus, 3000);
    } else {
      setStatus("ready", state.model ? `${state.model} · ready` : "Ready");
    }
  } catch {
    setStatus("down", "Server unreachable");
    statusTimer = setTimeout(refreshStatus, 10000);
  }
}

function applyModel() {
  el.footerModel.textContent = state.model ? `Model: ${state.model}` : "";
  const translate = el.options.querySelector('input[name="task"][value="translate"]');
  translate.disabled = !state.multilingual;
  if (!state.multilingual) {
    el.options.querySelector('input[name="task"][value="transcribe"]').checked = true;
    el.language.value = "en";
    el.language.disabled = true;
    const hint = `${state.model} knows English only (no detection or translation).`;
    el.languageHint.textContent = hint;
    el.languageHint.hidden = false;
    translate.closest("label").title = hint;
  }
}

function fillLanguages() {
  const names =
    typeof Intl.DisplayNames === "function" ? new Intl.DisplayNames([navigator.language || "en"], { type: "language" }) : null;
  const label = (code, fallback) => {
    try {
      const name = names?.of(code);
      if (name && name.toLowerCase() !== code) return name[0].toUpperCase() + name.slice(1);
    } catch {
      /* a code Intl does not know (Whisper's "jw") */
    }
    return fallback[0].toUpperCase() + fallback.slice(1);
  };
  const options = Object.entries(LANGUAGES)
    .map(([code, name]) => ({ code, name: label(code, name) }))
    .sort((a, b) => a.name.localeCompare(b.name));
  for (const { code, name } of options) el.language.append(new Option(name, code));
}

// ---------------------------------------------------------------------------------- options

function settings() {
  const form = new FormData(el.options);
  return {
    language: el.language.disabled ? "en" : form.get("language") || null,
    task: form.get("task") || "transcribe",
    words: form.get("granularity") === "word",
    diarize: el.diarize.checked,
    numSpeakers: el.diarize.checked && el.numSpeakers.value ? Number(el.numSpeakers.value) : null,
    vad: el.vad.checked,
    prompt: (form.get("prompt") || "").trim() || null,
  };
}

el.diarize.addEventListener("change", () => {
  el.numSpeakers.disabled = !el.diarize.checked;
});

el.options.addEventListener("input", () => {
  el.transcribe.disabled = !state.file || state.live != null;
  if (state.file) el.transcribe.textContent = "Transcribe with these options";
});

el.options.addEventListener("submit", (event) => {
  event.preventDefault();
  if (state.file) transcribeFile(state.file);
});

// ---------------------------------------------------------------------------------- file choice

function chooseFile(file) {
  if (!file) return;
  state.file = file;
  el.fileName.textContent = file.name;
  el.fileName.hidden = false;
  el.transcribe.disabled = false;
  transcribeFile(file);
}

el.file.addEventListener("change", () => {
  chooseFile(el.file.files?.[0]);
  el.file.value = ""; // so that choosing the same file again starts it again
});

let dragDepth = 0;
window.addEventListener("dragenter", (event) => {
  if (![...(event.dataTransfer?.types ?? [])].includes("Files")) return;
  dragDepth += 1;
  el.dropzone.classList.add("dragging");
});
window.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) el.dropzone.classList.remove("dragging");
});
window.addEventListener("dragover", (event) => {
  if ([...(event.dataTransfer?.types ?? [])].includes("Files")) event.preventDefault();
});
window.addEventListener("drop", (event) => {
  const file = event.dataTransfer?.files?.[0];
  dragDepth = 0;
  el.dropzone.classList.remove("dragging");
  if (!file) return;
  event.preventDefault();
  chooseFile(file);
});

// ---------------------------------------------------------------------------------- the player

function seek(seconds) {
  if (el.player.hidden || !el.player.src) return;
  el.player.currentTime = seconds;
  view.highlight(seconds);
  el.player.play().catch(() => {
    /* autoplay refused or nothing to play yet: the position is still set */
  });
}

function loadPlayer(blob) {
  if (state.fileUrl) URL.revokeObjectURL(state.fileUrl);
  state.fileUrl = URL.createObjectURL(blob);
  el.player.src = state.fileUrl;
  el.player.hidden = false;
}

let frame = 0;
function followPlayback() {
  view.highlight(el.player.currentTime, { follow: !el.player.paused });
  frame = el.player.paused ? 0 : requestAnimationFrame(followPlayback);
}
el.player.addEventListener("play", () => {
  cancelAnimationFrame(frame);
  frame = requestAnimationFrame(followPlayback);
});
el.player.addEventListener("seeked", () => view.highlight(el.player.currentTime));
el.player.addEventListener("pause", () => view.highlight(el.player.currentTime));
el.player.addEventListener("loadedmetadata", () => {
  if (Number.isFinite(el.player.duration) && el.player.duration > 0 && state.duration == null) {
    state.duration = el.player.duration;
  }
});
// a file the browser cannot play (some containers) is still transcribed: only the player goes
el.player.addEventListener("error", () => {
  el.player.hidden = true;
});

// ---------------------------------------------------------------------------------- progress

function showProgress(fraction, text) {
  el.progressRow.hidden = false;
  if (fraction == null) el.progress.removeAttribute("value");
  else el.progress.value = Math.min(1, Math.max(0, fraction));
  el.progressText.textContent = text;
}

function hideProgress() {
  el.progressRow.hidden = true;
}

function updateProgress(decodedTo) {
  const duration = state.duration;
  if (duration && decodedTo != null) {
    const fraction = decodedTo / duration;
    showProgress(fraction, `${Math.round(Math.min(1, fraction) * 100)}% · ${formatClock(decodedTo)} of ${formatClock(duration)}`);
  } else {
    showProgress(null, decodedTo != null ? `${formatClock(decodedTo)} decoded` : "Uploading and decoding…");
  }
}

// ---------------------------------------------------------------------------------- results

function resetResult() {
  clearError();
  view.clear();
  for (const url of state.downloadUrls) URL.revokeObjectURL(url);
  state.downloadUrls = [];
  state.result = null;
  state.duration = null;
  el.downloads.hidden = true;
  el.meta.textContent = "";
  el.empty.hidden = true;
}

function showEmptyIfNothing() {
  el.empty.hidden = view.length > 0;
}

function baseName(name) {
  return (name || "transcript").replace(/\.[^.]+$/, "") || "transcript";
}

function setDownload(anchor, text, type, filename) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  state.downloadUrls.push(url);
  anchor.href = url;
  anchor.download = filename;
}

function publishDownloads(result, name, segments = result.segments ?? []) {
  for (const url of state.downloadUrls) URL.revokeObjectURL(url);
  state.downloadUrls = [];
  const base = baseName(name);
  const duration = result.duration ?? null;
  setDownload(el.srt, toSrt(segments, duration, view.names), "application/x-subrip", `${base}.srt`);
  setDownload(el.vtt, toVtt(segments, duration, view.names), "text/vtt", `${base}.vtt`);
  setDownload(el.txt, toText(segments, view.names), "text/plain", `${base}.txt`);
  setDownload(el.json, toJson(result), "application/json", `${base}.json`);
  el.downloads.hidden = false;
}

el.copy.addEventListener("click", async () => {
  if (!state.result) return;
  try {
    await navigator.clipboard.writeText(toText(state.result.segments ?? [], view.names));
    el.copy.textContent = "Copied";
  } catch {
    el.copy.textContent = "Copy failed";
  }
  setTimeout(() => (el.copy.textContent = "Copy"), 1600);
});

function describe(result, seconds) {
  const parts = [];
  if (state.file && !state.live) parts.push(state.file.name);
  if (result.duration) parts.push(formatClock(result.duration));
  if (result.language) {
    // verbose_json names the language ("english"); a live session knows the code it was given
    const name = LANGUAGES[result.language] ?? result.language;
    parts.push(name[0].toUpperCase() + name.slice(1));
  }
  const speakers = new Set((result.segments ?? []).map((s) => s.speaker).filter((s) => s != null));
  if (speakers.size) parts.push(`${speakers.size} speaker${speakers.size === 1 ? "" : "s"}`);
  if (seconds && result.duration) parts.push(`${(result.duration / seconds).toFixed(1)}× real time`);
  return parts.join(" · ");
}

// ---------------------------------------------------------------------------------- transcribing a file

function requestBody(file, s) {
  const form = new FormData();
  form.append("file", file, file.name || "audio");
  form.append("model", state.model || "whisper-1");
  form.append("response_format", "verbose_json");
  form.append("stream", "true");
  form.append("timestamp_granularities[]", "segment");
  if (s.words) form.append("timestamp_granularities[]", "word");
  if (s.language) form.append("language", s.language); // the spoken language, for translations too
  if (s.prompt) form.append("prompt", s.prompt);
  if (s.diarize) form.append("diarize", "true");
  if (s.numSpeakers) form.append("num_speakers", String(s.numSpeakers));
  if (!s.vad) form.append("vad_filter", "false");
  return form;
}

/** A segment from a stream event, when the event carries one with times. */
function segmentOf(event) {
  const source = event.segment && typeof event.segment === "object" ? event.segment : event;
  if (typeof source.start !== "number" || typeof source.end !== "number") return null;
  const text = source.text ?? event.delta ?? "";
  return {
    id: source.id ?? null,
    start: source.start,
    end: source.end,
    text,
    ...(source.speaker != null ? { speaker: source.speaker } : {}),
    ...(Array.isArray(source.words) ? { words: source.words } : {}),
  };
}

async function transcribeFile(file) {
  if (state.live) return;
  state.run?.controller.abort();
  const controller = new AbortController();
  const run = { controller, started: performance.now(), untimed: "" };
  state.run = run;
  resetResult();
  loadPlayer(file);
  const s = settings();
  el.transcribe.textContent = "Transcribe again";
  el.meta.textContent = `${file.name} · transcribing…`;
  // on a phone the transcript is below the options: bring it into view
  if (narrow.matches) el.progressRow.closest(".result").scrollIntoView({ behavior: "smooth" });
  el.record.disabled = true;
  updateProgress(null);
  const path = s.task === "translate" ? "/v1/audio/translations" : "/v1/audio/transcriptions";
  let untimedItem = null;
  let decodedTo = null;
  try {
    const response = await apiRequest(path, { method: "POST", body: requestBody(file, s), signal: controller.signal });
    let done = null;
    const type = response.headers.get("Content-Type") || "";
    if (type.includes("text/event-stream")) {
      for await (const event of jsonEvents(response.body)) {
        if (state.run !== run) return;
        if (event.type === "error" || (event.error && !event.type)) {
          // an error after the stream began comes as a last event in OpenAI's error shape
          const e = event.error ?? event;
          throw new ApiError(e.message || "The transcription failed.", { type: e.type, code: e.code, param: e.param });
        }
        if (event.type === "transcript.text.done") {
          done = event;
          break;
        }
        if (event.type !== "transcript.text.delta" && event.type !== "transcript.text.segment") continue;
        if (event.duration && !state.duration) state.duration = event.duration;
        const segment = segmentOf(event);
        if (segment) {
          view.add(segment);
          decodedTo = segment.end;
        } else if (event.delta) {
          // text without times: shown live as one growing line
          run.untimed += event.delta;
          untimedItem ??= view.add({ id: null, start: null, end: null, text: "" });
          untimedItem.text.textContent = run.untimed.trim();
        }
        updateProgress(decodedTo);
      }
      if (!done) throw new ApiError("The stream ended before the transcript was complete.");
    } else {
      done = { type: "transcript.text.done", ...(await response.json()) };
    }
    finishFile(file, run, done);
  } catch (error) {
    if (controller.signal.aborted) {
      if (state.run === run) {
        el.meta.textContent = `${file.name} · cancelled`;
        hideProgress();
      }
      return;
    }
    if (state.run !== run) return;
    hideProgress();
    el.meta.textContent = `${file.name} · failed`;
    showError(error instanceof ApiError ? error : new ApiError(error?.message || String(error)));
  } finally {
    if (state.run === run) {
      state.run = null;
      el.record.disabled = false;
    }
    showEmptyIfNothing();
  }
}

/**
 * Words of a verbose_json response (one list for the whole file) given to their segments by
 * time, so that the transcript can light each word as it is played.
 */
function attachWords(segments, words) {
  if (!Array.isArray(words) || !words.length) return segments;
  let next = 0;
  return segments.map((segment, index) => {
    const last = index === segments.length - 1;
    const own = [];
    while (next < words.length) {
      const w = words[next];
      const middle = (w.start + w.end) / 2;
      if (!last && middle >= segment.end) break;
      own.push(w);
      next += 1;
    }
    return own.length ? { ...segment, words: own } : segment;
  });
}

function finishFile(file, run, done) {
  const { type: _type, ...body } = done; // the rest is the verbose_json response
  const streamed = view.segments.filter((s) => s.start != null);
  const final = Array.isArray(body.segments) ? attachWords(body.segments, body.words) : streamed;
  const result = {
    ...body,
    text: body.text ?? final.map((s) => s.text).join(""),
    duration: body.duration ?? state.duration ?? null,
    segments: body.segments ?? final,
  };
  // the final segments: speakers and words are only known once the whole file is decoded
  if (Array.isArray(body.segments)) view.replace(final);
  if (!final.length && result.text.trim()) view.replace([{ id: 0, start: null, end: null, text: result.text }]);
  state.result = result;
  hideProgress();
  el.meta.textContent = describe(result, (performance.now() - run.started) / 1000);
  if (final.length) publishDownloads(result, file.name, final);
  else if (!result.text.trim()) el.meta.textContent += " · no speech found";
}

el.cancel.addEventListener("click", () => state.run?.controller.abort());

// ---------------------------------------------------------------------------------- live captions

let clock = 0;

async function startRecording() {
  state.run?.controller.abort();
  resetResult();
  el.player.hidden = true;
  el.player.removeAttribute("src");
  const s = settings();
  const session = new LiveSession({
    language: s.language,
    prompt: s.prompt,
    handlers: {
      onEvent: (event) => liveEvent(event),
      onLevel: (level) => {
        el.levelBar.style.width = `${Math.round(Math.min(1, level * 1.6) * 100)}%`;
      },
      onClosed: ({ code, reason, clean, error }) => {
        // a refusal (bad key, too many sessions) comes as an error event just before the close
        const message = error?.message || reason || `The live connection closed (code ${code}).`;
        if (!clean) showError(new ApiError(message, { code: error?.code }), "Live captions stopped.");
        if (state.live === session) stopRecording();
      },
    },
  });
  state.live = session;
  setRecording(true, "Connecting…");
  try {
    await session.start();
  } catch (error) {
    state.live = null;
    setRecording(false);
    showEmptyIfNothing();
    showError(error);
    return;
  }
  if (state.live !== session) return;
  setRecording(true, "Stop recording");
  el.meta.textContent = "Listening…";
  clock = setInterval(() => (el.recordTime.textContent = formatClock(session.elapsed)), 250);
}

function setRecording(on, label = null) {
  el.record.setAttribute("aria-pressed", String(on));
  el.recordLabel.textContent = label ?? (on ? "Stop recording" : "Record from microphone");
  el.recordTime.hidden = !on;
  el.level.hidden = !on;
  if (!on) el.levelBar.style.width = "0";
  el.file.disabled = on;
  el.transcribe.disabled = on || !state.file;
  if (on) el.recordTime.textContent = "0:00";
}

async function stopRecording() {
  const session = state.live;
  if (!session) return;
  clearInterval(clock);
  el.recordLabel.textContent = "Finishing…";
  el.record.disabled = true;
  const recording = await session.stop();
  if (state.live !== session) return;
  state.live = null;
  el.record.disabled = false;
  setRecording(false);
  const turns = view.segments.filter((s) => s.text.trim());
  // the WAV holds exactly the audio the server heard: its length is the session's
  const duration = recording ? (recording.size - 44) / 2 / LIVE_RATE : session.elapsed;
  const segments = turns.map((turn, id) => ({
    id,
    start: turn.start ?? 0,
    // a turn cut short by Stop has no speech_stopped: it ran to the end of the audio
    end: turn.end ?? (id + 1 < turns.length ? turns[id + 1].start : duration) ?? duration,
    text: turn.text.trim(),
  }));
  const result = { text: segments.map((s) => s.text).join(" "), language: session.language, duration, segments };
  state.result = result;
  const name = `recording-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-")}.wav`;
  if (recording) {
    loadPlayer(recording);
    // the recording can go through the file path too (speakers, words): #transcribe does it
    state.file = new File([recording], name, { type: "audio/wav" });
    el.transcribe.textContent = "Transcribe the recording";
    el.fileName.textContent = name;
    el.fileName.hidden = false;
    el.transcribe.disabled = false;
  }
  el.meta.textContent = `Live recording · ${formatClock(duration)} · ${segments.length} turn${segments.length === 1 ? "" : "s"}`;
  if (segments.length) publishDownloads(result, name);
  showEmptyIfNothing();
}

function liveEvent(event) {
  const seconds = (ms) => (typeof ms === "number" ? ms / 1000 : null);
  switch (event.type) {
    case "input_audio_buffer.speech_started":
      view.turn(event.item_id, seconds(event.audio_start_ms));
      el.meta.textContent = "Listening · speech";
      break;
    case "input_audio_buffer.speech_stopped":
      view.endTurnAudio(event.item_id, seconds(event.audio_end_ms));
      el.meta.textContent = "Listening…";
      break;
    case "conversation.item.input_audio_transcription.delta":
      view.appendDelta(event.item_id, event.delta ?? "");
      break;
    case "conversation.item.input_audio_transcription.completed":
      view.completeTurn(event.item_id, event.transcript ?? "");
      break;
    case "conversation.item.input_audio_transcription.failed":
      view.completeTurn(event.item_id, "");
      showError(new ApiError(event.error?.message || "A turn could not be transcribed."), "Live captions:");
      break;
    case "error":
      showError(new ApiError(event.error?.message || "The live session reported an error."), "Live captions:");
      break;
    default:
      break;
  }
  el.empty.hidden = view.length > 0 || state.live != null;
}

el.record.addEventListener("click", () => {
  if (state.live) stopRecording();
  else startRecording();
});

// ---------------------------------------------------------------------------------- start

fillLanguages();
// on a phone the options start folded, so that the transcript is near the top
if (narrow.matches) $("#options-box").open = false;
refreshStatus();
window.whisperPage = { view, state }; // for people poking at the page from the console, and tests
