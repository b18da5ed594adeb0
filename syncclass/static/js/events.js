// The lesson's events WebSocket: lesson snapshots (state, classrooms, sources), the end, and
// the interaction messages both ways (hands, stage, chat, stats, quality).
// It reconnects by itself with a growing delay until the lesson ends or close() is called.

const MAX_DELAY_MS = 10000;
const PING_MS = 25000;

export class LessonEvents {
  /**
   * `onLesson(snapshot)` gets every {"type": "lesson"} message, `onEnded()` the end,
   * `onStatus(connected)` each change of connection; `onRejected(code)` a refused token;
   * `onMessage(message)` every other message (hands, chat, quality, errors). A classroom
   * passes its `name` and its `client` id (client-id.js).
   */
  constructor(
    lessonId,
    token,
    {
      onLesson,
      onEnded,
      onStatus = () => {},
      onRejected = () => {},
      onMessage = () => {},
      name = '',
      client = '',
    },
  ) {
    this.url = new URL(`/api/lessons/${encodeURIComponent(lessonId)}/events`, window.location.href);
    this.url.protocol = this.url.protocol === 'https:' ? 'wss:' : 'ws:';
    this.url.searchParams.set('token', token);
    if (name) this.url.searchParams.set('name', name);
    if (client) this.url.searchParams.set('client', client);
    this.handlers = { onLesson, onEnded, onStatus, onRejected, onMessage };
    this.socket = null;
    this.delay = 1000;
    this.finished = false;
    this.timer = null;
    this.pinger = null;
  }

  start() {
    if (this.finished) return;
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener('open', () => {
      this.delay = 1000;
      this.handlers.onStatus(true);
      this.pinger = setInterval(() => socket.send(JSON.stringify({ type: 'ping' })), PING_MS);
    });
    socket.addEventListener('message', (event) => this.receive(event.data));
    socket.addEventListener('close', (event) => {
      clearInterval(this.pinger);
      if (this.socket !== socket) return;
      this.socket = null;
      this.handlers.onStatus(false);
      if (event.code >= 4400 && event.code < 4500) {
        this.finished = true;
        this.handlers.onRejected(event.code - 4000);
        return;
      }
      if (this.finished) return;
      this.timer = setTimeout(() => this.start(), this.delay);
      this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
    });
  }

  receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message.type === 'lesson') this.handlers.onLesson(message);
    else if (message.type === 'ended') {
      this.finished = true;
      this.handlers.onEnded();
    } else if (message.type !== 'pong') this.handlers.onMessage(message);
  }

  get connected() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  /** Send a message now; false when the socket is not open (nothing is queued). */
  send(message) {
    if (!this.connected) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  close() {
    this.finished = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    if (this.socket) this.socket.close(1000);
    this.socket = null;
  }
}
