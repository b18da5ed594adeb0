// The classroom's side of the interaction: its raised hand, its return feed with a self-view,
// the chat, the "you are on stage" banner, and how well it receives, reported every 2 s (and
// used to hold the picture long enough for repairs, playout.js).

import { ChatPanel } from './chat.js';
import { ReturnFeed } from './feed.js';
import { setText, t } from './i18n.js';
import { Playout } from './playout.js';
import { ReceiveStats } from './receive-stats.js';

const $ = (id) => document.getElementById(id);
const STATS_MS = 2000;
const TOAST_MS = 8000;

export class RoomInteraction {
  constructor(lessonId, token, { onEnded }) {
    this.events = null;
    this.name = '';
    this.player = null;
    this.stats = null;
    this.playout = new Playout();
    this.hand = false;
    this.onStage = false;
    this.shown = false;
    this.unread = 0;
    this.toastTimer = null;
    this.feed = new ReturnFeed(lessonId, token, {
      preview: $('feed-preview'),
      onChange: () => this.render(),
      onEnded,
    });
    this.chat = new ChatPanel({
      list: $('chat-list'),
      form: $('chat-form'),
      input: $('chat-input'),
      status: $('chat-status'),
      send: (text) => this.send({ type: 'chat', text }),
      who: (from) => {
        if (from === 'teacher') return t('chat.teacher');
        return from === this.name ? t('chat.us') : from;
      },
    });
    $('hand').addEventListener('click', () => this.toggleHand());
    $('feed-toggle').addEventListener('click', () => this.feed.turn(!this.feed.wanted));
    $('chat-toggle').addEventListener('click', () => this.openChat($('chat').hidden));
    $('chat-close').addEventListener('click', () => this.openChat(false));
    $('chat-toast').addEventListener('click', () => this.openChat(true));
    setInterval(() => this.report(), STATS_MS);
  }

  send(message) {
    return this.events !== null && this.events.send(message);
  }

  /** The events socket changed (a new one after a change of name). */
  attach(events) {
    this.events = events;
    this.render();
  }

  setName(name) {
    this.name = name;
    if (this.player) this.feed.ensure(name);
  }

  /** The classroom receives the lesson over `player`: send its feed and its figures. */
  joined(player) {
    this.player = player;
    this.stats = new ReceiveStats(player.pc);
    this.playout.attach(player.receivers);
    this.feed.ensure(this.name);
    this.render();
  }

  left() {
    this.player = null;
    this.stats = null;
  }

  ended() {
    this.left();
    this.feed.close();
    this.shown = false;
    this.onStage = false;
    this.render();
  }

  /** Whether the page shows the lesson (or its waiting screen): the dock goes with it. */
  show(shown) {
    if (shown === this.shown) return;
    this.shown = shown;
    this.render();
  }

  lesson(snapshot) {
    if (snapshot.you) {
      this.hand = Boolean(snapshot.you.hand_raised);
      this.onStage = Boolean(snapshot.you.on_stage);
    }
    this.render();
  }

  message(message) {
    if (message.type === 'hand' && message.classroom === this.name) {
      this.hand = Boolean(message.raised);
      this.render();
    } else if (message.type === 'chat') {
      this.chat.add(message);
      if ($('chat').hidden && message.from !== this.name) {
        this.unread += 1;
        this.toast(message);
        this.render();
      }
    } else if (message.type === 'error') {
      $('chat-status').hidden = false;
      setText($('chat-status'), 'room.refused', { message: message.message || message.error });
    }
  }

  toggleHand() {
    const raised = !this.hand;
    if (this.send({ type: 'hand', raised })) {
      this.hand = raised; // the server's answer confirms it (or puts it back)
      this.render();
    }
  }

  openChat(open) {
    $('chat').hidden = !open;
    $('chat-toggle').setAttribute('aria-expanded', String(open));
    if (open) {
      this.unread = 0;
      $('chat-toast').hidden = true;
      $('chat-input').focus();
      $('chat-list').scrollTop = $('chat-list').scrollHeight;
    }
    this.render();
  }

  toast(message) {
    const box = $('chat-toast');
    setText(box, 'chat.toast', { from: this.chat.who(message.from), text: message.text });
    box.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => {
      box.hidden = true;
    }, TOAST_MS);
  }

  async report() {
    const { stats, player } = this;
    if (!stats || !player || player.connectionState !== 'connected') return;
    let figures;
    try {
      figures = await stats.sample();
    } catch {
      return; // the connection closed while it was being read
    }
    if (!figures || this.stats !== stats) return;
    this.playout.update(stats.repairs);
    if (this.events?.connected) this.send(figures);
  }

  render() {
    $('dock').hidden = !this.shown;
    if (!this.shown) $('chat').hidden = true;
    $('on-stage').hidden = !(this.shown && this.onStage);
    document.body.dataset.onStage = String(this.shown && this.onStage);

    const hand = $('hand');
    hand.setAttribute('aria-pressed', String(this.hand));
    hand.disabled = !this.events?.connected;
    setText($('hand-label'), this.hand ? 'room.handRaised' : 'room.raiseHand');

    const feed = this.feed;
    const view = $('self-view');
    view.dataset.state = feed.state;
    view.dataset.video = String(feed.hasVideo);
    let caption = `room.feed.${feed.state}`;
    if (feed.state === 'live' && !feed.hasVideo) caption = 'room.feed.soundOnly';
    setText($('feed-state'), caption);
    const toggle = $('feed-toggle');
    toggle.setAttribute('aria-pressed', String(feed.wanted));
    setText(toggle, feed.wanted ? 'room.feedOff' : 'room.feedOn');

    const unread = $('chat-unread');
    unread.hidden = this.unread === 0;
    unread.textContent = String(this.unread);
  }

  /** Leaving the page: stop the feed at once so the teacher's tile goes. */
  leave() {
    this.feed.leave();
  }
}
