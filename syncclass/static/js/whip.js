// Publishing one source (camera, courseware, or a classroom's return feed) over WHIP.

import { leave, negotiate, watchConnection } from './offer.js';

export class WhipPublisher {
  /**
   * `onDrop(state)` is called when an established publication is lost; `maxBitrate` caps the
   * bits per second of each kind (`{video: 300000}`), for a return feed on a thin link;
   * `degradation` is what the browser gives up first when the uplink is short
   * (`{video: 'maintain-resolution'}` keeps courseware text sharp).
   */
  constructor(
    url,
    token,
    { onDrop = () => {}, onConnected = () => {}, maxBitrate = {}, degradation = {} } = {},
  ) {
    this.url = url;
    this.token = token;
    this.onDrop = onDrop;
    this.onConnected = onConnected;
    this.maxBitrate = maxBitrate;
    this.degradation = degradation;
    this.pc = null;
    this.session = null;
    this.senders = new Map(); // kind -> RTCRtpSender
  }

  async publish(tracks) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    for (const track of tracks) {
      const init = { direction: 'sendonly' };
      const cap = this.maxBitrate[track.kind];
      if (cap) init.sendEncodings = [{ maxBitrate: cap }];
      const transceiver = pc.addTransceiver(track, init);
      this.senders.set(track.kind, transceiver.sender);
    }
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'connected' && this.pc === pc) this.onConnected();
    });
    watchConnection(pc, (state) => {
      if (this.pc === pc) this.onDrop(state);
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
