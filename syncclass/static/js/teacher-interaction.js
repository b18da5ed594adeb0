// The teacher's side of the interaction: the wall of classroom feeds, the raised hands with a
// chime and a flash for each new one, calling a classroom on stage, the chat, and the count of
// classrooms against the lesson's cap.

import { ChatPanel } from './chat.js';
import { allowSoundCues, chime } from './cue.js';
import { FeedGrid } from './feed-grid.js';
import { HandsList } from './hands.js';
import { setText, t } from './i18n.js';

const $ = (id) => document.getElementById(id);
const ERROR_MS = 8000;
const KNOWN_ERRORS = ['stage_full', 'no_feed', 'no_such_classroom', 'forbidden'];

export class TeacherInteraction {
  constructor(lessonId, token) {
    this.events = null;
    this.roster = [];
    this.hands = [];
    this.onStage = [];
    this.errorTimer = null;
    this.grid = new FeedGrid($('feeds'), lessonId, token, {
      onStage: (name, on) => this.stage(name, on),
      onRemove: (name) => {
        if (!this.send({ type: 'remove', classroom: name })) this.error({ error: 'offline' });
      },
    });
    this.handsList = new HandsList({
      list: $('hands'),
      empty: $('hands-empty'),
      count: $('hands-count'),
      onLower: (name) => this.send({ type: 'hand', classroom: name, raised: false }),
      onStage: (name) => this.stage(name, true),
      canStage: (name) => this.roster.some((entry) => entry.name === name && entry.feed),
    });
    this.chat = new ChatPanel({
      list: $('chat-list'),
      form: $('chat-form'),
      input: $('chat-input'),
      status: $('chat-status'),
      send: (text) => this.send({ type: 'chat', text }),
      who: (from) => (from === 'teacher' ? t('chat.teacherMe') : from),
    });
    allowSoundCues();
  }

  attach(events) {
    this.events = events;
  }

  send(message) {
    return this.events !== null && this.events.send(message);
  }

  stage(name, on) {
    if (!this.send({ type: 'stage', classroom: name, on })) this.error({ error: 'offline' });
  }

  /** A {"type": "lesson"} snapshot (or the lesson from the REST API, which has no roster). */
  lesson(snapshot) {
    $('classroom-count').textContent = String(snapshot.classrooms);
    setText($('classroom-max'), 'teach.classroomsOf', { max: snapshot.max_classrooms });
    $('count-box').dataset.full = String(snapshot.classrooms >= snapshot.max_classrooms);
    if (!Array.isArray(snapshot.roster)) return;
    this.roster = snapshot.roster;
    this.hands = snapshot.hands ?? [];
    this.onStage = snapshot.on_stage ?? [];
    this.grid.update(this.roster, this.hands, this.onStage);
    this.handsList.update(this.hands);
    $('feeds-empty').hidden = this.roster.length > 0;
    $('studio').dataset.feeds = this.roster.length > 0 ? 'on' : 'off';
  }

  message(message) {
    if (message.type === 'hand') {
      this.handsList.heard(message.at);
      if (message.raised) this.cue(message.classroom);
    } else if (message.type === 'chat') {
      this.handsList.heard(message.at);
      this.chat.add(message);
    } else if (message.type === 'quality') {
      this.grid.quality(message.classrooms ?? []);
    } else if (message.type === 'error') {
      this.error(message);
    }
  }

  /** A new hand: a chime, and the hands list and the classroom's tile flash. */
  cue(name) {
    chime();
    const box = $('hands-box');
    box.classList.remove('cue');
    void box.offsetWidth; // restart the animation
    box.classList.add('cue');
    this.grid.cue(name);
  }

  error(message) {
    const box = $('interaction-error');
    box.hidden = false;
    if (KNOWN_ERRORS.includes(message.error) || message.error === 'offline') {
      setText(box, `teach.error.${message.error}`);
    } else {
      setText(box, 'error.generic', { message: message.message || message.error });
    }
    clearTimeout(this.errorTimer);
    this.errorTimer = setTimeout(() => {
      box.hidden = true;
    }, ERROR_MS);
  }

  render() {
    this.grid.render();
    this.handsList.render();
    this.chat.render();
  }

  ended() {
    this.grid.close();
  }
}
