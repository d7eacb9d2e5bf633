// AudioWorklet: the microphone as 16-bit PCM, mono, at 24 kHz (the Realtime API's audio/pcm).
//
// The context runs at 24 kHz where the browser allows it, and then this passes samples through.
// Otherwise (a context at 44.1 or 48 kHz) it low-passes below the new Nyquist frequency with a
// short windowed-sinc filter and resamples by linear interpolation. It posts chunks of about
// 100 ms ({ pcm: ArrayBuffer, level: 0..1 }) to the page, which sends them to the socket.

const OUT_RATE = 24000;
const CHUNK = 2400; // 100 ms at 24 kHz
const TAPS = 31;

function lowPass(cutoff) {
  // cutoff as a fraction of the input rate (0..0.5); Blackman-windowed sinc, unit DC gain
  const h = new Float32Array(TAPS);
  const mid = (TAPS - 1) / 2;
  let sum = 0;
  for (let i = 0; i < TAPS; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (TAPS - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (TAPS - 1));
    h[i] = sinc * w;
    sum += h[i];
  }
  for (let i = 0; i < TAPS; i++) h[i] /= sum;
  return h;
}

class PcmEncoder extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / OUT_RATE; // input samples per output sample
    this.filter = this.ratio > 1 ? lowPass((0.5 / this.ratio) * 0.9) : null;
    this.history = new Float32Array(TAPS); // the filter's last inputs (a ring)
    this.historyAt = 0;
    this.previous = 0; // the last filtered input sample, for interpolation across blocks
    this.position = 0; // where the next output sample falls, in input samples from `previous`
    this.out = new Int16Array(CHUNK);
    this.outAt = 0;
    this.peak = 0;
    this.stopped = false;
    this.port.onmessage = (event) => {
      if (event.data === "flush") this.flush();
      if (event.data === "stop") {
        this.flush();
        this.stopped = true;
      }
    };
  }

  filtered(sample) {
    if (!this.filter) return sample;
    this.history[this.historyAt] = sample;
    this.historyAt = (this.historyAt + 1) % TAPS;
    let acc = 0;
    for (let i = 0; i < TAPS; i++) acc += this.filter[i] * this.history[(this.historyAt + i) % TAPS];
    return acc;
  }

  emit(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.out[this.outAt++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    this.peak = Math.max(this.peak, Math.abs(s));
    if (this.outAt === CHUNK) this.flush();
  }

  flush() {
    if (this.outAt === 0) return;
    const pcm = this.out.slice(0, this.outAt).buffer;
    this.port.postMessage({ pcm, level: this.peak }, [pcm]);
    this.outAt = 0;
    this.peak = 0;
  }

  process(inputs) {
    if (this.stopped) return false;
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const frames = channels[0].length;
    for (let i = 0; i < frames; i++) {
      let sample = 0;
      for (const channel of channels) sample += channel[i];
      sample /= channels.length;
      if (this.ratio === 1) {
        this.emit(sample);
        continue;
      }
      const current = this.filtered(sample);
      // output samples that fall between `previous` (at 0) and `current` (at 1)
      while (this.position <= 1) {
        this.emit(this.previous + (current - this.previous) * this.position);
        this.position += this.ratio;
      }
      this.position -= 1;
      this.previous = current;
    }
    return true;
  }
}

registerProcessor("pcm-encoder", PcmEncoder);
