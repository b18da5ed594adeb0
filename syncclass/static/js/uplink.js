// What the teacher's browser sends of one source, read from its own getStats() every 2 s:
// the picture size, the bitrate, and whether the school's uplink holds the picture back. Each
// sample is also handed to `report` (the page tells the server: /api/status, /metrics).

import { setText } from './i18n.js';

const EVERY_MS = 2000;

export class UplinkMeter {
  /** `element` shows the line; `connection()` is the source's RTCPeerConnection or null;
   * `report(sample)` gets {available_kbps, sent_kbps, width, height, limited}. */
  constructor(element, connection, report = () => {}) {
    this.element = element;
    this.connection = connection;
    this.report = report;
    this.last = null; // {at, bytes}
    this.timer = setInterval(() => this.sample().catch(() => {}), EVERY_MS);
  }

  async sample() {
    const pc = this.connection();
    if (!pc || pc.connectionState !== 'connected') {
      this.element.hidden = true;
      this.last = null;
      return;
    }
    const stats = await pc.getStats();
    const sent = { width: 0, height: 0, bytes: 0, at: 0, reason: 'none', available: null };
    stats.forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        sent.width = Math.max(sent.width, r.frameWidth || 0);
        sent.height = Math.max(sent.height, r.frameHeight || 0);
        sent.bytes += r.bytesSent || 0;
        sent.at = r.timestamp;
        if (r.qualityLimitationReason && r.qualityLimitationReason !== 'none') sent.reason = r.qualityLimitationReason;
      }
      if (r.type === 'transport' && r.selectedCandidatePairId) {
        const pair = stats.get(r.selectedCandidatePairId);
        if (pair && pair.availableOutgoingBitrate !== undefined) sent.available = pair.availableOutgoingBitrate;
      }
    });
    const last = this.last;
    this.last = { at: sent.at, bytes: sent.bytes };
    if (!last || sent.at <= last.at || !sent.width) return;
    const rate = ((sent.bytes - last.bytes) * 8000) / (sent.at - last.at);
    // 'bandwidth': the encoder lowered the picture because the uplink's estimate is too small
    const limited = sent.reason === 'bandwidth';
    const sample = { sent_kbps: Math.round(rate / 1000), width: sent.width, height: sent.height, limited };
    if (sent.available !== null) sample.available_kbps = Math.round(sent.available / 1000);
    this.report(sample);
    this.element.hidden = false;
    this.element.dataset.limited = String(limited);
    setText(this.element, limited ? 'teach.uplink.limited' : 'teach.uplink.good', {
      size: `${sent.width}×${sent.height}`,
      rate: (rate / 1e6).toFixed(1),
      available: sent.available === null ? '?' : (sent.available / 1e6).toFixed(1),
    });
  }

  stop() {
    clearInterval(this.timer);
    this.element.hidden = true;
  }
}
