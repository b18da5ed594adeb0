// Publishing one source (camera, courseware, or a classroom's return feed) over WHIP.

import { climb } from './ladder.js';
import { leave, negotiate, watchConnection } from './offer.js';

export class WhipPublisher {
  /**
   * `onDrop(state)` is called when an established publication is lost; `maxBitrate` caps the
   * bits per second of each kind (`{video: 300000}`), for a return feed on a thin link;
   * `degradation` is what the browser gives up first when the uplink is short
   * (`{video: 'maintain-resolution'}` keeps courseware text sharp).
   * `layers` sends the video in layers classrooms can choose from (see videoEncodings).
   */
  constructor(
    url,
    token,
    {
      onDrop = () => {},
      onConnected = () => {},
      maxBitrate = {},
      degradation = {},
      layers = false,
    } = {},
  ) {
    this.url = url;
    this.token = token;
    this.onDrop = onDrop;
    this.onConnected = onConnected;
    this.maxBitrate = maxBitrate;
    this.degradation = degradation;
    this.layers = layers;
    this.pc = null;
    this.session = null;
    this.senders = new Map(); // kind -> RTCRtpSender
  }

  /** Publish `tracks`, climbing the fallback ladder (ladder.js) until a path connects. */
  async publish(tracks) {
    this.tracks = tracks;
    this.climbing = false;
    await climb(this);
  }

  /** One session with the RTCPeerConnection `config`; returns its connection. */
  async open(config) {
    const tracks = this.tracks;
    const pc = new RTCPeerConnection(config);
    this.pc = pc;
    this.senders.clear();
    for (const track of tracks) {
      const init = { direction: 'sendonly' };
      const cap = this.maxBitrate[track.kind];
      if (cap) init.sendEncodings = [{ maxBitrate: cap }];
      if (this.layers && track.kind === 'video') init.sendEncodings = videoEncodings(track);
      const transceiver = addTransceiver(pc, track, init);
      this.senders.set(track.kind, transceiver.sender);
    }
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'connected' && this.pc === pc) this.onConnected();
    });
    watchConnection(pc, (state) => {
      if (this.pc === pc && !this.climbing) this.onDrop(state);
    });
    try {
      this.session = await negotiate(pc, this.url, this.token);
    } catch (error) {
      this.close();
      throw error;
    }
    for (const [kind, preference] of Object.entries(this.degradation)) {
      const sender = this.senders.get(kind);
      if (!sender) continue;
      const parameters = sender.getParameters();
      parameters.degradationPreference = preference;
      await sender.setParameters(parameters).catch(() => {}); // a browser without it sends as before
    }
    return pc;
  }

  /** Leave a session whose rung did not connect. */
  async abandon() {
    const session = this.session;
    this.session = null;
    this.close();
    await leave(session, this.token);
  }

  /** Swap a track (another camera or microphone) without renegotiating. */
  async replaceTrack(kind, track) {
    const sender = this.senders.get(kind);
    if (sender) await sender.replaceTrack(track);
  }

  get connectionState() {
    return this.pc ? this.pc.connectionState : 'closed';
  }

  close() {
    if (this.pc) this.pc.close();
    this.pc = null;
    this.senders.clear();
  }

  /** Stop publishing: the server forgets the session at once. */
  async stop({ keepalive = false } = {}) {
    const session = this.session;
    this.session = null;
    this.close();
    await leave(session, this.token, { keepalive });
  }
}

// Simulcast layers for a camera of at least 640x360: full, half and quarter size (e.g.
// 1280x720, 640x360, 320x180), each with three temporal layers where the browser can.
const SIMULCAST = [
  { rid: 'l', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'm', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'h', scaleResolutionDownBy: 1, maxBitrate: 2_000_000 },
];

function videoEncodings(track) {
  const { width = 0, height = 0 } = track.getSettings();
  const layers = Math.min(width, height) >= 360 && Math.max(width, height) >= 640;
  const encodings = layers ? SIMULCAST.map((e) => ({ ...e })) : [{}];
  return encodings.map((e) => ({ ...e, scalabilityMode: 'L1T3' }));
}

/** addTransceiver, retried without scalabilityMode where the browser does not know it. */
function addTransceiver(pc, track, init) {
  try {
    return pc.addTransceiver(track, init);
  } catch (error) {
    if (!init.sendEncodings?.some((e) => e.scalabilityMode)) throw error;
    const sendEncodings = init.sendEncodings.map(({ scalabilityMode, ...e }) => e);
    return pc.addTransceiver(track, { ...init, sendEncodings });
  }
}
