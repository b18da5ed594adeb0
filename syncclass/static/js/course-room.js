// A classroom PC left on a course link: shows the next lesson and a countdown, enters each
// lesson as its time comes (the lesson's own classroom page, with a token handed out on this
// link), and is brought back here by that page when the lesson ends. Sound needs one click
// per browser session, so it is asked for up front; entering never waits for it. A reload, a
// network drop or days left open bring it back to where it should be: it asks the server.

import { api, ApiError } from './api.js';
import { lang, mountLanguageSwitch, setText, t } from './i18n.js';
import './room-strings.js';

const $ = (id) => document.getElementById(id);
const NAME_KEY = 'syncclass.classroomName';
const RECHECK_MS = 60000; // asked anyway this often: the timetable may change
const OFFLINE_RETRY_MS = 5000;
const match = window.location.pathname.match(/^\/courses\/([^/]+)\/room/);
const courseId = match ? decodeURIComponent(match[1]) : '';
const token = new URLSearchParams(window.location.search).get('token') || '';
const STARTED = `syncclass.room.${courseId}.started`; // this tab (browser session) clicked
const RETURN = `syncclass.room.${courseId}`; // where the lesson's page comes back to

let room = null;
let offsetMs = 0; // the server's clock minus this PC's
let timer = null;

const serverNow = () => Date.now() + offsetMs;

function started() {
  try {
    return window.sessionStorage.getItem(STARTED) === '1';
  } catch {
    return false;
  }
}

function parts(instant) {
  const format = new Intl.DateTimeFormat('en-CA', {
    timeZone: room.zone,
    year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
    weekday: 'short', hourCycle: 'h23',
  });
  const got = Object.fromEntries(format.formatToParts(new Date(instant * 1000)).map((p) => [p.type, p.value]));
  const weekday = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'].indexOf(got.weekday);
  return { date: `${got.month}-${got.day}`, weekday, time: `${got.hour}:${got.minute}` };
}

/** 周三 10:00 (with the date when it is not within the week). */
function when(instant) {
  const p = parts(instant);
  const day = t('weekday').split(',')[p.weekday];
  const far = instant * 1000 - serverNow() > 6 * 86400 * 1000;
  return `${far ? `${p.date} ` : ''}${day} ${p.time}`;
}

function countdown(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s >= 86400) return t('room.days', { d: Math.floor(s / 86400), h: Math.floor((s % 86400) / 3600) });
  const pad = (n) => String(n).padStart(2, '0');
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
}

function next() {
  return room?.lessons.find((lesson) => lesson.state !== 'ended' && lesson.starts_at) ?? null;
}

function render() {
  const screen = document.body.dataset.screen;
  $('start-screen').hidden = !(room && !started() && ['waiting', 'entering'].includes(screen));
  $('wait-screen').hidden = !$('start-screen').hidden || screen === 'loading';
  const title = room ? room.course.title : '';
  $('wait-course').textContent = title;
  $('start-course').textContent = title;
  $('bar-course').textContent = title;
  if (room?.classroom) setText($('bar-room'), 'room.start.room', { name: room.classroom });
  const problem = $('wait-problem');
  problem.hidden = !['invalid', 'offline'].includes(screen);
  if (screen === 'invalid') setText(problem, 'room.invalid');
  if (screen === 'offline') setText(problem, 'room.offline');
  const lesson = next();
  if (screen === 'entering') {
    setText($('next-title'), 'room.entering');
    $('countdown').textContent = '';
  } else if (screen === 'invalid' || !room) {
    $('next-title').textContent = '';
    $('countdown').textContent = '';
  } else if (lesson) {
    setText($('next-title'), 'room.nextNumbered', {
      when: when(lesson.starts_at), title: lesson.title, n: lesson.number,
    });
    setText($('countdown'), 'room.countdown', {
      time: countdown(lesson.starts_at * 1000 - serverNow()),
    });
  } else {
    setText($('next-title'), 'room.none');
    $('countdown').textContent = '';
  }
  const list = $('upcoming');
  list.replaceChildren();
  if (screen !== 'invalid' && room) {
    for (const item of room.lessons.slice(lesson ? 1 : 0)) {
      const entry = document.createElement('li');
      entry.textContent = t('room.lesson', { when: when(item.starts_at), n: item.number });
      list.append(entry);
    }
  }
  const replays = $('replays');
  replays.hidden = !room?.replays;
  if (room?.replays) {
    replays.href = `/recordings?course=${encodeURIComponent(courseId)}&token=${encodeURIComponent(token)}`;
  }
  const nameField = $('start-name-field');
  nameField.hidden = !room || Boolean(room.classroom);
  $('start-room').hidden = !room?.classroom;
  if (room?.classroom) setText($('start-room'), 'room.start.room', { name: room.classroom });
}

function enter(current) {
  document.body.dataset.screen = 'entering';
  render();
  try {
    window.sessionStorage.setItem(RETURN, window.location.href);
  } catch {
    // the lesson's page then comes back by the course's address alone
  }
  window.location.replace(current.join_url);
}

async function check() {
  clearTimeout(timer);
  try {
    room = await api('GET', `/api/courses/${encodeURIComponent(courseId)}/room`, { credential: token });
  } catch (error) {
    const refused = error instanceof ApiError && [401, 403, 404].includes(error.status);
    room = refused ? null : room;
    document.body.dataset.screen = refused ? 'invalid' : 'offline';
    render();
    timer = setTimeout(check, refused ? RECHECK_MS : OFFLINE_RETRY_MS);
    return;
  }
  offsetMs = room.now * 1000 - Date.now();
  // a receiving classroom's own link fixes its name; the lesson's page joins under it
  if (room.classroom) window.localStorage.setItem(NAME_KEY, room.classroom);
  if (room.current) {
    enter(room.current);
    return;
  }
  document.body.dataset.screen = 'waiting';
  render();
  // ask again when the next lesson opens (a few minutes before it starts), or in a minute
  const lesson = next();
  let wait = RECHECK_MS;
  if (lesson) {
    const opens = (lesson.starts_at - room.join_early_s) * 1000 - serverNow();
    wait = Math.min(wait, Math.max(250, opens + 250));
  }
  timer = setTimeout(check, wait);
}

function unlockSound() {
  // a silent sound played on the click: the browser allows sound for the rest of the session
  try {
    const context = new AudioContext();
    const source = context.createBufferSource();
    source.buffer = context.createBuffer(1, 1, 22050);
    source.connect(context.destination);
    source.start();
  } catch {
    // no Web Audio: the lesson's page asks for the click itself
  }
}

function main() {
  mountLanguageSwitch($('lang'));
  $('start-name').value = window.localStorage.getItem(NAME_KEY) || '';
  $('start-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const name = $('start-name').value.trim();
    if (room && !room.classroom) {
      if (!name) return;
      window.localStorage.setItem(NAME_KEY, name);
    }
    unlockSound();
    window.sessionStorage.setItem(STARTED, '1');
    if (document.documentElement.requestFullscreen) {
      document.documentElement.requestFullscreen().catch(() => {});
    }
    render();
  });
  $('fullscreen').addEventListener('click', () => {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else document.documentElement.requestFullscreen?.().catch(() => {});
  });
  setInterval(render, 1000); // the countdown
  window.addEventListener('online', check);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') check();
  });
  window.addEventListener('langchange', render);
  document.documentElement.lang = lang() === 'zh' ? 'zh-CN' : 'en';
  check();
}

main();
