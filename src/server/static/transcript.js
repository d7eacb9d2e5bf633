// The transcript list (#transcript): segments of a file, turns of a live session, the segment
// (and word) under the playhead highlighted, a click or Enter on a line seeking the player.

import { formatClock, speakerName } from "./subtitles.js";

const SPEAKER_COLOURS = 6;

function speakerIndex(label) {
  const match = /(\d+)$/.exec(String(label));
  if (match) return Number(match[1]) % SPEAKER_COLOURS;
  let h = 0;
  for (const ch of String(label)) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return h % SPEAKER_COLOURS;
}

export class TranscriptView {
  /**
   * @param {HTMLOListElement} list  the #transcript element
   * @param {(seconds: number) => void} onSeek  called when a line or word is chosen
   */
  constructor(list, onSeek) {
    this.list = list;
    this.onSeek = onSeek;
    this.items = []; // { segment, li, words: [{start, end, el}] }
    this.byId = new Map();
    this.active = null;
    this.activeWord = null;
    this.names = {};
    list.addEventListener("click", (event) => this.#clicked(event));
    list.addEventListener("keydown", (event) => {
      if (event.target.classList?.contains("segment") && (event.key === "Enter" || event.key === " ")) {
        event.preventDefault();
        this.#seekTo(event.target);
      }
    });
  }

  get segments() {
    return this.items.map((item) => item.segment);
  }

  get length() {
    return this.items.length;
  }

  clear() {
    this.list.replaceChildren();
    this.items = [];
    this.byId.clear();
    this.active = null;
    this.activeWord = null;
  }

  /** A segment as it arrives from the stream (appended at the end, in timeline order). */
  add(segment, { animate = true } = {}) {
    const item = this.#build(segment, this.items.at(-1)?.segment);
    if (animate) item.li.classList.add("new");
    this.items.push(item);
    if (segment.id != null) this.byId.set(String(segment.id), item);
    this.list.append(item.li);
    return item;
  }

  /**
   * Replace everything with the final segments (speakers and words included), without a
   * screen reader reading the whole transcript again: the live region is off while the lines
   * are swapped, and on again once the browser has taken the change in.
   */
  replace(segments) {
    const focused = document.activeElement?.closest?.(".segment");
    const focusIndex = focused ? this.items.findIndex((i) => i.li === focused) : -1;
    const live = this.list.getAttribute("aria-live");
    this.list.setAttribute("aria-live", "off");
    requestAnimationFrame(() => requestAnimationFrame(() => this.list.setAttribute("aria-live", live ?? "polite")));
    this.clear();
    const fragment = document.createDocumentFragment();
    for (const segment of segments) {
      const item = this.#build(segment, this.items.at(-1)?.segment);
      this.items.push(item);
      if (segment.id != null) this.byId.set(String(segment.id), item);
      fragment.append(item.li);
    }
    this.list.append(fragment);
    if (focusIndex >= 0 && this.items[focusIndex]) this.items[focusIndex].li.focus();
  }

  // ---- live turns ----

  /** The turn of a live session with this item id, made (pending) when new. */
  turn(itemId, startSeconds = null) {
    let item = this.byId.get(itemId);
    if (!item) {
      item = this.add({ id: itemId, start: startSeconds, end: null, text: "" });
      item.li.classList.add("live", "pending");
    } else if (startSeconds != null && item.segment.start == null) {
      item.segment.start = startSeconds;
      this.#setTime(item);
    }
    return item;
  }

  appendDelta(itemId, delta) {
    const item = this.turn(itemId);
    item.segment.text += delta;
    item.text.textContent = item.segment.text;
  }

  endTurnAudio(itemId, endSeconds) {
    const item = this.turn(itemId);
    item.segment.end = endSeconds;
  }

  completeTurn(itemId, transcript) {
    const item = this.turn(itemId);
    item.segment.text = transcript;
    item.text.textContent = transcript.trim();
    item.li.classList.remove("pending");
    if (!transcript.trim()) {
      // a turn that held no words (a cough, a door): it leaves no empty line behind
      item.li.remove();
      this.items = this.items.filter((i) => i !== item);
      this.byId.delete(itemId);
    }
  }

  // ---- speakers ----

  rename(label, name) {
    if (name) this.names[label] = name;
    else delete this.names[label];
    for (const item of this.items) {
      if (item.segment.speaker === label && item.speaker) {
        item.speaker.textContent = speakerName(label, this.names);
      }
    }
  }

  // ---- playback ----

  /** Highlight the segment (and word) at this time; scroll it into view while playing. */
  highlight(seconds, { follow = false } = {}) {
    const item = this.#at(seconds);
    if (item !== this.active) {
      this.active?.li.classList.remove("active");
      this.active?.li.removeAttribute("aria-current");
      this.active = item;
      if (item) {
        item.li.classList.add("active");
        item.li.setAttribute("aria-current", "true");
        if (follow) item.li.scrollIntoView({ block: "nearest", behavior: "smooth" });
      }
    }
    let word = null;
    if (item?.words.length) {
      word = item.words.find((w) => seconds >= w.start && seconds < w.end) ?? null;
    }
    if (word !== this.activeWord) {
      this.activeWord?.el.classList.remove("on");
      this.activeWord = word;
      word?.el.classList.add("on");
    }
  }

  #at(seconds) {
    // the last segment that has started; it stays lit through a short pause after it
    let found = null;
    for (const item of this.items) {
      const { start, end } = item.segment;
      if (start == null) continue;
      if (start > seconds) break;
      if (end == null || seconds < end + 0.25) found = item;
      else found = null;
    }
    return found;
  }

  #build(segment, previous = null) {
    const li = document.createElement("li");
    li.className = "segment";
    li.tabIndex = 0;
    const time = document.createElement("button");
    time.type = "button";
    time.className = "seg-time";
    time.tabIndex = -1;
    li.append(time);
    let speaker = null;
    if (segment.speaker != null) {
      speaker = document.createElement("span");
      speaker.className = "speaker";
      speaker.textContent = speakerName(segment.speaker, this.names);
      speaker.style.setProperty("--speaker-color", `var(--speaker-${speakerIndex(segment.speaker)})`);
      li.dataset.speaker = segment.speaker;
      // the label is shown where the speaker changes; a run of lines by one speaker reads as one
      if (previous?.speaker === segment.speaker) li.classList.add("continued");
      li.append(speaker);
    }
    const text = document.createElement("p");
    text.className = "seg-text";
    const words = [];
    const content = (segment.text ?? "").trim();
    if (Array.isArray(segment.words) && segment.words.length) {
      // each timed word wraps its own stretch of the segment's text, which stays as it is
      // (spacing, punctuation, scripts written without spaces); a word not found is left out
      let cursor = 0;
      for (const w of segment.words) {
        const token = String(w.word ?? "").trim();
        const at = token ? content.indexOf(token, cursor) : -1;
        if (at < 0) continue;
        if (at > cursor) text.append(content.slice(cursor, at));
        const span = document.createElement("span");
        span.className = "word";
        span.textContent = token;
        span.dataset.start = String(w.start);
        text.append(span);
        words.push({ start: Number(w.start), end: Number(w.end), el: span });
        cursor = at + token.length;
      }
      if (cursor < content.length) text.append(content.slice(cursor));
    } else {
      text.textContent = content;
    }
    li.append(text);
    const item = { segment: { ...segment }, li, time, text, speaker, words };
    this.#setTime(item);
    return item;
  }

  #setTime(item) {
    const { start, end } = item.segment;
    if (start == null) {
      item.time.textContent = "live";
      item.time.disabled = true;
      return;
    }
    item.time.disabled = false;
    item.li.dataset.start = String(start);
    if (end != null) item.li.dataset.end = String(end);
    item.time.textContent = formatClock(start);
    item.time.setAttribute("aria-label", `Play from ${formatClock(start)}`);
  }

  #clicked(event) {
    const word = event.target.closest?.(".word");
    if (word && this.list.contains(word)) {
      this.onSeek(Number(word.dataset.start));
      return;
    }
    const li = event.target.closest?.(".segment");
    if (li && this.list.contains(li)) this.#seekTo(li);
  }

  #seekTo(li) {
    if (li.dataset.start !== undefined) this.onSeek(Number(li.dataset.start));
  }
}
