// Live captions: the microphone streamed to GET /v1/realtime?intent=transcription in OpenAI's
// Realtime transcription protocol (session.update with server_vad first, then
// input_audio_buffer.append of base64 PCM16 at 24 kHz), the server's events handed to the page.

import { ApiError, currentKey, socketUrl } from "./api.js";

const RATE = 24000;
export const LIVE_RATE = RATE;
// the audio kept for playing the session back: an hour at 24 kHz, 16-bit (165 MiB)
const MAX_KEPT_BYTES = 3600 * RATE * 2;

/** A WAV file of 16-bit mono PCM chunks at RATE. */
function wav(chunks) {
  const bytes = chunks.reduce((n, c) => n + c.byteLength, 0);
  const header = new DataView(new ArrayBuffer(44));
  const text = (at, s) => [...s].forEach((ch, i) => header.setUint8(at + i, ch.charCodeAt(0)));
  text(0, "RIFF");
  header.setUint32(4, 36 + bytes, true);
  text(8, "WAVE");
  text(12, "fmt ");
  header.setUint32(16, 16, true);
  header.setUint16(20, 1, true); // PCM
  header.setUint16(22, 1, true); // mono
  header.setUint32(24, RATE, true);
  header.setUint32(28, RATE * 2, true);
  header.setUint16(32, 2, true);
  header.setUint16(34, 16, true);
  text(36, "data");
  header.setUint32(40, bytes, true);
  return new Blob([header, ...chunks], { type: "audio/wav" });
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

// the characters a WebSocket subprotocol may hold (an HTTP token, RFC 6455 section 4.1)
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** A WebSocket once open; rejects with the close event if it never opens. */
function openSocket(url, protocols) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols);
    ws.onopen = () => {
      ws.onopen = ws.onerror = ws.onclose = null;
      resolve(ws);
    };
    ws.onerror = () => {}; // the close event that follows says more
    ws.onclose = (event) => reject(event);
  });
}

/**
 * One live session. `handlers` receive the server's events by type (see app.js):
 * onEvent(event), onLevel(0..1), onClosed({ code, reason, clean }).
 */
export class LiveSession {
  constructor({ language = null, prompt = null, model = null, handlers }) {
    this.language = language;
    this.prompt = prompt;
    this.model = model;
    this.handlers = handlers;
    this.ws = null;
    this.stream = null;
    this.context = null;
    this.node = null;
    this.kept = []; // the PCM sent, for playing the session back (its times are the server's)
    this.keptBytes = 0;
    this.pendingTurns = new Set(); // turns heard, their final transcript not yet in
    this.uncommitted = new Set(); // turns heard, not yet committed by the server
    this.closing = false;
    this.startedAt = 0;
  }

  /** Ask for the microphone, connect, configure, start streaming. Throws ApiError. */
  async start() {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new ApiError("This browser cannot record here (the page needs https or localhost).");
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (error) {
      const denied = error?.name === "NotAllowedError" || error?.name === "SecurityError";
      throw new ApiError(
        denied
          ? "Microphone access was refused. Allow it in the browser's site settings and try again."
          : `No microphone could be opened (${error?.message || error?.name || "unknown error"}).`,
      );
    }
    try {
      await this.#connect();
      this.#configure();
      await this.#startAudio();
    } catch (error) {
      this.#teardown();
      throw error;
    }
    this.startedAt = performance.now();
  }

  async #connect() {
    const params = new URLSearchParams({ intent: "transcription" });
    // Browsers cannot set headers on a WebSocket. The key rides as the subprotocol the OpenAI
    // SDKs use in a browser ("openai-insecure-api-key.<key>" beside "realtime"), which keeps it
    // out of URLs (the server takes no key in a query string: proxies log those).
    const key = currentKey();
    const protocols = ["realtime"];
    if (key && TOKEN.test(key)) protocols.push(`openai-insecure-api-key.${key}`);
    else if (key) {
      throw new ApiError(
        "This API key has characters a WebSocket subprotocol cannot carry; live captions need a key of letters, digits and -._~ only.",
        { status: 401 },
      );
    }
    try {
      this.ws = await openSocket(socketUrl(`/v1/realtime?${params}`), protocols);
    } catch (event) {
      if (event?.code === 1008 || event?.code === 4001 || /auth|key|401/i.test(event?.reason || "")) {
        throw new ApiError(event.reason || "The server refused the API key for live captions.", { status: 401 });
      }
      throw new ApiError(
        event?.reason || "Live captions could not connect to the server (is the realtime route enabled?).",
      );
    }
    this.ws.onmessage = (message) => this.#received(message);
    this.ws.onclose = (event) => this.#closed(event);
  }

  #configure() {
    const transcription = {};
    if (this.model) transcription.model = this.model;
    if (this.language) transcription.language = this.language;
    if (this.prompt) transcription.prompt = this.prompt;
    this.send({
      type: "session.update",
      session: {
        type: "transcription",
        audio: {
          input: {
            format: { type: "audio/pcm", rate: RATE },
            transcription,
            turn_detection: { type: "server_vad", threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500 },
          },
        },
      },
    });
  }

  async #startAudio() {
    try {
      this.context = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
    } catch {
      this.context = new AudioContext({ latencyHint: "interactive" });
    }
    await this.context.audioWorklet.addModule(new URL("./pcm-worklet.js", import.meta.url));
    let source;
    try {
      source = this.context.createMediaStreamSource(this.stream);
    } catch {
      // some browsers refuse a microphone at another rate than the context: use the device rate
      await this.context.close();
      this.context = new AudioContext({ latencyHint: "interactive" });
      await this.context.audioWorklet.addModule(new URL("./pcm-worklet.js", import.meta.url));
      source = this.context.createMediaStreamSource(this.stream);
    }
    this.node = new AudioWorkletNode(this.context, "pcm-encoder", { numberOfInputs: 1, numberOfOutputs: 0 });
    this.node.port.onmessage = ({ data }) => {
      if (this.ws?.readyState === WebSocket.OPEN && !this.closing) {
        this.send({ type: "input_audio_buffer.append", audio: base64(data.pcm) });
        if (this.keptBytes + data.pcm.byteLength <= MAX_KEPT_BYTES) {
          this.kept.push(data.pcm);
          this.keptBytes += data.pcm.byteLength;
        }
      }
      this.handlers.onLevel?.(data.level);
    };
    source.connect(this.node);
    if (this.context.state === "suspended") await this.context.resume();
  }

  send(event) {
    this.ws.send(JSON.stringify(event));
  }

  #received(message) {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    if (event.type === "error") this.lastError = event.error ?? {};
    const id = event.item_id;
    if (event.type === "input_audio_buffer.speech_started" && id) {
      this.pendingTurns.add(id);
      this.uncommitted.add(id);
    }
    if (event.type === "input_audio_buffer.committed") this.uncommitted.delete(id);
    if (event.type === "conversation.item.input_audio_transcription.completed") this.pendingTurns.delete(id);
    if (event.type === "conversation.item.input_audio_transcription.failed") this.pendingTurns.delete(id);
    this.handlers.onEvent(event);
    if (this.closing && this.pendingTurns.size === 0) this.#finish();
  }

  #closed(event) {
    const wasClosing = this.closing;
    this.#teardown();
    this.handlers.onClosed?.({ code: event.code, reason: event.reason, clean: wasClosing, error: this.lastError });
  }

  /**
   * Stop the microphone; the turn being spoken is committed and its final transcript awaited
   * (a few seconds at most) before the socket closes. Resolves with the session's audio as a
   * WAV file (the very samples the server heard, so the turns' times fit it), or null.
   */
  async stop({ waitMs = 8000 } = {}) {
    if (this.closing) return this.recording;
    this.node?.port.postMessage("flush");
    await new Promise((resolve) => setTimeout(resolve, 150)); // the last chunk goes out
    this.closing = true;
    this.stream?.getTracks().forEach((track) => track.stop());
    this.recording = this.kept.length ? wav(this.kept) : null;
    this.kept = [];
    if (this.ws?.readyState === WebSocket.OPEN && this.pendingTurns.size > 0) {
      // the turn still being spoken: commit it now rather than wait for silence that won't
      // come (only if the server has not committed it already: an empty commit is an error)
      if (this.uncommitted.size > 0) this.send({ type: "input_audio_buffer.commit" });
      await new Promise((resolve) => {
        this.finishWaiter = resolve;
        setTimeout(resolve, waitMs);
      });
    }
    this.#finish();
    return this.recording;
  }

  #finish() {
    this.finishWaiter?.();
    this.finishWaiter = null;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, "done");
    this.#teardown();
  }

  #teardown() {
    this.stream?.getTracks().forEach((track) => track.stop());
    if (this.node) {
      this.node.port.onmessage = null;
      this.node.port.postMessage("stop");
      this.node.disconnect();
      this.node = null;
    }
    if (this.context && this.context.state !== "closed") this.context.close().catch(() => {});
    this.context = null;
  }

  get elapsed() {
    return this.startedAt ? (performance.now() - this.startedAt) / 1000 : 0;
  }
}
