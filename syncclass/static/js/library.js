// The replay library: recordings of past lessons to choose from, and a player that seeks.
//
// The teacher (with the key this browser keeps from the home page) sees every recording and
// can share a replay link, make one public or delete it; anybody else sees the public ones.
// A replay link is this page with ?lesson=ID&token=TOKEN: it opens that recording directly.
// A course's replays come together under its title, in timetable order (第 N 课); with
// ?course=ID&token=COURSE_LINK a classroom holding the course link sees its course's replays,
// when the teacher allows it.

import { api, ApiError } from './api.js';
import './library-strings.js';
import { lang, mountLanguageSwitch, setText, t } from './i18n.js';

const KEY_STORAGE = 'syncclass.teacherKey';
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(window.location.search);
const link = { lesson: params.get('lesson') || '', token: params.get('token') || '' };
const courseView = params.get('course') || ''; // a classroom on its course link

let teacherKey = localStorage.getItem(KEY_STORAGE) || '';
let isTeacher = false;
let shown = null; // the recording in the player
let listing = [];

// --- formatting ------------------------------------------------------------------------

function clock(seconds) {
  const s = Math.max(0, Math.round(seconds || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

function size(bytes) {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1e3))} KB`;
}

function date(seconds) {
  const locale = lang() === 'zh' ? 'zh-CN' : 'en-GB';
  return new Date(seconds * 1000).toLocaleString(locale, { dateStyle: 'medium', timeStyle: 'short' });
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(key, vars = null) {
  const box = $('library-error');
  box.hidden = false;
  setText(box, key, vars);
}

// --- the list --------------------------------------------------------------------------

function filterQuery() {
  const query = new URLSearchParams();
  const text = $('search').value.trim();
  if (text) query.set('q', text);
  // dates are the viewer's local days
  if ($('from').value) query.set('since', String(new Date(`${$('from').value}T00:00`).getTime() / 1000));
  if ($('to').value) {
    const end = new Date(`${$('to').value}T00:00`);
    end.setDate(end.getDate() + 1);
    query.set('until', String(end.getTime() / 1000));
  }
  return query;
}

async function loadList() {
  let data;
  try {
    data = courseView
      ? await api('GET', `/api/courses/${encodeURIComponent(courseView)}/recordings`,
        { credential: link.token })
      : await api('GET', `/api/recordings?${filterQuery()}`, { credential: teacherKey || null });
  } catch (error) {
    showError(error instanceof ApiError && error.status === 0 ? 'error.network' : 'error.generic',
      { message: error.message });
    return;
  }
  if (courseView) data.total_size_bytes = 0;
  if (teacherKey && !data.teacher && !courseView) {
    teacherKey = '';
    localStorage.removeItem(KEY_STORAGE);
    $('key-error').hidden = false;
  }
  isTeacher = data.teacher;
  listing = data.recordings;
  $('key-form').hidden = isTeacher;
  $('key-forget').hidden = !isTeacher;
  $('public-only').hidden = isTeacher;
  setText($('count'), 'library.count', { n: data.recordings.length });
  setText($('disk'), 'library.disk', { size: size(data.total_size_bytes) });
  $('disk').hidden = !isTeacher;
  renderList();
}

function renderList() {
  const list = $('recordings');
  // a course's recordings together, where its newest one is, in timetable order
  const items = [];
  const groups = new Map();
  for (const recording of listing) {
    const course = recording.course;
    if (!course) {
      items.push(card(recording));
      continue;
    }
    let group = groups.get(course.id);
    if (!group) {
      const item = element('li', 'course-group');
      item.dataset.course = course.id;
      const heading = element('h2', 'course-title', course.title);
      const inner = element('ul', 'recordings');
      item.append(heading, inner);
      group = { inner, recordings: [] };
      groups.set(course.id, group);
      items.push(item);
    }
    group.recordings.push(recording);
  }
  for (const group of groups.values()) {
    group.recordings.sort((a, b) => a.course.number - b.course.number);
    group.inner.replaceChildren(...group.recordings.map(card));
  }
  list.replaceChildren(...items);
  $('empty').hidden = listing.length > 0;
}

function card(recording) {
  const item = element('li', 'recording-card');
  item.dataset.lesson = recording.lesson_id;
  const thumb = element('button', 'thumb');
  thumb.type = 'button';
  setText(thumb, 'library.open');
  if (recording.thumbnail_url) {
    const image = element('img');
    image.src = recording.thumbnail_url;
    image.alt = recording.title;
    image.loading = 'lazy';
    thumb.replaceChildren(image);
  }
  if (recording.duration_s) thumb.append(element('span', 'duration-badge', clock(recording.duration_s)));
  thumb.disabled = !recording.url;
  thumb.addEventListener('click', () => openRecording(recording));
  const body = element('div', 'body');
  const title = element('h2', null, recording.title);
  if (recording.course) {
    title.replaceChildren(element('span', 'lesson-number', t('library.number', { n: recording.course.number })));
  }
  const teacher = element('p', 'meta');
  if (recording.teacher) setText(teacher, 'library.teacher', { name: recording.teacher });
  else setText(teacher, 'library.noTeacher');
  const when = element('p', 'meta', date(recording.date));
  const pills = element('div', 'pills');
  const state = element('span', `pill ${recording.state}`);
  setText(state, `library.state.${recording.state}`);
  pills.append(state);
  if (isTeacher) pills.append(element('span', 'pill', size(recording.size_bytes)));
  if (recording.public) {
    const pub = element('span', 'pill');
    setText(pub, 'library.public');
    pills.append(pub);
  }
  body.append(title, teacher, when, pills);
  item.append(thumb, body);
  return item;
}

// --- the player ------------------------------------------------------------------------

function courseware() {
  return $('courseware-video');
}

// the videos that play beside the main one, each following its clock from its own offset
const SIDE_VIDEOS = { courseware: 'courseware-video', stage: 'stage-video' };

function syncSideVideos() {
  if (!shown) return;
  const main = $('main-video');
  for (const [part, id] of Object.entries(SIDE_VIDEOS)) {
    if (!shown[part]) continue;
    const video = $(id);
    const wanted = main.currentTime - shown[part].offset_s;
    const inside = wanted >= 0 && (!video.duration || wanted <= video.duration);
    if (inside && Math.abs(video.currentTime - wanted) > 0.3) video.currentTime = wanted;
    if (inside && !main.paused && video.paused) video.play().catch(() => {});
    if ((!inside || main.paused) && !video.paused) video.pause();
  }
}

function openRecording(recording) {
  shown = recording;
  $('library-view').hidden = true;
  $('player').hidden = false;
  $('player-title').textContent = recording.title;
  const meta = [recording.teacher, date(recording.date), clock(recording.duration_s)].filter(Boolean);
  $('player-meta').textContent = meta.join(' · ');
  $('not-ready').hidden = Boolean(recording.url);
  $('incomplete').hidden = !['low_disk_space', 'disk_full', 'write_failed'].includes(recording.error);
  const main = $('main-video');
  main.src = recording.url || '';
  const screens = $('screens');
  screens.dataset.courseware = recording.courseware ? 'on' : 'off';
  $('courseware-box').hidden = !recording.courseware;
  courseware().src = recording.courseware ? recording.courseware.url : '';
  screens.dataset.stage = recording.stage ? 'on' : 'off';
  $('stage-box').hidden = !recording.stage;
  $('stage-video').src = recording.stage ? recording.stage.url : '';
  renderChapters(recording);
  renderOwnerTools(recording);
  const query = new URLSearchParams({ lesson: recording.lesson_id });
  if (link.token && link.lesson === recording.lesson_id) query.set('token', link.token);
  window.history.replaceState(null, '', `?${query}`);
}

function renderChapters(recording) {
  const list = $('chapters');
  list.replaceChildren();
  for (const chapter of recording.chapters || []) {
    const button = element('button', 'chapter');
    button.type = 'button';
    setText(button, 'library.chapter.courseware', { start: clock(chapter.start_s), end: clock(chapter.end_s) });
    button.addEventListener('click', () => {
      $('main-video').currentTime = chapter.start_s;
      $('main-video').play().catch(() => {});
    });
    const item = element('li');
    item.append(button);
    list.append(item);
  }
  $('chapters-box').hidden = !(recording.chapters || []).length;
}

function renderOwnerTools(recording) {
  $('owner-tools').hidden = !isTeacher;
  $('share-box').hidden = true;
  $('public-switch').checked = Boolean(recording.public);
  renderStageSwitch(recording);
  const remove = $('delete');
  remove.classList.remove('armed');
  setText(remove, 'library.delete');
}

function closePlayer() {
  $('main-video').pause();
  courseware().pause();
  $('stage-video').pause();
  $('main-video').removeAttribute('src');
  courseware().removeAttribute('src');
  $('stage-video').removeAttribute('src');
  shown = null;
  $('player').hidden = true;
  $('library-view').hidden = false;
  window.history.replaceState(null, '', window.location.pathname);
  loadList();
}

async function share() {
  const data = await api('POST', `/api/recordings/${encodeURIComponent(shown.lesson_id)}/link`,
    { credential: teacherKey });
  $('share-url').value = data.url;
  setText($('share-help'), 'library.shareHelp', { until: date(data.expires_at) });
  $('share-box').hidden = false;
}

// The stage file holds the pupils called on stage: it is public only by a choice of its own,
// offered only on a public recording and with its warning in plain sight.
function renderStageSwitch(recording) {
  $('public-stage-row').hidden = !(recording.stage && recording.public);
  $('public-stage-switch').checked = Boolean(recording.public_stage);
}

async function changePublicity(body) {
  const data = await api('PATCH', `/api/recordings/${encodeURIComponent(shown.lesson_id)}`,
    { credential: teacherKey, body });
  shown.public = data.public;
  shown.public_stage = data.public_stage;
  renderStageSwitch(shown);
}

async function setPublic(event) {
  await changePublicity({ public: event.target.checked });
}

async function setPublicStage(event) {
  await changePublicity({ public_stage: event.target.checked });
}

async function remove() {
  const button = $('delete');
  if (!button.classList.contains('armed')) {
    button.classList.add('armed');
    setText(button, 'library.deleteConfirm');
    return;
  }
  await api('DELETE', `/api/recordings/${encodeURIComponent(shown.lesson_id)}`, { credential: teacherKey });
  closePlayer();
}

async function openFromLink() {
  try {
    const recording = await api('GET', `/api/recordings/${encodeURIComponent(link.lesson)}`,
      { credential: link.token || teacherKey || null });
    openRecording(recording);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) showError('library.invalidLink');
    else if (error instanceof ApiError && error.status === 404) showError('library.notFound');
    else showError('error.generic', { message: error.message });
  }
}

// --- wiring ----------------------------------------------------------------------------

function guard(action) {
  return (event) => action(event).catch((error) => showError('error.generic', { message: error.message }));
}

function debounce(action, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(action, ms);
  };
}

function mount() {
  mountLanguageSwitch($('lang'));
  window.addEventListener('langchange', () => {
    renderList();
    if (shown) openRecording(shown);
  });
  const refresh = debounce(loadList, 250);
  $('search').addEventListener('input', refresh);
  $('from').addEventListener('change', refresh);
  $('to').addEventListener('change', refresh);
  $('clear').addEventListener('click', () => {
    $('search').value = '';
    $('from').value = '';
    $('to').value = '';
    loadList();
  });
  $('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    teacherKey = $('key-input').value.trim();
    localStorage.setItem(KEY_STORAGE, teacherKey);
    $('key-error').hidden = true;
    loadList();
  });
  $('key-forget').addEventListener('click', () => {
    teacherKey = '';
    localStorage.removeItem(KEY_STORAGE);
    loadList();
  });
  $('back').addEventListener('click', closePlayer);
  const main = $('main-video');
  for (const name of ['timeupdate', 'seeked', 'play', 'pause', 'ratechange']) {
    main.addEventListener(name, syncSideVideos);
  }
  main.addEventListener('ratechange', () => {
    for (const id of Object.values(SIDE_VIDEOS)) $(id).playbackRate = main.playbackRate;
  });
  $('share').addEventListener('click', guard(share));
  $('copy').addEventListener('click', () => {
    navigator.clipboard?.writeText($('share-url').value).then(() => setText($('copy'), 'library.copied'));
  });
  $('public-switch').addEventListener('change', guard(setPublic));
  $('public-stage-switch').addEventListener('change', guard(setPublicStage));
  $('delete').addEventListener('click', guard(remove));

  const listed = loadList();
  if (link.lesson) listed.then(openFromLink);
}

mount();
