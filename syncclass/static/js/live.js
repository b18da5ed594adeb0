// The operator's wall of live lessons (巡课): every lesson live now with its classrooms against
// the cap, what the teacher publishes, who is on stage, the recording, and how many classrooms
// receive well, fairly or poorly; refreshed every few seconds. Each tile opens the report.

import { api, ApiError } from './api.js';
import { lang, mountLanguageSwitch, setText, t } from './i18n.js';
import './interaction-strings.js';

const KEY_STORAGE = 'syncclass.teacherKey';
const REFRESH_MS = 3000;
const GRADES = ['good', 'fair', 'poor'];
const $ = (id) => document.getElementById(id);

let key = localStorage.getItem(KEY_STORAGE) || '';
let lessons = [];
let timer = null;
let updatedAt = null;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function fact(labelKey, value) {
  const item = element('div', 'fact');
  const label = element('dt');
  setText(label, labelKey);
  const data = element('dd');
  if (value instanceof Node) data.append(value);
  else data.textContent = value;
  item.append(label, data);
  return item;
}

function sourcesText(sources) {
  const shown = sources.filter((s) => !s.startsWith('feed:'));
  if (!shown.length) return t('live.none');
  const named = (s) => (['camera', 'courseware'].includes(s) ? t(`live.source.${s}`) : s);
  return shown.map(named).join(' · ');
}

function recordingText(recording) {
  if (!recording) return t('live.rec.off');
  const key = `live.rec.${recording.state}`;
  return t(key) === key ? recording.state : t(key);
}

/** good / fair / poor counts as numbers and as a bar of their shares. */
function qualityView(quality, classrooms) {
  const box = element('div', 'quality');
  const bar = element('div', 'quality-bar');
  const total = GRADES.reduce((sum, g) => sum + (quality[g] || 0), 0);
  for (const grade of GRADES) {
    const part = element('span', `part ${grade}`);
    part.style.flexGrow = String(quality[grade] || 0); // CSSOM, allowed under the pages' CSP
    bar.append(part);
  }
  bar.hidden = total === 0;
  const counts = element('div', 'quality-counts');
  for (const grade of GRADES) {
    const count = element('span', `grade ${grade}`);
    count.dataset.grade = grade;
    count.textContent = `${t(`grade.${grade}`)} ${quality[grade] || 0}`;
    counts.append(count);
  }
  const waiting = classrooms - total;
  if (waiting > 0) counts.append(element('span', 'grade', `${t('grade.unknown')} ${waiting}`));
  box.append(counts, bar);
  return box;
}

function tile(lesson) {
  const quality = lesson.quality || {};
  const link = element('a', 'lesson-tile');
  link.href = `/lessons/${encodeURIComponent(lesson.id)}/report`;
  link.dataset.lesson = lesson.id;
  link.dataset.worst = (quality.poor && 'poor') || (quality.fair && 'fair') || 'good';
  const head = element('header', 'tile-head');
  head.append(element('h2', 'tile-title', lesson.title));
  const state = element('span', `pill state-${lesson.state ?? 'live'}`);
  setText(state, `state.${lesson.state ?? 'live'}`);
  head.append(state);
  const teacher = element('p', 'hint');
  if (lesson.teacher) setText(teacher, 'live.teacher', { name: lesson.teacher });
  else setText(teacher, 'live.noTeacher');

  const count = element('span', 'count-line');
  const full = lesson.classrooms >= lesson.max_classrooms;
  const n = element('strong', full ? 'full' : '', String(lesson.classrooms));
  count.append(n, ` / ${lesson.max_classrooms}`);
  const facts = element('dl', 'facts');
  const paths = fact('live.paths', pathsText(lesson.paths));
  paths.dataset.paths = JSON.stringify(lesson.paths ?? {});
  facts.append(
    fact('live.classrooms', count),
    fact('live.sources', sourcesText(lesson.sources || [])),
    fact('live.onStage', (lesson.on_stage || []).join('、') || t('live.none')),
    fact('live.audioOnly', String(lesson.audio_only ?? 0)),
    fact('live.reduced', String(lesson.reduced ?? 0)),
    paths,
    fact('live.recording', recordingText(lesson.recording)),
  );
  facts.lastChild.dataset.recording = lesson.recording?.state ?? 'off';
  const more = element('span', 'tile-more');
  setText(more, 'live.report');
  link.append(head, teacher, facts, qualityView(quality, lesson.classrooms), more);
  return link;
}

function render() {
  const wall = $('wall');
  wall.replaceChildren(...lessons.map(tile));
  $('live-empty').hidden = !(key && updatedAt && lessons.length === 0);
  const classrooms = lessons.reduce((sum, lesson) => sum + (lesson.classrooms || 0), 0);
  if (updatedAt) setText($('summary'), 'live.summary', { lessons: lessons.length, classrooms });
  if (updatedAt) {
    const locale = lang() === 'zh' ? 'zh-CN' : 'en-GB';
    setText($('updated'), 'live.updated', { time: updatedAt.toLocaleTimeString(locale) });
  }
}

function askKey(wrong) {
  clearTimeout(timer);
  $('key-card').hidden = false;
  $('key-error').hidden = !wrong;
  if (wrong) setText($('key-error'), 'live.key.wrong');
  $('wall').replaceChildren();
}

async function refresh() {
  clearTimeout(timer);
  if (!key) return askKey(false);
  try {
    const data = await api('GET', '/api/live', { credential: key });
    lessons = data.lessons || [];
    updatedAt = new Date();
    $('live-error').hidden = true;
    $('key-card').hidden = true;
    render();
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      localStorage.removeItem(KEY_STORAGE);
      key = '';
      return askKey(true);
    }
    $('live-error').hidden = false;
    setText($('live-error'), 'live.stale'); // the wall keeps what it last knew
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

function main() {
  mountLanguageSwitch($('lang'));
  window.addEventListener('langchange', render);
  $('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    key = $('key-input').value.trim();
    if (!key) return;
    localStorage.setItem(KEY_STORAGE, key);
    $('key-input').value = '';
    refresh();
  });
  refresh();
}

main();

/** How many classrooms take each path: 直连 UDP 3 · 中继 1 (the paths nobody takes left out). */
function pathsText(paths) {
  const taken = Object.entries(paths ?? {}).filter(([, n]) => n > 0);
  if (!taken.length) return t('live.none');
  return taken.map(([path, n]) => `${t(`path.${path}`)} ${n}`).join(' · ');
}
