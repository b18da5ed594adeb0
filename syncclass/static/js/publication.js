// A source the teacher keeps published: when its connection drops it is published again over
// a new WHIP session, with a growing delay, until it is stopped or the lesson ends.

import { WhipPublisher } from './whip.js';

const MAX_DELAY_MS = 10000;

export class Publication {
  /**
   * `onChange(state)`: 'connecting', 'live', 'reconnecting' or 'stopped'; `onEnded()`: the
   * lesson is over; `onRefused(error)`: the server will not take it (a bad link, say);
   * `maxBitrate`, `degradation`, `layers`: as for WhipPublisher.
   */
  constructor(
    url,
    token,
    tracks,
    {
      onChange = () => {},
      onEnded = () => {},
      onRefused = () => {},
      maxBitrate = {},
      degradation = {},
      layers = false,
    },
  ) {
    this.url = url;
    this.token = token;
    this.tracks = tracks.filter(Boolean);
    this.handlers = { onChange, onEnded, onRefused };
    this.maxBitrate = maxBitrate;
    this.degradation = degradation;
    this.layers = layers;
    this.publisher = null;
    this.state = 'connecting';
    this.delay = 1000;
    this.timer = null;
    this.stopped = false;
  }

  async start() {
    if (this.stopped) return;
    const publisher = new WhipPublisher(this.url, this.token, {
      maxBitrate: this.maxBitrate,
      degradation: this.degradation,
      layers: this.layers,
      onConnected: () => {
        this.delay = 1000;
        this.set('live');
      },
      onDrop: () => this.retry(),
    });
    this.publisher = publisher;
    try {
      await publisher.publish(this.tracks);
    } catch (error) {
      if (this.publisher !== publisher) return;
      this.publisher = null;
      if (error.status === 410) {
        this.close();
        this.handlers.onEnded();
      } else if (error.status >= 400 && error.status < 500) {
        this.close();
        this.handlers.onRefused(error);
      } else {
        this.retry(); // the server is out of reach: try again
      }
    }
  }

  retry() {
    if (this.stopped) return;
    if (this.publisher) this.publisher.close();
    this.publisher = null;
    this.set('reconnecting');
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.start(), this.delay);
    this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
  }

  set(state) {
    this.state = state;
    this.handlers.onChange(state);
  }

  /** Swap a track (another camera or microphone), now and for every later session. */
  async replaceTrack(kind, track) {
    this.tracks = this.tracks.map((t) => (t.kind === kind ? track : t));
    if (this.publisher) await this.publisher.replaceTrack(kind, track);
  }

  /** The current session's connection, or null between sessions. */
  get connection() {
    return this.publisher ? this.publisher.pc : null;
  }

  /** Stop publishing; the server forgets the session at once. */
  async stop({ keepalive = false } = {}) {
    const publisher = this.publisher;
    this.close();
    if (publisher) await publisher.stop({ keepalive });
  }

  /** Stop without telling the server (it has closed the session itself). */
  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.publisher) this.publisher.close();
    this.publisher = null;
    this.state = 'stopped';
  }
}
