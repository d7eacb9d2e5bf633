// Live captions: the microphone streamed to GET /v1/realtime?intent=transcription in OpenAI's
// Realtime transcription protocol (session.update with server_vad first, then
// input_audio_buffer.append of base64 PCM16 at 24 kHz), the server's events handed to the page.

import { ApiError, currentKey, socketUrl } from "./api.js";

const RATE = 24000;

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function openSocket(url, protocols) {
  return new Promise((resolve, reject) => {
    const ws = protocols.length ? new WebSocket(url, protocols) : new WebSocket(url);
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
    this.recorder = null;
    this.recorded = [];
    this.pendingTurns = new Set();
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
    // Browsers cannot set headers on a WebSocket: the key goes as the api_key query parameter,
    // which the server accepts for this route (and keeps out of its logs)
    const key = currentKey();
    if (key) params.set("api_key", key);
    try {
      this.ws = await openSocket(socketUrl(`/v1/realtime?${params}`), []);
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
      }
      this.handlers.onLevel?.(data.level);
    };
    source.connect(this.node);
    if (this.context.state === "suspended") await this.context.resume();
    // keep the audio too, so that the turns can be played back when recording stops
    if (typeof MediaRecorder !== "undefined") {
      try {
        this.recorder = new MediaRecorder(this.stream);
        this.recorder.ondataavailable = (event) => event.data.size && this.recorded.push(event.data);
        this.recorder.start(1000);
      } catch {
        this.recorder = null;
      }
    }
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
    const id = event.item_id;
    if (event.type === "input_audio_buffer.speech_started" && id) this.pendingTurns.add(id);
    if (event.type === "conversation.item.input_audio_transcription.completed") this.pendingTurns.delete(id);
    if (event.type === "conversation.item.input_audio_transcription.failed") this.pendingTurns.delete(id);
    this.handlers.onEvent(event);
    if (this.closing && this.pendingTurns.size === 0) this.#finish();
  }

  #closed(event) {
    const wasClosing = this.closing;
    this.#teardown();
    this.handlers.onClosed?.({ code: event.code, reason: event.reason, clean: wasClosing });
  }

  /**
   * Stop the microphone; the turn being spoken is committed and its final transcript awaited
   * (a few seconds at most) before the socket closes. Resolves with the recording, if any.
   */
  async stop({ waitMs = 8000 } = {}) {
    if (this.closing) return this.recording;
    this.closing = true;
    this.node?.port.postMessage("flush");
    const recorded = new Promise((resolve) => {
      if (!this.recorder || this.recorder.state === "inactive") return resolve();
      this.recorder.onstop = () => resolve();
      this.recorder.stop();
    });
    this.stream?.getTracks().forEach((track) => track.stop());
    await recorded;
    const type = this.recorded[0]?.type || "audio/webm";
    this.recording = this.recorded.length ? new Blob(this.recorded, { type }) : null;
    if (this.ws?.readyState === WebSocket.OPEN && this.pendingTurns.size > 0) {
      // the turn still being spoken: commit it now rather than wait for silence that won't come
      await new Promise((resolve) => setTimeout(resolve, 150)); // let the last chunk go out
      if (this.ws?.readyState === WebSocket.OPEN) this.send({ type: "input_audio_buffer.commit" });
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
