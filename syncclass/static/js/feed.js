// A classroom's return feed: its camera and microphone at low resolution, published to the
// teacher over WHIP as the source feed:<classroom>, with a small self-view. A classroom with no
// camera sends its sound alone, and one with neither sends nothing; watching goes on either way.

import { clientId } from './client-id.js';
import { Publication } from './publication.js';

const VIDEO = { width: { ideal: 320 }, height: { ideal: 240 }, frameRate: { ideal: 15 } };
const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
// a village school's uplink is thin and the teacher only needs to see who is talking
const MAX_BITRATE = { video: 300000, audio: 32000 };
const RETRY_MS = 5000;

async function openCameraAndMicrophone() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: VIDEO, audio: AUDIO });
    return { video: stream.getVideoTracks()[0] ?? null, audio: stream.getAudioTracks()[0] ?? null };
  } catch {
    const one = async (kind, constraints) => {
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ [kind]: constraints });
        return stream.getTracks()[0] ?? null;
      } catch {
        return null;
      }
    };
    return { video: await one('video', VIDEO), audio: await one('audio', AUDIO) };
  }
}

export class ReturnFeed {
  /**
   * `onChange(state)`: 'off', 'starting', 'live', 'reconnecting', 'nodevice' (no camera nor
   * microphone) or 'refused' (the server will not take it); `onEnded()`: the lesson is over.
   */
  constructor(lessonId, token, { preview, onChange = () => {}, onEnded = () => {} }) {
    this.lessonId = lessonId;
    this.token = token;
    this.preview = preview;
    this.handlers = { onChange, onEnded };
    this.wanted = true; // on by default; the classroom may turn it off
    this.name = '';
    this.tracks = { video: null, audio: null };
    this.publication = null;
    this.opening = false;
    this.state = 'off';
    this.timer = null;
  }

  get hasVideo() {
    return Boolean(this.tracks.video);
  }

  get hasAudio() {
    return Boolean(this.tracks.audio);
  }

  set(state) {
    this.state = state;
    this.handlers.onChange(state);
  }

  /** Publish as `name` if the classroom wants its feed on and it is not already going. */
  async ensure(name) {
    if (name !== this.name && this.publication) await this.halt();
    this.name = name;
    if (!this.wanted || this.publication || this.opening || !name) return;
    clearTimeout(this.timer);
    this.set('starting');
    if (!this.tracks.video && !this.tracks.audio) {
      this.opening = true;
      try {
        this.tracks = await openCameraAndMicrophone();
      } finally {
        this.opening = false;
      }
      if (!this.wanted) {
        this.release();
        return this.set('off');
      }
    }
    if (!this.tracks.video && !this.tracks.audio) return this.set('nodevice');
    this.preview.srcObject = this.tracks.video ? new MediaStream([this.tracks.video]) : null;
    const url =
      `/whip/${encodeURIComponent(this.lessonId)}` +
      `?source=feed&name=${encodeURIComponent(this.name)}&client=${encodeURIComponent(clientId())}`;
    const publication = new Publication(url, this.token, [this.tracks.audio, this.tracks.video], {
      maxBitrate: MAX_BITRATE,
      onChange: (state) => {
        if (this.publication === publication) this.set(state === 'stopped' ? 'off' : state);
      },
      onEnded: () => {
        this.close();
        this.handlers.onEnded();
      },
      onRefused: (error) => {
        if (this.publication !== publication) return;
        this.publication = null;
        // 409: this classroom's own session is not (yet, or again) in the lesson
        if ([404, 409, 429].includes(error.status)) {
          this.set('reconnecting');
          this.timer = setTimeout(() => this.ensure(this.name), RETRY_MS);
        } else {
          this.set('refused');
        }
      },
    });
    this.publication = publication;
    publication.start();
  }

  /** The classroom's on/off switch: off stops sending and lets go of the camera. */
  async turn(on) {
    this.wanted = on;
    if (on) return this.ensure(this.name);
    await this.halt();
    this.release();
    this.set('off');
  }

  async halt() {
    clearTimeout(this.timer);
    const publication = this.publication;
    this.publication = null;
    if (publication) await publication.stop();
  }

  release() {
    for (const track of Object.values(this.tracks)) if (track) track.stop();
    this.tracks = { video: null, audio: null };
    this.preview.srcObject = null;
  }

  /** Leaving the page: tell the server at once. */
  leave() {
    if (this.publication) this.publication.stop({ keepalive: true });
    this.publication = null;
  }

  /** The lesson is over (the server closed everything). */
  close() {
    clearTimeout(this.timer);
    this.wanted = false;
    if (this.publication) this.publication.close();
    this.publication = null;
    this.release();
    this.state = 'off';
  }
}
