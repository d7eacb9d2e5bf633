// Pure transcript writers for the page's downloads: SRT, WebVTT, plain text and JSON.
//
// They follow src/formats.py: times rounded to whole milliseconds before they are split, hours
// always written, cue text never holding "-->" or blank lines, empty cues dropped, starts kept
// monotonic and every time clamped to [0, duration]. A segment with a speaker keeps it: a voice
// tag in WebVTT (<v Speaker 1>), a "Speaker 1: " prefix in SRT and text.

/** "HH:MM:SS,mmm" (SRT) or "HH:MM:SS.mmm" (VTT). */
export function formatTimestamp(seconds, decimalMarker = ".") {
  let ms = Math.round(Math.max(0, seconds) * 1000);
  const hours = Math.floor(ms / 3_600_000);
  ms -= hours * 3_600_000;
  const minutes = Math.floor(ms / 60_000);
  ms -= minutes * 60_000;
  const secs = Math.floor(ms / 1000);
  ms -= secs * 1000;
  const two = (n) => String(n).padStart(2, "0");
  return `${two(hours)}:${two(minutes)}:${two(secs)}${decimalMarker}${String(ms).padStart(3, "0")}`;
}

/** "1:05" or "1:02:05" for people (the segment list, the progress line). */
export function formatClock(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** "SPEAKER_00" -> "Speaker 1"; a name the person gave is kept as it is. */
export function speakerName(label, names = {}) {
  if (label == null) return null;
  if (names[label]) return names[label];
  const match = /^SPEAKER_(\d+)$/.exec(label);
  return match ? `Speaker ${Number(match[1]) + 1}` : String(label);
}

function cleanCueText(text) {
  return String(text)
    .replaceAll("-->", "->")
    .split("\n")
    .map((line) => line.split(/\s+/).filter(Boolean).join(" "))
    .filter(Boolean)
    .join("\n");
}

/** Segments as cues: cleaned, empty ones dropped, monotonic and clamped. */
export function cues(segments, duration = null, names = {}) {
  const out = [];
  let previousStart = 0;
  for (const segment of segments) {
    const text = cleanCueText(segment.text ?? "");
    if (!text) continue;
    let start = Math.max(Number(segment.start) || 0, previousStart, 0);
    let end = Math.max(Number(segment.end) || 0, start);
    if (duration != null && Number.isFinite(duration)) {
      start = Math.min(start, duration);
      end = Math.min(end, duration);
    }
    out.push({ start, end, text, speaker: speakerName(segment.speaker, names) });
    previousStart = start;
  }
  return out;
}

export function toSrt(segments, duration = null, names = {}) {
  return cues(segments, duration, names)
    .map((cue, i) => {
      const time = `${formatTimestamp(cue.start, ",")} --> ${formatTimestamp(cue.end, ",")}`;
      const text = cue.speaker ? `${cue.speaker}: ${cue.text}` : cue.text;
      return `${i + 1}\n${time}\n${text}\n`;
    })
    .join("\n");
}

function escapeVtt(text) {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

export function toVtt(segments, duration = null, names = {}) {
  const blocks = cues(segments, duration, names).map((cue) => {
    const time = `${formatTimestamp(cue.start)} --> ${formatTimestamp(cue.end)}`;
    const text = escapeVtt(cue.text);
    const voice = cue.speaker ? `<v ${escapeVtt(cue.speaker)}>` : "";
    return `${time}\n${voice}${text}\n`;
  });
  return `WEBVTT\n\n${blocks.join("\n")}`;
}

/** One paragraph, or one line per speaker turn when the transcript has speakers. */
export function toText(segments, names = {}) {
  const parts = segments.map((s) => ({ text: (s.text ?? "").trim(), speaker: s.speaker }));
  const spoken = parts.filter((p) => p.text);
  if (!spoken.some((p) => p.speaker != null)) return spoken.map((p) => p.text).join(" ") + "\n";
  const lines = [];
  for (const part of spoken) {
    const last = lines.at(-1);
    if (last && last.speaker === part.speaker) last.text += ` ${part.text}`;
    else lines.push({ ...part });
  }
  return lines.map((l) => `${speakerName(l.speaker, names) ?? "?"}: ${l.text}`).join("\n") + "\n";
}

/** The result as the verbose_json the API answers (text, language, duration, segments). */
export function toJson(result) {
  return JSON.stringify(result, null, 2) + "\n";
}
