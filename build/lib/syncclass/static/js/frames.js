// Whether a received video track is showing pictures now: its decoded-frame count grows.
// A source the teacher stops leaves its track silent (no packets), not ended, so the
// count is the only reliable sign.

const STALE_MS = 1500;

export class FrameWatch {
  constructor(receiver) {
    this.receiver = receiver;
    this.frames = 0;
    this.changedAt = 0;
  }

  async poll(now = performance.now()) {
    let frames = this.frames;
    try {
      const stats = await this.receiver.getStats();
      stats.forEach((report) => {
        if (report.type === 'inbound-rtp' && report.kind === 'video') {
          frames = report.framesDecoded ?? frames;
        }
      });
    } catch {
      return this.flowing(now);
    }
    if (frames !== this.frames) {
      this.frames = frames;
      this.changedAt = now;
    }
    return this.flowing(now);
  }

  flowing(now = performance.now()) {
    return this.changedAt > 0 && now - this.changedAt < STALE_MS;
  }
}
