// Receiving the lesson over WHEP: two video m-lines (camera, courseware) and one audio
// m-line (the teacher's sound), in the order the server maps them.

import { leave, negotiate, watchConnection } from './offer.js';

export class WhepPlayer {
  constructor(url, token, { onDrop = () => {} } = {}) {
    this.url = url;
    this.token = token;
    this.onDrop = onDrop;
    this.pc = null;
    this.session = null;
    this.camera = null; // MediaStream: the teacher's camera and sound
    this.courseware = null; // MediaStream: the shared screen
    this.receivers = {};
  }

  async start() {
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    const camera = pc.addTransceiver('video', { direction: 'recvonly' });
    const courseware = pc.addTransceiver('video', { direction: 'recvonly' });
    const sound = pc.addTransceiver('audio', { direction: 'recvonly' });
    this.receivers = { camera: camera.receiver, courseware: courseware.receiver, sound: sound.receiver };
    this.camera = new MediaStream([camera.receiver.track, sound.receiver.track]);
    this.courseware = new MediaStream([courseware.receiver.track]);
    watchConnection(pc, (state) => {
      if (this.pc === pc) this.onDrop(state);
    });
    try {
      this.session = await negotiate(pc, this.url, this.token);
    } catch (error) {
      this.close();
      throw error;
    }
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
