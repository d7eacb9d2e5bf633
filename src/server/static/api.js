// Talking to the worker: the API key, fetch with it, OpenAI-shaped errors, Server-Sent Events.

const KEY_STORAGE = "whisper-worker.api-key";

/** An error the server (or the page) described: what the banner shows. */
export class ApiError extends Error {
  constructor(message, { status = 0, type = null, code = null, param = null, retryAfter = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.code = code;
    this.param = param;
    this.retryAfter = retryAfter;
  }
}

export function storedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || null;
  } catch {
    return null; // storage blocked: the key lives only as long as the page
  }
}

let memoryKey = null;

export function currentKey() {
  return memoryKey ?? storedKey();
}

export function saveKey(key) {
  memoryKey = key || null;
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* kept in memory only */
  }
}

// Set by the page: shows the key dialog and resolves with the key, or null when dismissed.
let keyPrompt = async () => null;

export function onKeyNeeded(prompt) {
  keyPrompt = prompt;
}

function withAuth(init = {}) {
  const headers = new Headers(init.headers || {});
  const key = currentKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  return { ...init, headers };
}

/** The OpenAI error object of a failed response, as an ApiError. */
export async function errorFrom(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  let details = {};
  try {
    const body = await response.json();
    if (body && typeof body.error === "object" && body.error) {
      details = body.error;
      if (details.message) message = details.message;
    } else if (body && typeof body.detail === "string") {
      message = body.detail;
    }
  } catch {
    /* not JSON: keep the status line */
  }
  const retry = Number(response.headers.get("Retry-After"));
  return new ApiError(message, {
    status: response.status,
    type: details.type ?? null,
    code: details.code ?? null,
    param: details.param ?? null,
    retryAfter: Number.isFinite(retry) && retry > 0 ? retry : null,
  });
}

/**
 * fetch with the stored key. A 401 asks the person for a key once and retries with it; a second
 * 401 (a wrong key) is returned like any other failure, after the stored key is dropped.
 */
export async function apiFetch(path, init = {}) {
  let response = await fetch(path, withAuth(init));
  if (response.status !== 401) return response;
  const problem = await errorFrom(response.clone());
  const key = await keyPrompt(currentKey() ? "That key was refused. " + problem.message : null);
  if (!key) return response;
  saveKey(key);
  response = await fetch(path, withAuth(init));
  if (response.status === 401) saveKey(null);
  return response;
}

/** fetch, then throw the server's error for anything but 2xx. */
export async function apiRequest(path, init = {}) {
  const response = await apiFetch(path, init);
  if (!response.ok) throw await errorFrom(response);
  return response;
}

/**
 * The events of a text/event-stream body, parsed as the HTML standard says (fields "event" and
 * "data", data lines joined with "\n", comments and other fields ignored, CR, LF or CRLF line
 * ends, a CR at the end of one chunk paired with an LF at the start of the next).
 * Yields { event, data } with data as text.
 */
export async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "";
  let data = [];
  const lineEnd = /\r\n|\r|\n/;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      for (;;) {
        const match = lineEnd.exec(buffer);
        if (!match) break;
        // a lone CR at the very end may be the first half of a CRLF split across chunks
        if (match[0] === "\r" && match.index === buffer.length - 1) break;
        const line = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        if (line === "") {
          if (data.length) yield { event: event || "message", data: data.join("\n") };
          event = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "event") event = text;
        else if (field === "data") data.push(text);
      }
    }
    // Lenient at the very end, where the standard drops an unfinished event: a server that
    // closes right after its last "data:" line (with or without its line end) is still heard.
    if (buffer.startsWith("data:")) data.push(buffer.slice(5).replace(/^ /, "").replace(/\r$/, ""));
    if (data.length) yield { event: event || "message", data: data.join("\n") };
  } finally {
    reader.releaseLock();
  }
}

/** The JSON events of an SSE body; "[DONE]" ends it. */
export async function* jsonEvents(body) {
  for await (const { event, data } of sseEvents(body)) {
    if (data === "[DONE]") return;
    let parsed;
    try {
      parsed = JSON.parse(data);
    } catch {
      throw new ApiError("The server sent an event the page could not read.");
    }
    if (parsed && typeof parsed === "object" && !parsed.type && event !== "message") {
      parsed.type = event;
    }
    yield parsed;
  }
}

/** The ws:// or wss:// address of a path on this server. */
export function socketUrl(path) {
  const url = new URL(path, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}
