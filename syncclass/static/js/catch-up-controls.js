// The classroom's catch-up controls: 回看 (go back up to the whole lesson so far), the speed to
// catch up at (1.0–1.5×), 回到直播, and after a long outage the offer of 错过的 N 分钟.
//
// The live WebRTC session stays open underneath, muted, while the classroom watches the
// recording, and the server holds its picture back meanwhile (a weak link would carry the
// lesson twice). Going back to live needs no new session: the server sends the picture
// again from a keyframe, and the recording stays on screen until the live picture moves, so
// there is no gap. Caught up to within a few seconds of live (the recording's own delay),
// the page goes back to live by itself.
//
// The same player is the last rung of the connection ladder: where no WebRTC path gets
// through (no UDP, no TCP to the media port, no relay), the page plays the recording a few
// seconds behind live over HTTPS, and says so.

import { CatchUpPlayer } from './catch-up.js';
import { setText } from './i18n.js';
import './catch-up-strings.js';

const $ = (id) => document.getElementById(id);
const TICK_MS = 500;
const LIVE_NEAR_S = 4; // behind live by less than this: as live as the recording gets
export const MISSED_AFTER_S = 20; // an outage longer than this is offered as 错过的 N 分钟
// how far behind live the delayed view starts: the recording's own delay (a fragment of about
// a second, written within about a second more) and a little to buffer
const DELAYED_BY_S = 4;

export class CatchUpControls {
  /** `live`: {mute({holdVideo}), unmute()} of the live view (unmute resolves once its picture
   * moves again); `who()`: the classroom's {name, client}. */
  constructor(lessonId, token, live, who) {
    this.live = live;
    this.who = who;
    this.player = new CatchUpPlayer(lessonId, token, $('catch-up-video'));
    this.source = null;
    this.watching = false;
    this.delayed = false; // the delayed view of a classroom no WebRTC path reaches
    this.rate = 1;
    this.timer = null;
    this.missedFrom = null;
    $('rewind').addEventListener('click', () => this.togglePanel());
    $('rewind-at').addEventListener('input', () => this.renderChoice());
    $('rewind-play').addEventListener('click', () => this.watchFrom(this.chosen()));
    $('back-live').addEventListener('click', () => this.backToLive());
    $('missed-watch').addEventListener('click', () => this.watchFrom(this.missedFrom));
    $('missed-dismiss').addEventListener('click', () => this.dismissMissed());
    for (const button of document.querySelectorAll('#rates [data-rate]')) {
      button.addEventListener('click', () => this.setRate(Number(button.dataset.rate)));
    }
    this.render();
  }

  /** Show the controls while the lesson plays (not on the waiting or ended screens). */
  show(visible) {
    $('rewind').hidden = !visible;
    if (!visible && this.watching) this.backToLive();
    if (!visible) $('catch-up-panel').hidden = true;
  }

  async togglePanel() {
    const panel = $('catch-up-panel');
    if (!panel.hidden && !this.watching) {
      panel.hidden = true;
      return;
    }
    await this.refresh();
    panel.hidden = false;
    this.render();
  }

  async refresh() {
    try {
      this.source = await this.player.info();
    } catch {
      this.source = null;
    }
    const slider = $('rewind-at');
    if (this.source) {
      const span = Math.max(0, Math.floor(this.player.now() - this.source.starts_at));
      const keep = slider.dataset.touched ? Number(slider.value) : Math.max(0, span - 60);
      slider.max = String(span);
      slider.value = String(Math.min(keep, span));
    }
    this.renderChoice();
  }

  chosen() {
    return this.source ? this.source.starts_at + Number($('rewind-at').value) : null;
  }

  renderChoice() {
    const label = $('rewind-label');
    if (!this.source) {
      setText(label, 'catchUp.nothing');
      $('rewind-play').disabled = true;
      return;
    }
    $('rewind-at').dataset.touched = '1';
    $('rewind-play').disabled = false;
    const at = Number($('rewind-at').value);
    const ago = Math.max(0, Math.round(this.player.now() - this.source.starts_at - at));
    setText(label, 'catchUp.at', { time: clock(at), ago: clock(ago) });
  }

  /** Watch the lesson from server time `at`. */
  async watchFrom(at) {
    if (at === null) return;
    this.dismissMissed();
    if (!this.source) await this.refresh();
    if (!this.source) return;
    at = Math.max(at, this.source.starts_at);
    this.watching = true;
    this.live.mute({ holdVideo: !this.delayed });
    document.body.dataset.catchUp = this.delayed ? 'delayed' : 'on';
    $('catch-up-video').hidden = false;
    $('catch-up-panel').hidden = this.delayed;
    this.render();
    try {
      // a rewind beside the live view gives the classroom's client alone (the stream then
      // stops if the teacher removes it); the delayed view its name too (it counts present)
      const who = this.who();
      await this.player.start(at, this.source, this.delayed ? who : { client: who.client });
      this.player.setRate(this.rate);
      this.player.video.muted = false;
    } catch {
      this.backToLive();
      return;
    }
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  /** Play the lesson a few seconds behind live over HTTPS; whether it could. */
  async watchDelayed() {
    if (this.delayed && this.watching) return true;
    this.delayed = true;
    this.rate = 1;
    await this.refresh();
    if (!this.source) {
      this.delayed = false;
      return false;
    }
    await this.watchFrom(this.player.now() - DELAYED_BY_S);
    return this.watching;
  }

  setRate(rate) {
    this.rate = rate;
    this.player.setRate(rate);
    this.render();
  }

  tick() {
    const behind = this.player.behind();
    if (behind !== null && this.rate > 1 && behind < LIVE_NEAR_S) {
      this.backToLive(); // caught up
      return;
    }
    this.render();
  }

  backToLive() {
    clearInterval(this.timer);
    this.timer = null;
    const wasWatching = this.watching;
    this.watching = false;
    this.delayed = false;
    $('catch-up-panel').hidden = true;
    document.body.dataset.catchUp = 'off';
    this.player.video.muted = true; // the live sound at once
    const moving = this.live.unmute();
    this.render();
    const hide = () => {
      if (this.watching) return; // rewound again meanwhile
      this.player.stop();
      $('catch-up-video').hidden = true;
    };
    // the recording stays on screen until the live picture moves again
    if (wasWatching) Promise.resolve(moving).then(hide);
    else hide();
  }

  /** The live view came back after being lost since `lostAt` (this browser's ms clock). */
  reconnected(lostAt) {
    const seconds = (Date.now() - lostAt) / 1000;
    // (the delayed view, if it took over meanwhile, started only once the ladder gave up)
    if (seconds <= MISSED_AFTER_S || (this.watching && !this.delayed)) return;
    this.missedFrom = this.player.now() - seconds;
    const box = $('missed');
    setText($('missed-text'), 'catchUp.missed', { n: Math.max(1, Math.round(seconds / 60)) });
    box.hidden = false;
  }

  dismissMissed() {
    $('missed').hidden = true;
  }

  render() {
    for (const button of document.querySelectorAll('#rates [data-rate]')) {
      button.setAttribute('aria-pressed', String(Number(button.dataset.rate) === this.rate));
    }
    $('back-live').hidden = !this.watching || this.delayed;
    $('rates').hidden = !this.watching || this.delayed;
    const behind = this.watching ? this.player.behind() : null;
    const line = $('behind');
    line.hidden = behind === null;
    if (behind !== null) {
      line.dataset.behind = behind.toFixed(1);
      setText(line, 'catchUp.behind', { time: clock(behind) });
    }
  }
}

function clock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}
