// The classroom page: plays the lesson on the classroom's big screen, courseware large and
// the teacher small while courseware is shared; waits before, says so after, and reconnects
// by itself (a new WHEP session) when the network drops.

import { api, ApiError, lessonFromLocation } from './api.js';
import { LessonEvents } from './events.js';
import { FrameWatch } from './frames.js';
import { mountLanguageSwitch, setText } from './i18n.js';
import { WhepPlayer } from './whep.js';

const $ = (id) => document.getElementById(id);
const NAME_KEY = 'syncclass.classroomName';
const POLL_MS = 500;
const IDLE_MS = 4000;
const { id: lessonId, token } = lessonFromLocation();

const view = {
  title: '',
  lessonState: 'scheduled',
  sources: null, // what the teacher publishes, while the events socket knows it
  problem: null, // 'invalid' or 'full'
  connection: 'connecting', // 'connected' or 'reconnecting'
  camera: false, // pictures are arriving
  courseware: false,
  seenPictures: false,
  soundBlocked: false,
};
let player = null;
let watches = null;
let events = null;
let retryTimer = null;
let retryDelay = 1000;

// --- what is on screen -------------------------------------------------------------------

function message(titleKey, textKey, { spinner = false } = {}) {
  $('message-lesson').textContent = view.title;
  setText($('message-title'), titleKey);
  if (textKey) setText($('message-text'), textKey);
  else $('message-text').textContent = '';
  $('message-spinner').hidden = !spinner;
}

function screen() {
  if (view.lessonState === 'ended') return 'ended';
  if (view.problem) return view.problem;
  if (view.camera || view.courseware) return 'playing';
  return view.seenPictures && view.lessonState === 'live' ? 'away' : 'waiting';
}

function render() {
  const current = screen();
  document.body.dataset.screen = current;
  $('message-screen').hidden = current === 'playing';
  if (current === 'ended') message('join.ended.title', 'join.ended.text');
  else if (current === 'invalid') message('join.invalid', null);
  else if (current === 'full') message('join.full', null, { spinner: true });
  else if (current === 'waiting') message('join.waiting.title', 'join.waiting.text', { spinner: true });
  else if (current === 'away') message('join.away.title', 'join.away.text', { spinner: true });
  const showCourseware =
    view.courseware && (view.sources === null || view.sources.includes('courseware'));
  $('room').dataset.layout = showCourseware ? 'courseware' : 'camera';
  $('sound').hidden = !(view.soundBlocked && current === 'playing');
  const status = $('status');
  const live = current !== 'ended' && !view.problem;
  if (live && view.connection === 'reconnecting') {
    status.hidden = false;
    setText(status, 'join.status.reconnecting');
  } else if (live && view.connection === 'connecting' && current !== 'playing') {
    status.hidden = false;
    setText(status, 'join.status.connecting');
  } else {
    status.hidden = true;
  }
  $('bar-lesson').textContent = view.title;
  setText($('room-name'), 'join.room', { name: localStorage.getItem(NAME_KEY) || '' });
}

// --- sound and full screen -----------------------------------------------------------------

function playWithSound() {
  const video = $('camera-video');
  video.muted = false;
  video.play().then(
    () => {
      view.soundBlocked = false;
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
  $('courseware-video').play().catch(() => {});
}

function enterFullscreen() {
  if (!document.fullscreenElement && document.documentElement.requestFullscreen) {
    document.documentElement.requestFullscreen().catch(() => {});
  }
}

function unmute() {
  view.soundBlocked = false;
  $('camera-video').muted = false;
  $('camera-video').play().catch(() => {});
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
  const url = `/whep/${encodeURIComponent(lessonId)}?name=${encodeURIComponent(name)}`;
  const attempt = new WhepPlayer(url, token, { onDrop: () => dropped(attempt) });
  player = attempt;
  try {
    await attempt.start();
  } catch (error) {
    if (player !== attempt) return;
    player = null;
    if (error instanceof ApiError && error.status === 410) return ended();
    if (error instanceof ApiError && error.status === 409) view.problem = 'full';
    else if (error instanceof ApiError && [401, 403, 404].includes(error.status)) {
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
  };
  $('camera-video').srcObject = attempt.camera;
  $('courseware-video').srcObject = attempt.courseware;
  playWithSound();
  render();
}

function retry() {
  view.connection = view.connection === 'connecting' ? 'connecting' : 'reconnecting';
  render();
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => connect(), retryDelay);
  retryDelay = Math.min(retryDelay * 2, 10000);
}

async function dropped(attempt) {
  if (player !== attempt) return;
  attempt.close();
  player = null;
  watches = null;
  view.connection = 'reconnecting';
  view.camera = view.courseware = false;
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
  const lesson = await api('GET', `/api/lessons/${encodeURIComponent(lessonId)}`, {
    credential: token,
  });
  view.title = lesson.title;
  view.lessonState = lesson.state;
  return lesson;
}

function ended() {
  view.lessonState = 'ended';
  clearTimeout(retryTimer);
  if (player) player.close();
  player = null;
  watches = null;
  view.camera = view.courseware = false;
  $('camera-video').srcObject = null;
  $('courseware-video').srcObject = null;
  if (events) events.close();
  render();
}

async function pollFrames() {
  if (!watches) return;
  const current = watches;
  const [camera, courseware] = await Promise.all([current.camera.poll(), current.courseware.poll()]);
  if (watches !== current) return;
  view.camera = camera;
  view.courseware = courseware;
  view.seenPictures ||= camera || courseware;
  render();
}

// --- start -------------------------------------------------------------------------------------

function askName() {
  return new Promise((resolve) => {
    const form = $('name-form');
    $('name-screen').hidden = false;
    $('name-input').value = localStorage.getItem(NAME_KEY) || '';
    $('name-input').focus();
    form.onsubmit = (event) => {
      event.preventDefault();
      const name = $('name-input').value.trim();
      if (!name) return;
      localStorage.setItem(NAME_KEY, name);
      $('name-screen').hidden = true;
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

async function main() {
  mountLanguageSwitch($('lang'));
  renderFullscreenButton();
  if (!localStorage.getItem(NAME_KEY)) await askName();
  render();
  const lesson = await loadLesson();
  if (!lesson) return;
  view.connection = 'connecting';
  render();
  if (lesson.state === 'ended') return ended();
  events = new LessonEvents(lessonId, token, {
    onLesson: (snapshot) => {
      view.title = snapshot.title;
      view.lessonState = snapshot.state;
      view.sources = snapshot.sources;
      render();
    },
    onEnded: ended,
    onStatus: (connected) => {
      if (!connected) view.sources = null; // fall back to the pictures alone
    },
  });
  events.start();
  setInterval(pollFrames, POLL_MS);
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
window.addEventListener('langchange', render);
window.addEventListener('pagehide', () => {
  if (player) player.stop({ keepalive: true });
});

main();
