// The lesson report: who attended and for how long, how well each classroom received the
// lesson over time, hands raised and turns on stage, and the recording. Read with the teacher
// key this browser keeps, or with the origin token of the teacher's page (?token=).

import { api, ApiError, teacherLessonFromLocation } from './api.js';
import { lang, mountLanguageSwitch, setText, t } from './i18n.js';
import './interaction-strings.js';
import { elapsed, timeChart, timeline } from './plot.js';

const KEY_STORAGE = 'syncclass.teacherKey';
const $ = (id) => document.getElementById(id);
// the origin token leaves the visible address, as on the teacher's page (kept for this tab)
const { id: lessonId, token } = teacherLessonFromLocation();
const credential = token || localStorage.getItem(KEY_STORAGE) || '';
let report = null;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function locale() {
  return lang() === 'zh' ? 'zh-CN' : 'en-GB';
}

function dateTime(seconds) {
  const style = { dateStyle: 'medium', timeStyle: 'short' };
  return new Date(seconds * 1000).toLocaleString(locale(), style);
}

function clock(seconds) {
  const style = { hour: '2-digit', minute: '2-digit', second: '2-digit' };
  return new Date(seconds * 1000).toLocaleTimeString(locale(), style);
}

/** The lesson's span: from its start (or first arrival) to its end (or now). */
function span(data) {
  const lesson = data.lesson;
  const arrivals = data.attendance.map((row) => row.joined_at);
  const start = lesson.started_at ?? Math.min(lesson.created_at, ...arrivals);
  const end = lesson.ended_at ?? data.generated_at ?? Date.now() / 1000;
  return { start, end: Math.max(end, start + 1) };
}

// --- the head ------------------------------------------------------------------------------

function renderHead(data) {
  const lesson = data.lesson;
  $('report-title').textContent = lesson.title;
  document.title = `${lesson.title} · ${t('doc.report')}`;
  const meta = $('report-meta');
  meta.replaceChildren();
  const parts = [];
  if (lesson.teacher) parts.push(t('report.teacher', { name: lesson.teacher }));
  if (lesson.started_at) {
    const end = lesson.ended_at ? clock(lesson.ended_at) : t('report.stillLive');
    parts.push(t('report.when', { start: dateTime(lesson.started_at), end }));
    const { start, end: until } = span(data);
    parts.push(t('report.duration', { time: elapsed(until - start) }));
  } else {
    parts.push(t('report.notStarted'));
  }
  parts.push(t('report.cap', { n: lesson.max_classrooms }));
  meta.textContent = parts.join(' · ');

  const interaction = data.interaction;
  const hands = interaction.reduce((sum, row) => sum + row.hands_raised, 0);
  const stage = interaction.reduce((sum, row) => sum + row.on_stage_s, 0);
  const poor = Object.values(data.quality).filter((samples) =>
    samples.some((s) => s.grade === 'poor'),
  ).length;
  const figures = [
    ['report.stat.classrooms', String(data.attendance.length), 'classrooms'],
    ['report.stat.hands', String(hands), 'hands'],
    ['report.stat.stage', elapsed(stage), 'stage'],
    ['report.stat.quality', String(poor), 'poor'],
  ];
  $('report-figures').replaceChildren(
    ...figures.map(([key, value, name]) => {
      const item = element('div', 'figure');
      item.dataset.figure = name;
      item.dataset.alert = String(name === 'poor' && value !== '0');
      const label = element('dt');
      setText(label, key);
      item.append(element('dd', '', value), label);
      return item;
    }),
  );

  const recording = data.recording;
  const link = $('recording-link');
  if (!recording) {
    setText($('recording-state'), 'report.recordingNone');
    link.hidden = true;
  } else {
    const state = t(`live.rec.${recording.state}`);
    setText($('recording-state'), 'report.recordingState', { state });
    const query = new URLSearchParams({ lesson: lessonId });
    if (token) query.set('token', token);
    link.href = `/recordings?${query}`;
    link.hidden = !recording.url;
  }
  $('report-head').hidden = false;
}

// --- attendance ----------------------------------------------------------------------------

function worstGrade(samples) {
  return ['poor', 'fair', 'good'].find((grade) => samples.some((s) => s.grade === grade)) ?? null;
}

/** The grade held for the most samples (the worse one on a tie): how the lesson went for
 * that room overall. */
function usualGrade(samples) {
  const counts = { poor: 0, fair: 0, good: 0 };
  for (const sample of samples) if (sample.grade in counts) counts[sample.grade] += 1;
  const best = Object.entries(counts).sort((a, b) => b[1] - a[1])[0]; // a stable sort
  return best[1] > 0 ? best[0] : null;
}

function renderAttendance(data) {
  const body = $('attendance').tBodies[0];
  const interaction = new Map(data.interaction.map((row) => [row.name, row]));
  body.replaceChildren(
    ...data.attendance.map((row) => {
      const tr = element('tr');
      tr.dataset.classroom = row.name;
      const name = element('th', '', row.name);
      name.scope = 'row';
      const left = element('td');
      if (row.left_at === null) setText(left, 'report.stillHere');
      else left.textContent = clock(row.left_at);
      const more = interaction.get(row.name) ?? { hands_raised: 0, on_stage_s: 0 };
      const samples = data.quality[row.name] ?? [];
      const grade = usualGrade(samples);
      const gradeCell = element('td');
      if (grade) {
        const badge = element('span', `grade ${grade}`, t(`grade.${grade}`));
        gradeCell.append(badge);
        const worst = worstGrade(samples);
        if (worst !== grade && worst !== 'good') {
          const low = element('span', `grade ${worst} worst`, `↓ ${t(`grade.${worst}`)}`);
          gradeCell.append(' ', low);
        }
      } else {
        gradeCell.textContent = t('grade.unknown');
      }
      tr.append(
        name,
        element('td', '', clock(row.joined_at)),
        left,
        element('td', 'num', elapsed(row.present_s)),
        element('td', 'num', String(row.visits)),
        element('td', 'num', String(more.hands_raised)),
        element('td', 'num', more.on_stage_s ? elapsed(more.on_stage_s) : '–'),
        gradeCell,
        element('td', 'num', elapsed(data.link_time?.[row.name]?.reduced ?? 0)),
        element('td', 'num', elapsed(data.link_time?.[row.name]?.audio_only ?? 0)),
        pathCell(data.path_time?.[row.name] ?? {}),
      );
      return tr;
    }),
  );
  $('attendance-empty').hidden = data.attendance.length > 0;
  $('attendance').hidden = data.attendance.length === 0;
  $('attendance-card').hidden = false;
}

/** The paths a classroom's media took (直连 UDP / 直连 TCP / 中继), the longest first. */
function pathCell(times) {
  const cell = element('td', 'path');
  const paths = Object.entries(times).sort((a, b) => b[1] - a[1]);
  cell.textContent = paths.length ? paths.map(([path]) => t(`path.${path}`)).join(' / ') : '–';
  cell.dataset.path = paths.length ? paths[0][0] : '';
  return cell;
}

/** The CSV needs the credential in a header, so it is fetched and handed over as a file. */
async function downloadCsv(event) {
  event.preventDefault();
  const response = await fetch(event.currentTarget.href, {
    headers: { Authorization: `Bearer ${credential}` },
    cache: 'no-store',
  });
  if (!response.ok) return;
  const url = URL.createObjectURL(await response.blob());
  const save = element('a');
  save.href = url;
  save.download = `attendance-${lessonId}.csv`;
  document.body.append(save);
  save.click();
  save.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// --- quality and interaction ---------------------------------------------------------------

/** The next 1, 2 or 5 times a power of ten: a scale's top with round labels. */
function roundUp(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((step) => step * power).find((top) => top >= value);
}

function renderQuality(data) {
  const { start, end } = span(data);
  const names = Object.keys(data.quality);
  const plots = $('plots');
  plots.replaceChildren(
    ...names.map((name) => {
      const samples = data.quality[name];
      const box = element('figure', 'plot');
      box.dataset.classroom = name;
      const caption = element('figcaption');
      caption.append(element('strong', '', name));
      const grade = usualGrade(samples);
      if (grade) caption.append(' ', element('span', `grade ${grade}`, t(`grade.${grade}`)));
      const bands = samples.map((s) => [s.at, s.grade]);
      const worstLoss = Math.max(0, ...samples.map((s) => s.loss ?? 0));
      const topBitrate = Math.max(0, ...samples.map((s) => s.bitrate_kbps ?? 0));
      const lossChart = timeChart({
        start,
        end,
        bands,
        points: samples.map((s) => [s.at, s.loss]),
        max: [0.05, 0.1, 0.2, 0.5, 1].find((top) => top >= worstLoss * 1.1) ?? 1,
        format: (v) => `${v === 0 ? 0 : (v * 100).toFixed(v >= 0.1 ? 0 : 1)}%`,
        label: `${name}: ${t('report.loss')}`,
        className: 'loss',
      });
      const bitrateChart = timeChart({
        start,
        end,
        bands,
        points: samples.map((s) => [s.at, s.bitrate_kbps]),
        max: roundUp(Math.max(100, topBitrate * 1.1)),
        format: (v) => `${Math.round(v)}`,
        label: `${name}: ${t('report.bitrate')} (kbit/s)`,
        className: 'bitrate',
      });
      const charts = element('div', 'charts');
      const lossBox = element('div', 'chart-box');
      lossBox.append(element('span', 'chart-title', t('report.loss')), lossChart);
      const rateBox = element('div', 'chart-box');
      const rateTitle = element('span', 'chart-title', `${t('report.bitrate')} (kbit/s)`);
      rateBox.append(rateTitle, bitrateChart);
      charts.append(lossBox, rateBox);
      box.append(caption, charts);
      return box;
    }),
  );
  $('quality-empty').hidden = names.length > 0;
  $('quality-card').hidden = false;
}

function renderTimeline(data) {
  const { start, end } = span(data);
  const rows = new Map();
  const row = (name) => {
    if (!rows.has(name)) rows.set(name, { name, hands: [], stage: [] });
    return rows.get(name);
  };
  for (const event of data.events) {
    const r = row(event.classroom);
    if (event.kind === 'hand_raised') r.hands.push([event.at, null]);
    else if (event.kind === 'hand_lowered') {
      const open = r.hands.findLast((hand) => hand[1] === null);
      if (open) open[1] = event.at;
    } else if (event.kind === 'stage_on') r.stage.push([event.at, null]);
    else if (event.kind === 'stage_off') {
      const open = r.stage.findLast((turn) => turn[1] === null);
      if (open) open[1] = event.at;
    }
  }
  const list = [...rows.values()].filter((r) => r.hands.length || r.stage.length);
  const box = $('timeline');
  box.replaceChildren();
  if (list.length) box.append(timeline({ start, end, rows: list, label: t('report.hands') }));
  const legend = element('p', 'legend');
  legend.append(
    element('span', 'key hand', t('report.col.hands')),
    element('span', 'key stage', t('report.col.stage')),
  );
  if (list.length) box.append(legend);
  $('timeline-empty').hidden = list.length > 0;
  $('timeline-card').hidden = false;
}

function render() {
  if (!report) return;
  renderHead(report);
  renderAttendance(report);
  renderQuality(report);
  renderTimeline(report);
}

async function main() {
  mountLanguageSwitch($('lang'));
  window.addEventListener('langchange', render);
  const status = $('report-status');
  $('csv').href = `/api/lessons/${encodeURIComponent(lessonId)}/attendance.csv`;
  $('csv').addEventListener('click', (event) => downloadCsv(event).catch(() => {}));
  if (!credential) {
    setText(status, 'report.needKey');
    return;
  }
  await load(status);
}

// a recording still being made (the lesson just ended) is asked about again until it is ready
const RECORDING_POLL_MS = 2000;
const SETTLED = ['ready', 'failed', 'stopped'];

async function load(status) {
  try {
    const path = `/api/lessons/${encodeURIComponent(lessonId)}/report`;
    report = await api('GET', path, { credential });
  } catch (error) {
    if (report) return; // a later refresh failing keeps what is shown
    const code = error instanceof ApiError ? error.status : -1;
    if (code === 401 || code === 403) setText(status, 'report.needKey');
    else if (code === 404) setText(status, 'report.notFound');
    else if (code === 0) setText(status, 'error.network');
    else setText(status, 'error.generic', { message: error.message });
    return;
  }
  status.hidden = true;
  render();
  const recording = report.recording;
  if (report.lesson.state === 'ended' && recording && !SETTLED.includes(recording.state)) {
    setTimeout(() => load(status), RECORDING_POLL_MS);
  }
}

main();
