// The teacher's wall of classrooms: one tile per connected classroom with its return feed
// (one WHEP subscription to feed:<classroom> while it publishes one), its name, its receiving
// quality, its raised hand, and the button that calls it on stage or sends it back.

import { FrameWatch } from './frames.js';
import { setText, t } from './i18n.js';
import { FEED_SLOTS, WhepPlayer } from './whep.js';

const RETRY_MS = 3000;
const POLL_MS = 1000;

/** What the server sends a classroom, as the wall says it: by the height of the picture it
 * is fed (高清 720p and up, 标清 from 360p, 流畅 below), or 仅声音. */
function linkLabel(q) {
  if (q.link_state === 'audio_only' || !q.video_height) return t(`link.${q.link_state}`);
  const height = q.video_height;
  const level = height >= 720 ? 'hd' : height >= 360 ? 'sd' : 'ld';
  return t(`link.${level}`, { height });
}

function element(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

class FeedTile {
  constructor(name, grid) {
    this.name = name;
    this.grid = grid;
    this.player = null;
    this.watch = null;
    this.wanted = false; // the classroom publishes a feed
    this.timer = null;
    this.picture = false;
    this.sound = false; // a classroom with a microphone and no camera is heard, not seen
    this.soundPackets = 0;

    const root = element('article', 'tile');
    root.dataset.classroom = name;
    const screen = element('div', 'tile-screen');
    this.video = element('video');
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.video.muted = true;
    this.noPicture = element('p', 'tile-no-picture');
    this.handMark = element('span', 'tile-hand');
    this.stageMark = element('span', 'tile-stage-mark');
    screen.append(this.video, this.noPicture, this.handMark, this.stageMark);
    const bar = element('div', 'tile-bar');
    this.nameLabel = element('span', 'tile-name');
    this.nameLabel.textContent = name;
    this.nameLabel.title = name;
    this.grade = element('span', 'grade');
    bar.append(this.nameLabel, this.grade);
    const actions = element('div', 'tile-actions');
    this.figures = element('small', 'tile-figures');
    this.stageButton = element('button', 'tile-stage');
    this.stageButton.type = 'button';
    this.stageButton.addEventListener('click', () => grid.onStage(name, !this.onStage));
    this.removeButton = element('button', 'tile-remove');
    this.removeButton.type = 'button';
    setText(this.removeButton, 'teach.tile.remove');
    this.removeButton.addEventListener('click', () => {
      // its name is refused until the join link is replaced: ask before doing it
      if (window.confirm(t('teach.tile.removeConfirm', { name }))) grid.onRemove(name);
    });
    actions.append(this.figures, this.stageButton, this.removeButton);
    root.append(screen, bar, actions);
    this.root = root;
    this.entry = {};
    this.onStage = false;
    this.quality = null;
  }

  update(entry, { handOrder, onStage }) {
    this.entry = entry;
    if (entry.quality) this.quality = entry.quality;
    this.onStage = onStage;
    this.handOrder = handOrder;
    if (entry.feed && !this.wanted) {
      this.wanted = true;
      this.subscribe();
    } else if (!entry.feed && this.wanted) {
      this.wanted = false;
      this.unsubscribe();
    }
    // the teacher hears the classroom that is answering, not every room at once
    this.video.muted = !onStage;
    if (onStage) this.video.play().catch(() => {});
    this.render();
  }

  setQuality(quality) {
    this.quality = quality;
    this.render();
  }

  render() {
    const root = this.root;
    root.dataset.hand = String(this.handOrder > 0);
    root.dataset.stage = String(this.onStage);
    root.dataset.picture = String(this.picture);
    root.dataset.sound = String(this.sound);
    root.dataset.grade = this.quality?.grade ?? 'unknown';
    root.dataset.link = this.quality?.link_state ?? 'unknown';
    setText(this.handMark, 'teach.tile.hand', { n: this.handOrder });
    this.handMark.hidden = !(this.handOrder > 0);
    setText(this.stageMark, 'teach.tile.onStage');
    this.stageMark.hidden = !this.onStage;
    let waiting = this.wanted ? 'teach.tile.connecting' : 'teach.tile.noFeed';
    if (this.wanted && this.sound) waiting = 'teach.tile.soundOnly';
    setText(this.noPicture, waiting);
    setText(this.grade, `grade.${this.quality?.grade ?? 'unknown'}`);
    const q = this.quality;
    if (q && typeof q.loss === 'number') {
      setText(this.figures, 'teach.tile.figures', {
        loss: (q.loss * 100).toFixed(1),
        rtt: typeof q.rtt_ms === 'number' ? Math.round(q.rtt_ms) : '–',
      });
      if (q.link_state) {
        // what the server sends this classroom (高清 / 标清 / 流畅 / 仅声音), its link's
        // estimate, and why
        const state = linkLabel(q);
        let line = typeof q.estimate_kbps === 'number'
          ? t('link.estimate', { state, kbps: Math.round(q.estimate_kbps) })
          : state;
        if (q.link_state !== 'full' && q.link_why) {
          const why = t(`link.why.${q.link_why}`);
          if (why !== `link.why.${q.link_why}`) line += why;
        }
        const link = element('span', 'link-state');
        link.textContent = ` · ${line}`;
        this.figures.append(link);
      }
      if (q.path) {
        // 直连 UDP / 直连 TCP / 中继: how this classroom's media reaches it
        const path = element('span', 'path');
        path.dataset.path = q.path;
        path.textContent = ` · ${t(`path.${q.path}`)}`;
        this.figures.append(path);
      }
    } else {
      this.figures.textContent = '';
    }
    setText(this.stageButton, this.onStage ? 'teach.tile.offStage' : 'teach.tile.callOnStage');
    this.stageButton.classList.toggle('primary', !this.onStage);
    this.stageButton.disabled = !this.onStage && !this.entry.feed;
  }

  async subscribe() {
    clearTimeout(this.timer);
    if (!this.wanted || this.player || this.grid.closed) return;
    const source = encodeURIComponent(`feed:${this.name}`);
    const url = `/whep/${encodeURIComponent(this.grid.lessonId)}?source=${source}`;
    const player = new WhepPlayer(url, this.grid.token, {
      slots: FEED_SLOTS,
      onDrop: () => {
        if (this.player !== player) return;
        this.drop();
        this.later();
      },
    });
    this.player = player;
    try {
      await player.start();
    } catch {
      if (this.player !== player) return;
      this.player = null;
      this.later(); // the feed may be a moment behind the roster
      return;
    }
    if (this.player !== player) return;
    this.watch = new FrameWatch(player.receivers.feed);
    this.video.srcObject = player.streams.feed;
    this.video.play().catch(() => {});
  }

  later() {
    clearTimeout(this.timer);
    if (this.wanted && !this.grid.closed) this.timer = setTimeout(() => this.subscribe(), RETRY_MS);
  }

  drop() {
    if (this.player) this.player.close();
    this.player = null;
    this.watch = null;
    this.picture = false;
    this.sound = false;
    this.soundPackets = 0;
    this.video.srcObject = null;
    this.render();
  }

  unsubscribe() {
    clearTimeout(this.timer);
    const player = this.player;
    this.player = null;
    this.drop();
    if (player) player.stop();
  }

  async poll() {
    const picture = this.watch ? await this.watch.poll() : false;
    const sound = await this.soundArrives();
    if (picture !== this.picture || sound !== this.sound) {
      this.picture = picture;
      this.sound = sound;
      this.render();
    }
  }

  async soundArrives() {
    const receiver = this.player?.receivers.feedSound;
    if (!receiver) return false;
    let packets = this.soundPackets;
    try {
      (await receiver.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp') packets = r.packetsReceived ?? packets;
      });
    } catch {
      return false;
    }
    const arriving = packets > this.soundPackets;
    this.soundPackets = packets;
    return arriving;
  }

  /** Flash the tile: a hand just went up. */
  cue() {
    this.root.classList.remove('cue');
    void this.root.offsetWidth; // restart the animation
    this.root.classList.add('cue');
  }
}

export class FeedGrid {
  /** `onStage(name, on)` asks for a classroom on stage (or off); `onRemove(name)` removes
   * it from the lesson. */
  constructor(box, lessonId, token, { onStage, onRemove }) {
    this.box = box;
    this.lessonId = lessonId;
    this.token = token;
    this.onStage = onStage;
    this.onRemove = onRemove;
    this.tiles = new Map();
    this.qualities = new Map();
    this.closed = false;
    this.poller = setInterval(() => {
      for (const tile of this.tiles.values()) tile.poll();
    }, POLL_MS);
  }

  /** A snapshot's roster, hands and stage: tiles come and go with the classrooms. */
  update(roster, hands, onStage) {
    if (this.closed) return;
    const names = new Set(roster.map((entry) => entry.name));
    for (const [name, tile] of this.tiles) {
      if (!names.has(name)) {
        tile.unsubscribe();
        tile.root.remove();
        this.tiles.delete(name);
      }
    }
    const order = hands.map((hand) => hand.classroom);
    roster.forEach((entry, i) => {
      let tile = this.tiles.get(entry.name);
      if (!tile) {
        tile = new FeedTile(entry.name, this);
        tile.quality = this.qualities.get(entry.name) ?? null;
        this.tiles.set(entry.name, tile);
      }
      const here = this.box.children[i] ?? null;
      if (here !== tile.root) this.box.insertBefore(tile.root, here);
      tile.update(entry, {
        handOrder: order.indexOf(entry.name) + 1,
        onStage: onStage.includes(entry.name),
      });
    });
  }

  /** A {"type": "quality"} message: each classroom's grade and figures. */
  quality(classrooms) {
    for (const quality of classrooms) {
      this.qualities.set(quality.name, quality);
      this.tiles.get(quality.name)?.setQuality(quality);
    }
  }

  cue(name) {
    this.tiles.get(name)?.cue();
  }

  render() {
    for (const tile of this.tiles.values()) tile.render();
  }

  close() {
    this.closed = true;
    clearInterval(this.poller);
    for (const tile of this.tiles.values()) tile.unsubscribe();
  }
}
