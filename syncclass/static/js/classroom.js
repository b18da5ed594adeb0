// The classroom page: plays the lesson on the classroom's big screen, courseware large and
// the teacher small while courseware is shared, and a classroom called on stage beside the
// teacher; waits before, says so after, waits for a place in a full lesson, and reconnects
// by itself (a new WHEP session) when the network drops. Hand, return feed, chat and quality
// reports are in room-interaction.js. Entered from a course link (``&course=``), it goes back
// to the course's page (the next lesson's countdown) when the lesson ends.

import { api, ApiError, lessonFromLocation } from './api.js';
import { CatchUpControls } from './catch-up-controls.js';
import { clientId } from './client-id.js';
import { LessonEvents } from './events.js';
import { FrameWatch } from './frames.js';
import { mountLanguageSwitch, setText } from './i18n.js';
import './interaction-strings.js';
import './room-strings.js';
import { connectionPath, rungs, setIceServers } from './ladder.js';
import { RoomInteraction } from './room-interaction.js';
import { STAGE_SLOTS, WhepPlayer } from './whep.js';

const $ = (id) => document.getElementById(id);
const NAME_KEY = 'syncclass.classroomName';
const POLL_MS = 500;
const IDLE_MS = 4000;
// the browser notices within about this long that its own link is dead (ICE 'disconnected')
const OWN_LINK_MS = 6000;
const FULL_RETRY_MS = 5000; // a full lesson: ask again this often for a free place
const PATH_MS = 1000;
const { id: lessonId, token } = lessonFromLocation();
const courseId = new URLSearchParams(window.location.search).get('course');
const BACK_MS = 3000; // the ended screen, read before going back to the course's page
// the last rung of the ladder: when no WebRTC rung has connected within all their timeouts
// and this much more, the lesson is played a few seconds behind over HTTPS (catch-up.js)
const HTTPS_AFTER_MS = 2000;
const HTTPS_RETRY_MS = 3000; // nothing recorded yet to play: ask again
let backTimer = null;

const view = {
  title: '',
  lessonState: 'scheduled',
  sources: null, // what the teacher publishes, while the events socket knows it
  problem: null, // 'invalid', 'removed' or 'full'
  connection: 'connecting', // 'connected' or 'reconnecting'
  camera: false, // pictures are arriving
  courseware: false,
  stage: false,
  onStage: null, // the classrooms on stage, while the events socket knows them
  maxClassrooms: null,
  seenPictures: false,
  soundBlocked: false,
  audioOnly: false, // the server sends sound only: this room's link cannot carry the picture
  delayed: false, // no WebRTC path: the lesson plays a few seconds behind over HTTPS
};
let delayedTimer = null;
let player = null;
let watches = null;
let events = null;
const interaction = new RoomInteraction(lessonId, token, { onEnded: () => ended() });
let retryTimer = null;
let retryDelay = 1000;
let lostAt = null; // when the live view was lost (Date.now()), until it is back
// while the classroom watches the recording, the live view stays open underneath, silent,
// and the server sends it no picture (the link would carry the lesson twice)
let liveMuted = false;
let rewinding = false;
const LIVE_BACK_MS = 2500; // the live picture resumes at the teacher's next keyframe
function tellRewinding(on) {
  rewinding = on;
  if (events) events.send({ type: 'catch_up', watching: on });
}
const catchUp = new CatchUpControls(lessonId, token, {
  mute: ({ holdVideo }) => {
    liveMuted = true;
    $('camera-video').muted = true;
    // (the delayed view has no live picture to hold: the first WebRTC path takes over)
    if (holdVideo) tellRewinding(true);
  },
  unmute: () => {
    liveMuted = false;
    if (!view.soundBlocked) $('camera-video').muted = false;
    if (!rewinding) return Promise.resolve();
    tellRewinding(false);
    return nextLiveFrame(LIVE_BACK_MS);
  },
}, () => ({ name: localStorage.getItem(NAME_KEY) || '', client: clientId() }));

/** Resolves when the live picture shows a new frame, or after `ms`. */
function nextLiveFrame(ms) {
  const video = $('camera-video');
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (!video.requestVideoFrameCallback) return;
    video.requestVideoFrameCallback(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

// --- what is on screen -------------------------------------------------------------------

function message(titleKey, textKey, { spinner = false, vars = null } = {}) {
  $('message-lesson').textContent = view.title;
  setText($('message-title'), titleKey);
  if (textKey) setText($('message-text'), textKey, vars);
  else $('message-text').textContent = '';
  $('message-spinner').hidden = !spinner;
}

function screen() {
  if (view.lessonState === 'ended') return 'ended';
  if (view.problem) return view.problem;
  if (view.camera || view.courseware || view.delayed) return 'playing';
  return view.seenPictures && view.lessonState === 'live' ? 'away' : 'waiting';
}

// Pictures stopped while this classroom's own link is up: the teacher's side has dropped.
// Until the browser could have noticed a dead link of its own, it may be either, and the
// screen says only that the picture is interrupted.
function teacherAway() {
  if (!player || player.connectionState !== 'connected') return false;
  if (view.sources !== null && !view.sources.includes('camera')) return true;
  return watches !== null && performance.now() - watches.camera.changedAt > OWN_LINK_MS;
}

/** Entered from a course link: back to the course's page, which enters the next lesson. */
function backToCourse() {
  if (!courseId || backTimer !== null) return;
  backTimer = setTimeout(() => {
    let address = null;
    try {
      address = window.sessionStorage.getItem(`syncclass.room.${courseId}`);
    } catch {
      // storage refused: the course's address alone
    }
    window.location.replace(address || `/courses/${encodeURIComponent(courseId)}/room`);
  }, BACK_MS);
}

function render() {
  const current = screen();
  // (a classroom the teacher removed stays told so: its link would only bring it back)
  if (courseId && ['ended', 'invalid'].includes(current)) backToCourse();
  document.body.dataset.screen = current;
  // while the room is asked its name, nothing covers the form (a waiting screen on top of
  // 请换一个名称 would leave the page waiting forever)
  $('message-screen').hidden = current === 'playing' || !$('name-screen').hidden;
  if (current === 'ended') message('join.ended.title', courseId ? 'room.back' : 'join.ended.text');
  else if (current === 'invalid') message('join.invalid', null);
  else if (current === 'removed') message('join.removed', null);
  else if (current === 'full') {
    const n = view.maxClassrooms ?? '';
    message('join.full', 'join.fullText', { spinner: true, vars: { n } });
  }
  else if (current === 'waiting') message('join.waiting.title', 'join.waiting.text', { spinner: true });
  else if (current === 'away' && teacherAway()) {
    message('join.teacherAway.title', 'join.teacherAway.text', { spinner: true });
  } else if (current === 'away') message('join.away.title', 'join.away.text', { spinner: true });
  const showCourseware =
    view.courseware && (view.sources === null || view.sources.includes('courseware'));
  $('room').dataset.layout = showCourseware ? 'courseware' : 'camera';
  // another classroom on stage: its picture beside the teacher's (never this one's own)
  const me = localStorage.getItem(NAME_KEY) || '';
  const others = view.onStage === null ? null : view.onStage.filter((name) => name !== me);
  const stage = view.stage && current === 'playing' && (others === null || others.length > 0);
  $('room').dataset.stage = stage ? 'on' : 'off';
  if (others && others.length) setText($('stage-name'), 'room.stageName', { name: others.join(', ') });
  else $('stage-name').textContent = '';
  interaction.show(['playing', 'waiting', 'away'].includes(current));
  catchUp.show(['playing', 'away'].includes(current));
  $('sound').hidden = !(view.soundBlocked && current === 'playing');
  const status = $('status');
  const live = current !== 'ended' && !view.problem;
  const linkDown = player !== null && player.connectionState === 'disconnected';
  if (live && view.delayed) {
    status.hidden = false;
    setText(status, 'catchUp.delayed');
  } else if (live && (view.connection === 'reconnecting' || linkDown)) {
    status.hidden = false;
    setText(status, 'join.status.reconnecting');
  } else if (live && view.connection === 'connecting' && current !== 'playing') {
    status.hidden = false;
    setText(status, 'join.status.connecting');
  } else if (live && view.audioOnly) {
    status.hidden = false;
    setText(status, 'join.status.audioOnly');
  } else {
    status.hidden = true;
  }
  $('bar-lesson').textContent = view.title;
  setText($('room-name'), 'join.room', { name: localStorage.getItem(NAME_KEY) || '' });
}

// --- sound and full screen -----------------------------------------------------------------

function playWithSound(video = $('camera-video')) {
  video.muted = video.id === 'camera-video' && liveMuted;
  video.play().then(
    () => {
      if (video.id === 'camera-video') view.soundBlocked = false;
      render();
    },
    (error) => {
      if (error.name !== 'NotAllowedError') return;
      // the browser wants a click before it plays sound: play muted and ask for the click
      view.soundBlocked = true;
      video.muted = true;
      video.play().catch(() => {});
      render();
    },
  );
  if (video.id === 'camera-video') $('courseware-video').play().catch(() => {});
}

function enterFullscreen() {
  if (!document.fullscreenElement && document.documentElement.requestFullscreen) {
    document.documentElement.requestFullscreen().catch(() => {});
  }
}

function unmute() {
  view.soundBlocked = false;
  for (const id of ['camera-video', ...STAGE_SLOTS.map((slot) => `${slot}-video`)]) {
    $(id).muted = id === 'camera-video' && liveMuted;
    $(id).play().catch(() => {});
  }
  enterFullscreen();
  render();
}

function renderFullscreenButton() {
  setText($('fullscreen'), document.fullscreenElement ? 'join.exitFullscreen' : 'join.fullscreen');
}

// --- receiving -------------------------------------------------------------------------------

async function connect() {
  if (view.lessonState === 'ended') return;
  const name = localStorage.getItem(NAME_KEY) || '';
  const url =
    `/whep/${encodeURIComponent(lessonId)}?name=${encodeURIComponent(name)}` +
    `&client=${encodeURIComponent(clientId())}`;
  const attempt = new WhepPlayer(url, token, { onDrop: () => dropped(attempt) });
  player = attempt;
  clearTimeout(delayedTimer);
  const budget = rungs().reduce((sum, rung) => sum + rung.timeoutMs, 0) + HTTPS_AFTER_MS;
  delayedTimer = setTimeout(() => {
    if (player === attempt && attempt.connectionState !== 'connected') watchDelayed();
  }, budget);
  try {
    await attempt.start();
  } catch (error) {
    if (player !== attempt) return;
    player = null;
    if (error instanceof ApiError && error.status === 410) return ended();
    if (error instanceof ApiError && ['name_taken', 'bad_name'].includes(error.code)) {
      return renamed(error.code);
    }
    if (error instanceof ApiError && error.status === 409) return lessonFull(error);
    if (error instanceof ApiError && error.code === 'removed') {
      view.problem = 'removed'; // until the teacher gives out a new link
      render();
      return;
    }
    if (error instanceof ApiError && [401, 403, 404].includes(error.status)) {
      view.problem = 'invalid';
      render();
      return;
    }
    return retry();
  }
  view.problem = null;
  view.connection = 'connected';
  retryDelay = 1000;
  watches = {
    camera: new FrameWatch(attempt.receivers.camera),
    courseware: new FrameWatch(attempt.receivers.courseware),
    stage: STAGE_SLOTS.map((slot) => new FrameWatch(attempt.receivers[slot])),
  };
  $('camera-video').srcObject = attempt.camera;
  $('courseware-video').srcObject = attempt.courseware;
  playWithSound();
  for (const slot of STAGE_SLOTS) {
    $(`${slot}-video`).srcObject = attempt.stream(slot);
    playWithSound($(`${slot}-video`));
  }
  interaction.joined(attempt);
  render();
}

/** The last rung: no WebRTC path connected, so the lesson plays behind live over HTTPS (the
 * WebRTC attempts go on, and the first that connects takes over). */
async function watchDelayed() {
  if (view.delayed || view.lessonState === 'ended') return;
  view.delayed = true;
  render();
  if (await catchUp.watchDelayed()) return;
  view.delayed = false;
  render();
  clearTimeout(delayedTimer);
  delayedTimer = setTimeout(() => {
    if (!player || player.connectionState !== 'connected') watchDelayed();
  }, HTTPS_RETRY_MS);
}

/** Another classroom of the lesson has this name (or it cannot be one): ask for another, then
 * join under it with a fresh events socket. */
async function renamed(code) {
  await askName(code === 'name_taken' ? 'join.name.taken' : 'join.name.bad');
  openEvents();
  connect();
}

/** Every place is taken: say so, and ask again every few seconds until one frees. */
function lessonFull(error) {
  view.problem = 'full';
  const stated = /(\d+)/.exec(error.message || '');
  if (view.maxClassrooms === null && stated) view.maxClassrooms = Number(stated[1]);
  render();
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => connect(), FULL_RETRY_MS);
}

function retry() {
  view.connection = view.connection === 'connecting' ? 'connecting' : 'reconnecting';
  render();
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => connect(), retryDelay);
  retryDelay = Math.min(retryDelay * 2, 5000);
}

async function dropped(attempt) {
  if (player !== attempt) return;
  attempt.stop(); // the teacher sees the classroom leave now, if the server can still be told
  player = null;
  // the outage began when the pictures stopped, a few seconds before the browser noticed
  const stopped = watches?.camera.changedAt || watches?.courseware.changedAt || 0;
  lostAt ??= stopped > 0 ? Date.now() - (performance.now() - stopped) : Date.now();
  watches = null;
  interaction.left();
  view.connection = 'reconnecting';
  view.camera = view.courseware = view.stage = false;
  render();
  // the server closes every connection when the lesson ends: tell that from a network drop
  try {
    await refreshLesson();
  } catch {
    // the server is out of reach: keep trying below
  }
  if (view.lessonState === 'ended') return ended();
  retry();
}

async function refreshLesson() {
  let lesson;
  try {
    lesson = await api('GET', `/api/lessons/${encodeURIComponent(lessonId)}`, {
      credential: token,
    });
  } catch (error) {
    // once a lesson has ended, its classroom link is refused with 410
    if (!(error instanceof ApiError && error.status === 410)) throw error;
    view.lessonState = 'ended';
    return { state: 'ended' };
  }
  view.title = lesson.title;
  view.lessonState = lesson.state;
  view.maxClassrooms = lesson.max_classrooms ?? view.maxClassrooms;
  setIceServers(lesson.ice_servers); // fresh credentials for the relay, with each read
  return lesson;
}

function ended() {
  view.lessonState = 'ended';
  view.delayed = false;
  clearTimeout(retryTimer);
  clearTimeout(delayedTimer);
  if (player) player.close();
  player = null;
  watches = null;
  interaction.ended();
  view.camera = view.courseware = view.stage = false;
  $('camera-video').srcObject = null;
  $('courseware-video').srcObject = null;
  for (const slot of STAGE_SLOTS) $(`${slot}-video`).srcObject = null;
  if (events) events.close();
  render();
}

async function pollFrames() {
  if (!watches) return;
  const current = watches;
  const [camera, courseware, ...stage] = await Promise.all([
    current.camera.poll(),
    current.courseware.poll(),
    ...current.stage.map((watch) => watch.poll()),
  ]);
  if (watches !== current) return;
  if (camera || courseware) {
    // pictures again: a later drop reconnects rather than falls back to the delayed view at
    // once, and after a long outage what was missed is offered
    clearTimeout(delayedTimer);
    if (lostAt !== null) catchUp.reconnected(lostAt);
    lostAt = null;
  }
  if (view.delayed && (camera || courseware)) {
    view.delayed = false; // a WebRTC path got through after all: live again
    catchUp.backToLive();
  }
  view.camera = camera;
  view.courseware = courseware;
  view.stage = stage.some(Boolean);
  // every stage place with pictures is shown; the first one always (its sound may come first)
  STAGE_SLOTS.forEach((slot, i) => {
    $(`${slot}-video`).hidden = i > 0 && !stage[i];
  });
  view.seenPictures ||= camera || courseware;
  render();
}

/** Which path the lesson reaches this room on: 直连 UDP / 直连 TCP / 中继. */
async function showPath() {
  const path = await connectionPath(player?.pc).catch(() => null);
  const badge = $('path');
  badge.hidden = path === null;
  badge.dataset.path = path ?? '';
  if (path) setText(badge, `path.${path}`);
}

// --- start -------------------------------------------------------------------------------------

function askName(problem = null) {
  return new Promise((resolve) => {
    const form = $('name-form');
    $('name-problem').hidden = !problem;
    if (problem) setText($('name-problem'), problem);
    $('name-screen').hidden = false;
    render();
    $('name-input').value = localStorage.getItem(NAME_KEY) || '';
    $('name-input').focus();
    form.onsubmit = (event) => {
      event.preventDefault();
      const name = $('name-input').value.trim();
      if (!name) return;
      localStorage.setItem(NAME_KEY, name);
      $('name-screen').hidden = true;
      render();
      enterFullscreen(); // this click may also start sound and full screen
      resolve(name);
    };
  });
}

async function loadLesson() {
  for (let delay = 1000; ; delay = Math.min(delay * 2, 10000)) {
    try {
      return await refreshLesson();
    } catch (error) {
      if (error instanceof ApiError && [401, 403, 404].includes(error.status)) {
        view.problem = 'invalid';
        render();
        return null;
      }
      view.connection = 'reconnecting';
      render();
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/** The events socket, as this classroom (its name goes with it). */
function openEvents() {
  if (events) events.close();
  const name = localStorage.getItem(NAME_KEY) || '';
  interaction.setName(name);
  events = new LessonEvents(lessonId, token, {
    name,
    client: clientId(),
    onLesson: (snapshot) => {
      view.title = snapshot.title;
      view.lessonState = snapshot.state;
      view.sources = snapshot.sources;
      view.onStage = snapshot.on_stage ?? null;
      view.maxClassrooms = snapshot.max_classrooms ?? view.maxClassrooms;
      interaction.lesson(snapshot);
      render();
    },
    onEnded: ended,
    onMessage: (message) => {
      if (message.type === 'link') {
        view.audioOnly = message.state === 'audio_only';
        $('status').dataset.link = message.state;
        render();
      } else {
        interaction.message(message);
      }
    },
    onStatus: (connected) => {
      if (!connected) view.sources = view.onStage = null; // fall back to the pictures alone
      if (connected && rewinding) tellRewinding(true); // a new socket: the server forgot
      interaction.render();
    },
  });
  interaction.attach(events);
  events.start();
}

async function main() {
  mountLanguageSwitch($('lang'));
  renderFullscreenButton();
  render();
  // a link that no longer works (expired, replaced) or a lesson that has ended is said at
  // once: the room's name is asked only for a lesson it can still join
  const lesson = await loadLesson();
  if (!lesson) return;
  if (lesson.state === 'ended') return ended();
  if (!localStorage.getItem(NAME_KEY)) await askName();
  view.connection = 'connecting';
  render();
  openEvents();
  setInterval(pollFrames, POLL_MS);
  setInterval(showPath, PATH_MS);
  await connect();
}

$('sound').addEventListener('click', unmute);
$('room').addEventListener('click', () => {
  if (view.soundBlocked) unmute();
});
$('fullscreen').addEventListener('click', () => {
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  else enterFullscreen();
});
document.addEventListener('fullscreenchange', renderFullscreenButton);
$('room-name').addEventListener('click', async () => {
  await askName();
  if (events && view.lessonState !== 'ended') openEvents();
  if (player) {
    // the teacher sees the new name on the next session
    await player.stop();
    player = null;
    connect();
  }
});
let idleTimer = null;
document.addEventListener('pointermove', () => {
  document.body.classList.remove('idle');
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => document.body.classList.add('idle'), IDLE_MS);
});
window.addEventListener('langchange', () => {
  render();
  interaction.chat.render();
  interaction.render();
});
window.addEventListener('pagehide', () => {
  interaction.leave();
  if (player) player.stop({ keepalive: true });
});

main();
