// Receiving over WHEP. A classroom receives the lesson: video m-lines for the camera, the
// courseware and the stage's three places, then audio m-lines for the camera and the stage,
// which the server maps in that order (a classroom on stage is never sent itself; its stage
// places show the others). The teacher receives one classroom's return feed: one video and one
// audio m-line.

import { climb } from './ladder.js';
import { leave, negotiate, watchConnection } from './offer.js';

/** [source, kind] of each m-line, in the order of the offer. */
export const STAGE_SLOTS = ['stage', 'stage2', 'stage3'];
export const LESSON_SLOTS = [
  ['camera', 'video'],
  ['courseware', 'video'],
  ...STAGE_SLOTS.map((slot) => [slot, 'video']),
  ['camera', 'audio'],
  ...STAGE_SLOTS.map((slot) => [slot, 'audio']),
];
export const FEED_SLOTS = [
  ['feed', 'video'],
  ['feed', 'audio'],
];

export class WhepPlayer {
  constructor(url, token, { onDrop = () => {}, slots = LESSON_SLOTS } = {}) {
    this.url = url;
    this.token = token;
    this.onDrop = onDrop;
    this.slots = slots;
    this.pc = null;
    this.session = null;
    this.streams = {}; // source -> MediaStream of its video and sound
    this.receivers = {}; // source -> the video's RTCRtpReceiver; `${source}Sound` -> the sound's
  }

  /** The teacher's camera and sound, the shared screen, the classroom on stage. */
  get camera() {
    return this.streams.camera ?? null;
  }

  get courseware() {
    return this.streams.courseware ?? null;
  }

  /** The picture and sound of one stage place (STAGE_SLOTS). */
  stream(slot) {
    return this.streams[slot] ?? null;
  }

  /** Receive, climbing the fallback ladder (ladder.js) until a path connects. */
  async start() {
    this.climbing = false;
    await climb(this);
  }

  /** One session with the RTCPeerConnection `config`; returns its connection. */
  async open(config) {
    const pc = new RTCPeerConnection(config);
    this.pc = pc;
    const tracks = {};
    for (const [source, kind] of this.slots) {
      const { receiver } = pc.addTransceiver(kind, { direction: 'recvonly' });
      this.receivers[kind === 'video' ? source : `${source}Sound`] = receiver;
      (tracks[source] ??= []).push(receiver.track);
    }
    this.streams = Object.fromEntries(
      Object.entries(tracks).map(([source, list]) => [source, new MediaStream(list)]),
    );
    watchConnection(pc, (state) => {
      if (this.pc === pc && !this.climbing) this.onDrop(state);
    });
    try {
      this.session = await negotiate(pc, this.url, this.token);
    } catch (error) {
      this.close();
      throw error;
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

  get connectionState() {
    return this.pc ? this.pc.connectionState : 'closed';
  }

  close() {
    if (this.pc) this.pc.close();
    this.pc = null;
  }

  async stop({ keepalive = false } = {}) {
    const session = this.session;
    this.session = null;
    this.close();
    await leave(session, this.token, { keepalive });
  }
}
