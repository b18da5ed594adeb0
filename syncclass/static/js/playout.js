// How long the classroom's browser holds the lesson's pictures before showing them. On a line
// that loses packets, a lost packet comes back only after a round trip (the browser asks for
// it, the server sends it again): a picture shown on the browser's usual short schedule is
// not whole by then, and the screen stops (a freeze) until it is. Held a round trip and a
// half longer, the repaired picture is in time, and the lesson runs smoothly a little later:
// for a lecture, a delay nobody sees is better than a picture that stops.
//
// The hold is asked of the browser (RTCRtpReceiver.jitterBufferTarget, a floor under its own
// estimate) only while the line needs repairs, and given back after a quiet half minute. The
// sound follows the picture: the browser keeps them in step.

const REPAIRS_PER_S = 0.5; // the browser's retransmission requests that call for the hold
const HOLD_RTTS = 1.5;
const HOLD_MARGIN_MS = 100;
const HOLD_MIN_MS = 200;
const HOLD_MAX_MS = 1200; // a satellite line: a 600 ms round trip and a half, and a margin
const QUIET_MS = 30000; // no repairs this long: back to the browser's own schedule
const STEP_MS = 50; // changes smaller than this are not worth a change of schedule

/** The hold (ms) for a line with this round trip, on HOLD_MIN_MS..HOLD_MAX_MS. */
export function holdFor(rttMs) {
  const wanted = HOLD_RTTS * rttMs + HOLD_MARGIN_MS;
  return Math.round(Math.min(HOLD_MAX_MS, Math.max(HOLD_MIN_MS, wanted)));
}

export class Playout {
  constructor() {
    this.receivers = [];
    this.holdMs = null; // null: the browser's own schedule
    this.repairedAt = -Infinity;
  }

  /** The video receivers of a new session (WhepPlayer.receivers); their hold starts afresh. */
  attach(receivers) {
    this.receivers = Object.entries(receivers)
      .filter(([slot]) => !slot.endsWith('Sound'))
      .map(([, receiver]) => receiver)
      .filter((receiver) => 'jitterBufferTarget' in receiver);
    this.holdMs = null;
    this.repairedAt = -Infinity;
  }

  /**
   * One sample of the line (ReceiveStats.repairs): `nacksPerS`, the retransmission requests
   * the browser sent per second, and `rttMs`, the round trip (null when unknown).
   */
  update({ nacksPerS, rttMs }, now = performance.now()) {
    if (nacksPerS >= REPAIRS_PER_S && rttMs !== null) {
      this.repairedAt = now;
      const hold = holdFor(rttMs);
      // grow by any real step, shrink only by twice that: a round trip measured a little
      // shorter must not make the browser speed up and slow down again
      const change = this.holdMs === null ? Infinity : hold - this.holdMs;
      if (change >= STEP_MS || change <= -2 * STEP_MS) this.set(hold);
    } else if (this.holdMs !== null && now - this.repairedAt >= QUIET_MS) {
      this.set(null);
    }
  }

  set(holdMs) {
    this.holdMs = holdMs;
    for (const receiver of this.receivers) {
      try {
        receiver.jitterBufferTarget = holdMs;
      } catch {
        // a receiver of a closed connection: the next session attaches its own
      }
    }
  }
}
