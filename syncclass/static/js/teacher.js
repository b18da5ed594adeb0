// The teacher's lesson view: preview, publishing camera + microphone and courseware over
// WHIP, the join link, the live classroom count, and starting and ending the lesson. The
// classrooms' feeds, hands, stage and chat are in teacher-interaction.js.

import { api, ApiError, renewTeacherToken, teacherLessonFromLocation } from './api.js';
import { fillDeviceSelect, openDevices, openTrack } from './devices.js';
import { LessonEvents } from './events.js';
import { mountLanguageSwitch, setText } from './i18n.js';
import './interaction-strings.js';
import { showJoinLink } from './join-panel.js';
import { connectionPath, setIceServers } from './ladder.js';
import { Publication } from './publication.js';
import { TeacherInteraction } from './teacher-interaction.js';
import { UplinkMeter } from './uplink.js';

const $ = (id) => document.getElementById(id);
const { id: lessonId, token } = teacherLessonFromLocation();
const whipUrl = (source) => `/whip/${encodeURIComponent(lessonId)}?source=${source}`;

const local = { video: null, audio: null, screen: null };
let camera = null; // Publication of the camera and microphone while the lesson is taught
let courseware = null; // Publication of the shared screen
let lessonState = 'loading'; // then the lesson's state, or 'invalid' for a bad link
let events = null;
let recording = null; // the lesson's recording as the server last told it
// where the lesson's camera comes from: 'browser' (published from this page), 'pulled' (a
// classroom camera the server pulls over RTSP: its masked URL and its state as last told) or
// 'pushed' (an encoder pushing RTMP to the server, with this lesson's key)
let mode = 'browser';
let sourceUrl = null;
let pulled = null;
const interaction = new TeacherInteraction(lessonId, token);
// what is being sent of each source, and whether the uplink holds it back
const tellUplink = (source) => (sample) => events?.send({ type: 'uplink', source, ...sample });
new UplinkMeter($('uplink'), () => camera?.connection ?? null, tellUplink('camera'));
new UplinkMeter($('courseware-uplink'), () => courseware?.connection ?? null, tellUplink('courseware'));

// which path the camera's media takes: 直连 UDP / 直连 TCP / 中继 (ladder.js)
setInterval(async () => {
  const path = await connectionPath(camera?.connection).catch(() => null);
  const badge = $('path');
  badge.hidden = path === null;
  badge.dataset.path = path ?? '';
  if (path) setText(badge, `path.${path}`);
}, 1000);

// --- the state line ------------------------------------------------------------------------

function showState(state) {
  const line = $('state');
  line.dataset.state = state;
  document.body.dataset.state = state;
  setText(line, `teach.state.${state}`);
  const ended = state === 'ended' || state === 'invalid';
  $('closed').hidden = !ended;
  document.querySelector('main.teach').hidden = ended;
  if (ended) {
    setText($('closed-title'), `teach.state.${state}`);
    setText($('closed-text'), state === 'ended' ? endedNote() : 'teach.invalidNote');
  }
  $('start').disabled = ended || camera !== null || !(local.video || local.audio);
  $('start').hidden = camera !== null || ended || mode !== 'browser';
  $('end').disabled = ended || state === 'loading';
  $('courseware-toggle').disabled = ended || (camera === null && pulled?.state !== 'live');
}

// --- the recording -----------------------------------------------------------------------------

const INCOMPLETE = ['low_disk_space', 'disk_full', 'write_failed'];

// What the ended screen may promise: no replay that is not there.
function endedNote() {
  if (!recording) return 'teach.endedNoRecording';
  if (recording.state === 'failed') return 'teach.endedRecordingFailed';
  if (INCOMPLETE.includes(recording.error)) return 'teach.endedRecordingIncomplete';
  return 'teach.endedNote';
}

// Trouble with the recording is said while teaching: the lesson goes on without it.
function showRecording(next) {
  recording = next;
  const box = $('recording-notice');
  let key = null;
  if (next && next.state === 'failed' && lessonState !== 'ended') key = 'teach.recording.failed';
  else if (next && next.state === 'stopped' && INCOMPLETE.includes(next.error)) key = `teach.recording.${next.error}`;
  box.hidden = key === null;
  if (key) setText(box, key);
  if (lessonState === 'ended') refreshState();
}

function refreshState() {
  if (['loading', 'invalid', 'ended'].includes(lessonState)) return showState(lessonState);
  if (mode !== 'browser') {
    const states = { connecting: 'connecting', live: 'live', lost: 'reconnecting' };
    return showState(states[pulled?.state] ?? 'ready');
  }
  if (!camera) return showState('ready');
  return showState(camera.state === 'stopped' ? 'ready' : camera.state);
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
  let track;
  try {
    track = await openTrack(kind, deviceId);
  } catch (error) {
    showError('teach.noDevice', error);
    return;
  }
  $('media-error').hidden = true;
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

// --- a classroom camera pulled by the server (RTSP) ------------------------------------------

function setMode(next) {
  mode = next;
  $('source-select').value = next;
  document.body.dataset.cameraSource = next;
  $('pulled-box').hidden = next !== 'pulled';
  $('pushed-box').hidden = next !== 'pushed';
  for (const field of document.querySelectorAll('.browser-only')) field.hidden = next !== 'browser';
  $('pulled-preview').hidden = next === 'browser';
  $('camera-preview').hidden = next !== 'browser';
  renderPulled();
  refreshState();
}

// what the server says of its pull, as it is: no picture is shown here that is not coming
function renderPulled() {
  const current = $('pulled-current');
  current.hidden = !sourceUrl;
  if (sourceUrl) setText(current, 'teach.pulled.current', { url: sourceUrl });
  $('pulled-stop').hidden = !sourceUrl;
  const prefix = mode === 'pushed' ? 'teach.pushed' : 'teach.pulled';
  // what the server says of the camera this mode feeds from, and of no other
  const shown = pulled && (pulled.via === 'rtmp') === (mode === 'pushed') ? pulled : null;
  const key = shown ? `${prefix}.${shown.state}` : `${prefix}.none`;
  const vars = shown ? { error: shown.error ?? '', seconds: shown.retry_in_s ?? '' } : null;
  for (const line of [$('pulled-state'), $('pushed-state'), $('pulled-preview')]) {
    line.dataset.state = shown?.state ?? 'none';
    setText(line, key, vars);
  }
}

async function setSource(url) {
  try {
    const lesson = await api('PATCH', `/api/lessons/${encodeURIComponent(lessonId)}`, {
      credential: token,
      body: { source_url: url },
    });
    sourceUrl = lesson.source_url;
    pulled = lesson.camera_source;
    $('pulled-url').value = '';
    $('media-error').hidden = true;
  } catch (error) {
    showError('teach.pulled.failed', error);
  }
  renderPulled();
  refreshState();
}

async function chooseMode(next) {
  if (next !== 'browser' && camera) {
    const publication = camera;
    camera = null;
    await publication.stop(); // the server takes no camera URL while this page publishes one
  }
  if (next !== 'pulled' && sourceUrl) await setSource(null);
  setMode(next);
}

// --- publishing ------------------------------------------------------------------------------

function refused(error) {
  showError('teach.publishFailed', error);
}

function startTeaching() {
  if (camera || !['scheduled', 'live'].includes(lessonState)) return;
  camera = new Publication(whipUrl('camera'), token, [local.audio, local.video], {
    degradation: { video: 'balanced' }, // a person: some sharpness and some smoothness
    layers: true,
    onChange: refreshState,
    onEnded: lessonEnded,
    onRefused: (error) => {
      camera = null;
      refused(error);
      refreshState();
    },
  });
  refreshState();
  camera.start();
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
  courseware = new Publication(whipUrl('courseware'), token, [track], {
    degradation: { video: 'maintain-resolution' }, // text stays readable; frame rate gives way
    onEnded: lessonEnded,
    onRefused: (error) => {
      refused(error);
      stopCourseware();
    },
  });
  $('courseware-preview').srcObject = stream;
  $('courseware-figure').hidden = false;
  $('previews').dataset.courseware = 'on';
  renderToggles();
  courseware.start();
}

async function stopCourseware() {
  const publication = courseware;
  courseware = null;
  if (local.screen) local.screen.stop();
  local.screen = null;
  $('courseware-preview').srcObject = null;
  $('courseware-figure').hidden = true;
  $('previews').dataset.courseware = 'off';
  renderToggles();
  if (publication) await publication.stop();
}

// --- the lesson ------------------------------------------------------------------------------

function lessonEnded() {
  lessonState = 'ended';
  for (const publication of [camera, courseware]) if (publication) publication.close();
  camera = null;
  courseware = null;
  for (const track of Object.values(local)) if (track) track.stop();
  if (events) events.close();
  interaction.ended();
  refreshState();
}

function showLesson(snapshot) {
  interaction.lesson(snapshot);
  if (snapshot.camera_source !== undefined) {
    pulled = snapshot.camera_source;
    renderPulled();
  }
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
  refreshState();
  let lesson;
  try {
    lesson = await api('GET', `/api/lessons/${encodeURIComponent(lessonId)}`, { credential: token });
  } catch (error) {
    if (error instanceof ApiError && error.code === 'token_revoked' && (await renewTeacherToken(lessonId))) {
      window.location.reload(); // the teacher replaced this link: carry on with the new one
      return;
    }
    if (error instanceof ApiError && [401, 403, 404].includes(error.status)) {
      lessonState = 'invalid';
      return refreshState();
    }
    showError('error.generic', error);
    return;
  }
  $('lesson-title').textContent = lesson.title;
  setIceServers(lesson.ice_servers);
  document.title = `${lesson.title} · ${document.title}`;
  const report = `/lessons/${encodeURIComponent(lessonId)}/report?token=${encodeURIComponent(token)}`;
  for (const link of [$('report-link'), $('closed-report')]) {
    link.href = report;
    link.hidden = false;
  }
  lessonState = lesson.state;
  sourceUrl = lesson.source_url;
  if (lesson.rtmp_url) {
    $('pushed-url').value = lesson.rtmp_url;
    $('pushed-key').value = lesson.rtmp_key;
  } else {
    $('source-select').querySelector('option[value=pushed]').remove(); // no RTMP on this server
  }
  const pushing = lesson.camera_source?.via === 'rtmp' && lesson.camera_source.state !== 'lost';
  if (sourceUrl) setMode('pulled');
  else if (pushing) setMode('pushed');
  showRecording(lesson.recording || null);
  showLesson({ ...lesson, sources: lesson.origin_sources });
  if (lesson.state === 'ended') return lessonEnded();
  showJoinLink(lesson.join_url, { input: $('join-link'), copyButton: $('copy'), qrBox: $('qr') });
  events = new LessonEvents(lessonId, token, {
    onLesson: (snapshot) => {
      lessonState = snapshot.state;
      showLesson(snapshot);
    },
    onEnded: lessonEnded,
    onMessage: (message) => {
      if (message.type === 'recording') showRecording(message.recording);
      else if (message.type === 'source') {
        pulled = message;
        renderPulled();
        refreshState();
      }
      else interaction.message(message);
    },
  });
  interaction.attach(events);
  events.start();
  await openLocalMedia();
  refreshState();
  // a reload in the middle of a lesson carries on teaching without another click
  if (lesson.state === 'live' && mode === 'browser') startTeaching();
}

$('start').addEventListener('click', () => startTeaching());
$('source-select').addEventListener('change', (event) => chooseMode(event.target.value));
$('pulled-box').addEventListener('submit', (event) => {
  event.preventDefault();
  const url = $('pulled-url').value.trim();
  if (url) setSource(url);
});
$('pulled-stop').addEventListener('click', () => setSource(null));
$('pushed-key').addEventListener('focus', (event) => event.target.select());
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
window.addEventListener('langchange', () => {
  refreshState();
  renderPulled();
  interaction.render();
});
// leave at once, so classrooms wait for the reloaded page instead of a connection timing out
window.addEventListener('pagehide', () => {
  for (const publication of [camera, courseware]) {
    if (publication) publication.stop({ keepalive: true });
  }
});

main();
