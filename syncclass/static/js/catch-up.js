// Catching up on the lesson over HTTP: the lesson as recorded from an earlier time
// (GET /api/lessons/ID/catch-up/camera?from=T), fed chunk by chunk into a MediaSource as it
// arrives and as the recording grows. The stream starts at the keyframe before T; the player
// seeks to T itself. What has been watched is dropped from the buffer, so a whole lesson
// never sits in memory.

import { api } from './api.js';

const KEEP_BEHIND_S = 20; // watched media kept (a small step back stays smooth)
const TRIM_EVERY_S = 30;

export class CatchUpPlayer {
  /** `video`: the element it plays in; `token`: the classroom's token. */
  constructor(lessonId, token, video) {
    this.lessonId = lessonId;
    this.token = token;
    this.video = video;
    this.origin = null; // server time of the stream's time 0
    this.clockOffset = 0; // server time - this browser's time, in seconds
    this.abort = null;
    this.failed = null;
  }

  /** What there is to catch up on: {starts_at, recorded_until, ...} of the camera, or null. */
  async info() {
    const data = await api('GET', `/api/lessons/${encodeURIComponent(this.lessonId)}/catch-up`, {
      credential: this.token,
    });
    this.clockOffset = data.now - Date.now() / 1000;
    return data.sources.camera ?? null;
  }

  /** The server's clock now. */
  now() {
    return Date.now() / 1000 + this.clockOffset;
  }

  /** The server time of what is on screen, while playing. */
  position() {
    if (this.origin === null || this.video.readyState < 1) return null;
    return this.origin + this.video.currentTime;
  }

  /** How far behind live what is on screen is, in seconds. */
  behind() {
    const at = this.position();
    return at === null ? null : Math.max(0, this.now() - at);
  }

  /** Play from server time `at`; resolves once the first picture can play. `who`: the
   * classroom's {name, client} when it watches this way for want of a WebRTC path (the
   * server then counts it present), its {client} alone when it rewinds beside its live view
   * (the stream stops if the teacher removes it). */
  async start(at, source, who = null) {
    this.stop();
    const abort = new AbortController();
    this.abort = abort;
    const media = new MediaSource();
    this.video.src = URL.createObjectURL(media);
    await new Promise((resolve) => media.addEventListener('sourceopen', resolve, { once: true }));
    const buffer = media.addSourceBuffer(`${source.content_type}; codecs="${source.codecs}"`);
    let named = '';
    if (who?.name) named += `&name=${encodeURIComponent(who.name)}`;
    if (who?.client) named += `&client=${encodeURIComponent(who.client)}`;
    const url = `${source.url}?from=${at.toFixed(3)}${named}`;
    const response = await fetch(url, {
      headers: { Authorization: `Bearer ${this.token}` },
      signal: abort.signal,
    });
    if (!response.ok) throw new Error(`catch-up refused: ${response.status}`);
    this.origin = Number(response.headers.get('X-Catch-Up-Origin'));
    const reader = response.body.getReader();
    const ready = new Promise((resolve, reject) => {
      this.video.addEventListener('canplay', resolve, { once: true });
      this.feed(reader, media, buffer, abort, at, reject).catch(reject);
    });
    await ready;
    await this.video.play().catch(() => {});
  }

  async feed(reader, media, buffer, abort, at, reject) {
    let seeked = false;
    let trimmedAt = 0;
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        if (!abort.signal.aborted) reject(error);
        return;
      }
      if (abort.signal.aborted) return;
      if (chunk.done) {
        if (media.readyState === 'open') media.endOfStream();
        return;
      }
      await append(buffer, chunk.value);
      if (!seeked && buffer.buffered.length) {
        seeked = true;
        this.video.currentTime = Math.max(at - this.origin, buffer.buffered.start(0));
      }
      const now = this.video.currentTime;
      if (now - trimmedAt > TRIM_EVERY_S && now > KEEP_BEHIND_S) {
        trimmedAt = now;
        await remove(buffer, 0, now - KEEP_BEHIND_S);
      }
    }
  }

  setRate(rate) {
    this.video.playbackRate = rate;
  }

  stop() {
    if (this.abort) this.abort.abort();
    this.abort = null;
    this.origin = null;
    if (this.video.src) {
      this.video.pause();
      URL.revokeObjectURL(this.video.src);
      this.video.removeAttribute('src');
      this.video.load();
    }
  }
}

function append(buffer, data) {
  return new Promise((resolve, reject) => {
    buffer.addEventListener('updateend', resolve, { once: true });
    buffer.addEventListener('error', reject, { once: true });
    buffer.appendBuffer(data);
  });
}

function remove(buffer, start, end) {
  return new Promise((resolve) => {
    buffer.addEventListener('updateend', resolve, { once: true });
    buffer.remove(start, end);
  });
}
