// The panic alarm: a tone (WebAudio) and a flashing tab title, repeated until every raised
// panic is acknowledged. Browsers start audio only after a user gesture; the console is signed
// into with one, and the context is resumed on every click in case it was suspended.

const BEEP_EVERY_MS = 1200;

export class Alarm {
  constructor(onChange) {
    this.onChange = onChange;
    /** Keys of the panics sounding. */
    this.raised = new Set();
    this.timer = 0;
    this.audio = null;
    this.title = document.title;
    /** Beeps played since the page opened (what a test can observe). */
    this.beeps = 0;
    window.bahinlinkAlarm = this;
    document.addEventListener("click", () => this.context()?.resume?.(), true);
  }

  get sounding() {
    return this.raised.size > 0;
  }

  context() {
    if (!this.audio) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return null;
      this.audio = new Ctx();
    }
    return this.audio;
  }

  raise(key) {
    this.raised.add(key);
    if (!this.timer) {
      this.beep();
      this.timer = setInterval(() => this.beep(), BEEP_EVERY_MS);
    }
    this.onChange(true);
  }

  clear(key) {
    this.raised.delete(key);
    if (!this.raised.size) this.silence();
  }

  silence() {
    this.raised.clear();
    clearInterval(this.timer);
    this.timer = 0;
    document.title = this.title;
    this.onChange(false);
  }

  beep() {
    this.beeps += 1;
    document.title = document.title === this.title ? "⚠ PANIC — BahinLink" : this.title;
    const ctx = this.context();
    if (!ctx) return;
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.2, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + 0.6);
    osc.connect(gain).connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.6);
  }
}
