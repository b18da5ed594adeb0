// The teacher's list of raised hands, in the order raised, each with how long ago and the
// buttons to lower it or to call that classroom on stage.

import { setText } from './i18n.js';

const TICK_MS = 1000;

/** "just now", "15 s ago", "3 min ago" for an age in seconds. */
export function ago(seconds) {
  if (seconds < 5) return ['ago.now', {}];
  if (seconds < 60) return ['ago.seconds', { n: Math.floor(seconds) }];
  if (seconds < 3600) return ['ago.minutes', { n: Math.floor(seconds / 60) }];
  return ['ago.hours', { n: Math.floor(seconds / 3600) }];
}

export class HandsList {
  /** `onLower(name)` and `onStage(name)` act on one classroom; `canStage(name)` says if it may. */
  constructor({ list, empty, count, onLower, onStage, canStage }) {
    Object.assign(this, { list, empty, count, onLower, onStage, canStage });
    this.hands = [];
    this.skew = 0; // this computer's clock minus the server's, in seconds
    setInterval(() => this.tick(), TICK_MS);
  }

  /** The server's clock, learnt from a message it has just stamped with `at`. */
  heard(at) {
    if (typeof at === 'number') this.skew = Date.now() / 1000 - at;
  }

  update(hands) {
    this.hands = hands;
    this.render();
  }

  render() {
    this.empty.hidden = this.hands.length > 0;
    this.count.textContent = String(this.hands.length);
    this.count.dataset.n = String(this.hands.length);
    this.list.replaceChildren(
      ...this.hands.map((hand, i) => {
        const item = document.createElement('li');
        item.dataset.classroom = hand.classroom;
        const order = document.createElement('span');
        order.className = 'hand-order';
        order.textContent = String(i + 1);
        const name = document.createElement('span');
        name.className = 'hand-name';
        name.textContent = hand.classroom;
        name.title = hand.classroom;
        const time = document.createElement('time');
        time.className = 'hand-ago';
        const stage = document.createElement('button');
        stage.type = 'button';
        stage.className = 'hand-stage';
        setText(stage, 'teach.tile.callOnStage');
        stage.disabled = !this.canStage(hand.classroom);
        stage.addEventListener('click', () => this.onStage(hand.classroom));
        const lower = document.createElement('button');
        lower.type = 'button';
        lower.className = 'hand-lower';
        setText(lower, 'teach.hands.lower');
        lower.addEventListener('click', () => this.onLower(hand.classroom));
        const buttons = document.createElement('span');
        buttons.className = 'hand-buttons';
        buttons.append(stage, lower);
        item.append(order, name, time, buttons);
        return item;
      }),
    );
    this.tick();
  }

  tick() {
    const now = Date.now() / 1000 - this.skew;
    this.list.querySelectorAll('li').forEach((item, i) => {
      const hand = this.hands[i];
      if (!hand) return;
      const [key, vars] = ago(Math.max(0, now - hand.raised_at));
      const time = item.querySelector('time');
      setText(time, key, vars);
      time.dateTime = new Date(hand.raised_at * 1000).toISOString();
    });
  }
}
