// How well a classroom receives the lesson, from its receiving connection's getStats(): the
// figures it reports on the lesson's events socket every 2 s, each over the time since the
// previous sample, and the path its media takes (`path`: udp, tcp or relay; ladder.js).
//
// `loss` is the share of packets that never arrived, after retransmission repaired what it
// could: what the classroom actually missed (the server sees from its side how much it had to
// retransmit). `freezes` counts the video freezes of this connection so far (the server grades
// the new ones). `repairs` is what the page itself does with the line (playout.js): the
// retransmissions its browser asked for per second, and the round trip.

import { pathOf } from './ladder.js';

export class ReceiveStats {
  constructor(pc) {
    this.pc = pc;
    this.last = null;
    this.repairs = { nacksPerS: 0, rttMs: null };
  }

  /** The figures since the previous call; null the first time (nothing to compare yet). */
  async sample(now = performance.now()) {
    const report = await this.pc.getStats();
    const totals = { bytes: 0, received: 0, lost: 0, freezes: 0, nacks: 0, frames: {} };
    let jitter = 0;
    let rtt = null;
    let pairId = null;
    const pairs = new Map();
    report.forEach((r) => {
      if (r.type === 'inbound-rtp') {
        totals.bytes += (r.bytesReceived || 0) + (r.headerBytesReceived || 0);
        totals.received += r.packetsReceived || 0;
        totals.lost += Math.max(0, r.packetsLost || 0);
        if (r.packetsReceived) jitter = Math.max(jitter, r.jitter || 0);
        if (r.kind === 'video') {
          totals.freezes += r.freezeCount || 0;
          totals.nacks += r.nackCount || 0;
          totals.frames[r.id] = r.framesDecoded || 0;
        }
      } else if (r.type === 'transport' && r.selectedCandidatePairId) {
        pairId = r.selectedCandidatePairId;
      } else if (r.type === 'candidate-pair') {
        pairs.set(r.id, r);
      } else if (r.type === 'remote-outbound-rtp' && r.roundTripTime !== undefined) {
        rtt ??= r.roundTripTime; // audio sender reports carry one when the pair has none
      }
    });
    const pair =
      pairs.get(pairId) ?? [...pairs.values()].find((p) => p.nominated && p.state === 'succeeded');
    if (pair && pair.currentRoundTripTime !== undefined) rtt = pair.currentRoundTripTime;

    const path = pathOf(report);
    const last = this.last;
    this.last = { at: now, ...totals };
    if (!last || now <= last.at) return null;
    const seconds = (now - last.at) / 1000;
    this.repairs = {
      nacksPerS: Math.max(0, totals.nacks - last.nacks) / seconds,
      rttMs: rtt === null ? null : Math.round(rtt * 1000),
    };
    const lost = Math.max(0, totals.lost - last.lost);
    const received = Math.max(0, totals.received - last.received);
    const expected = received + lost;
    // the busiest picture (the teacher's camera, or the courseware) sets the frame rate
    let fps = 0;
    for (const [id, frames] of Object.entries(totals.frames)) {
      fps = Math.max(fps, (frames - (last.frames[id] ?? frames)) / seconds);
    }
    return {
      type: 'stats',
      bitrate_kbps: Math.round((Math.max(0, totals.bytes - last.bytes) * 8) / seconds / 1000),
      loss: expected > 0 ? Number((lost / expected).toFixed(4)) : 0,
      jitter_ms: Math.round(jitter * 1000),
      rtt_ms: rtt === null ? null : Math.round(rtt * 1000),
      freezes: totals.freezes,
      fps: Math.round(fps * 10) / 10,
      ...(path ? { path } : {}), // 'udp', 'tcp' or 'relay': how the media reaches this room
    };
  }
}
