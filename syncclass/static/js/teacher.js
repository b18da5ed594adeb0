// The teacher's lesson view: preview, publishing camera + microphone and courseware over
// WHIP, the join link, the live classroom count, and starting and ending the lesson.

import { api, ApiError, lessonFromLocation } from './api.js';
import { fillDeviceSelect, openDevices, openTrack } from './devices.js';
import { LessonEvents } from './events.js';
import { mountLanguageSwitch, setText } from './i18n.js';
import { showJoinLink } from './join-panel.js';
import { WhipPublisher } from './whip.js';

const $ = (id) => document.getElementById(id);
const { id: lessonId, token } = lessonFromLocation();
const whipUrl = (source) => `/whip/${encodeURIComponent(lessonId)}?source=${source}`;

const local = { video: null, audio: null, screen: null };
let camera = null; // WhipPublisher of the camera source while the lesson is taught
let courseware = null; // WhipPublisher of the courseware source while shared
let lessonState = 'scheduled';
let retryTimer = null;
let retryDelay = 1000;
let reconnecting = false; // the camera publication was lost and is being restored
let events = null;

// --- the state line ------------------------------------------------------------------------

function showState(state) {
  const line = $('state');
  line.dataset.state = state;
  document.body.dataset.state = state;
  setText(line, `teach.state.${state}`);
  const ended = state === 'ended' || state === 'invalid';
  $('start').disabled = ended || camera !== null || !(local.video || local.audio);
  $('start').hidden = camera !== null || ended;
  $('end').disabled = ended || state === 'loading';
  $('courseware-toggle').disabled = ended || camera === null;
}

function refreshState() {
  if (lessonState === 'ended') return showState('ended');
  if (!camera) return showState('ready');
  if (camera.connectionState === 'connected') return showState('live');
  return showState(reconnecting ? 'reconnecting' : 'connecting');
}

function showError(key, error) {
  const box = $('media-error');
  box.hidden = false;
  setText(box, key, { message: error.message || String(error) });
}

// --- camera and microphone -------------------------------------------------------------------

function showPreview() {
  $('camera-preview').srcObject = local.video ? new MediaStream([local.video]) : null;
}

async function openLocalMedia() {
  try {
    Object.assign(local, await openDevices());
  } catch (error) {
    showError('teach.noDevice', error);
  }
  showPreview();
  await fillDeviceSelect($('camera-select'), 'videoinput', local.video);
  await fillDeviceSelect($('mic-select'), 'audioinput', local.audio);
  renderToggles();
}

async function switchDevice(kind, deviceId) {
  const old = local[kind];
  const track = await openTrack(kind, deviceId);
  track.enabled = old ? old.enabled : true;
  local[kind] = track;
  if (camera) await camera.replaceTrack(kind, track);
  if (old) old.stop();
  if (kind === 'video') showPreview();
}

function renderToggles() {
  const mic = $('mic-toggle');
  mic.disabled = !local.audio;
  setText(mic, local.audio && !local.audio.enabled ? 'teach.unmute' : 'teach.mute');
  mic.setAttribute('aria-pressed', String(Boolean(local.audio && !local.audio.enabled)));
  const cam = $('camera-toggle');
  cam.disabled = !local.video;
  setText(cam, local.video && !local.video.enabled ? 'teach.cameraOn' : 'teach.cameraOff');
  cam.setAttribute('aria-pressed', String(Boolean(local.video && !local.video.enabled)));
  const share = $('courseware-toggle');
  setText(share, courseware ? 'teach.stopCourseware' : 'teach.shareCourseware');
  share.setAttribute('aria-pressed', String(courseware !== null));
}

// --- publishing ------------------------------------------------------------------------------

async function startTeaching() {
  if (camera || lessonState === 'ended') return;
  clearTimeout(retryTimer);
  const publisher = new WhipPublisher(whipUrl('camera'), token, {
    onConnected: () => {
      retryDelay = 1000;
      reconnecting = false;
      refreshState();
    },
    onDrop: () => reconnect(),
  });
  camera = publisher;
  refreshState();
  try {
    await publisher.publish([local.audio, local.video].filter(Boolean));
  } catch (error) {
    if (camera !== publisher) return;
    camera = null;
    if (error instanceof ApiError && error.status === 410) return lessonEnded();
    if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
      showError('teach.publishFailed', error);
      return refreshState();
    }
    return reconnect();
  }
  refreshState();
}

function reconnect() {
  if (lessonState === 'ended') return;
  if (camera) camera.close();
  camera = null;
  reconnecting = true;
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => startTeaching(), retryDelay);
  retryDelay = Math.min(retryDelay * 2, 10000);
  showState('reconnecting');
}

async function startCourseware() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({
      video: { frameRate: { ideal: 15 } },
      audio: false,
    });
  } catch (error) {
    showError('teach.coursewareFailed', error);
    return;
  }
  const [track] = stream.getVideoTracks();
  track.contentHint = 'detail'; // slides and text: keep them sharp rather than smooth
  track.addEventListener('ended', () => stopCourseware()); // the browser's own "stop sharing"
  local.screen = track;
  const publisher = new WhipPublisher(whipUrl('courseware'), token, {
    onDrop: () => {
      if (courseware === publisher) stopCourseware();
    },
  });
  courseware = publisher;
  $('courseware-preview').srcObject = stream;
  $('courseware-figure').hidden = false;
  $('previews').dataset.courseware = 'on';
  renderToggles();
  try {
    await publisher.publish([track]);
  } catch (error) {
    showError('teach.coursewareFailed', error);
    await stopCourseware();
  }
}

async function stopCourseware() {
  const publisher = courseware;
  courseware = null;
  if (local.screen) local.screen.stop();
  local.screen = null;
  $('courseware-preview').srcObject = null;
  $('courseware-figure').hidden = true;
  $('previews').dataset.courseware = 'off';
  renderToggles();
  if (publisher) await publisher.stop();
}

// --- the lesson ------------------------------------------------------------------------------

function lessonEnded() {
  lessonState = 'ended';
  clearTimeout(retryTimer);
  for (const publisher of [camera, courseware]) if (publisher) publisher.close();
  camera = null;
  courseware = null;
  for (const track of Object.values(local)) if (track) track.stop();
  if (events) events.close();
  refreshState();
}

function showLesson(snapshot) {
  $('classroom-count').textContent = String(snapshot.classrooms);
  setText($('classroom-max'), 'teach.classroomsOf', { max: snapshot.max_classrooms });
  $('courseware-live').hidden = !snapshot.sources.includes('courseware');
  if (snapshot.state === 'ended') lessonEnded();
}

let endArmed = null;
async function endLesson() {
  const button = $('end');
  if (!endArmed) {
    setText(button, 'teach.endConfirm');
    button.classList.add('armed');
    endArmed = setTimeout(() => {
      endArmed = null;
      button.classList.remove('armed');
      setText(button, 'teach.end');
    }, 4000);
    return;
  }
  clearTimeout(endArmed);
  endArmed = null;
  button.classList.remove('armed');
  setText(button, 'teach.end');
  try {
    await api('POST', `/api/lessons/${encodeURIComponent(lessonId)}/end`, { credential: token });
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 410)) return showError('error.generic', error);
  }
  lessonEnded();
}

async function main() {
  mountLanguageSwitch($('lang'));
  showState('loading');
  let lesson;
  try {
    lesson = await api('GET', `/api/lessons/${encodeURIComponent(lessonId)}`, { credential: token });
  } catch (error) {
    if (error instanceof ApiError && [401, 403, 404].includes(error.status)) return showState('invalid');
    showError('error.generic', error);
    return;
  }
  $('lesson-title').textContent = lesson.title;
  document.title = `${lesson.title} · ${document.title}`;
  lessonState = lesson.state;
  showLesson({ ...lesson, sources: lesson.origin_sources });
  if (lesson.state === 'ended') return lessonEnded();
  showJoinLink(lesson.join_url, { input: $('join-link'), copyButton: $('copy'), qrBox: $('qr') });
  events = new LessonEvents(lessonId, token, {
    onLesson: (snapshot) => {
      lessonState = snapshot.state;
      showLesson(snapshot);
    },
    onEnded: lessonEnded,
  });
  events.start();
  await openLocalMedia();
  refreshState();
  // a reload in the middle of a lesson carries on teaching without another click
  if (lesson.state === 'live') await startTeaching();
}

$('start').addEventListener('click', () => startTeaching());
$('end').addEventListener('click', () => endLesson());
$('mic-toggle').addEventListener('click', () => {
  if (local.audio) local.audio.enabled = !local.audio.enabled;
  renderToggles();
});
$('camera-toggle').addEventListener('click', () => {
  if (local.video) local.video.enabled = !local.video.enabled;
  renderToggles();
});
$('courseware-toggle').addEventListener('click', () => (courseware ? stopCourseware() : startCourseware()));
$('camera-select').addEventListener('change', (event) => switchDevice('video', event.target.value));
$('mic-select').addEventListener('change', (event) => switchDevice('audio', event.target.value));
window.addEventListener('langchange', () => refreshState());
// leave at once, so classrooms wait for the reloaded page instead of a connection timing out
window.addEventListener('pagehide', () => {
  for (const publisher of [camera, courseware]) if (publisher) publisher.stop({ keepalive: true });
});

main();
