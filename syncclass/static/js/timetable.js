// The teacher's timetable on the home page: the next seven days of lessons (today's one click
// from the teacher view), and a form that makes a course and adds lessons to it, one or weekly,
// saying plainly when a time clashes.

import { api, ApiError } from './api.js';
import { setText, t } from './i18n.js';
import './room-strings.js';

const KEY_STORAGE = 'syncclass.teacherKey';
const $ = (id) => document.getElementById(id);
const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

const key = () => localStorage.getItem(KEY_STORAGE);

function local(lesson, zone) {
  const format = new Intl.DateTimeFormat('en-CA', {
    timeZone: zone, month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
    weekday: 'short', hourCycle: 'h23',
  });
  const p = Object.fromEntries(format.formatToParts(new Date(lesson.starts_at * 1000)).map((x) => [x.type, x.value]));
  const weekday = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'].indexOf(p.weekday);
  return { day: `${p.month}-${p.day}`, weekday, time: `${p.hour}:${p.minute}` };
}

async function openLesson(id) {
  const lesson = await api('GET', `/api/lessons/${encodeURIComponent(id)}`, { credential: key() });
  if (lesson.teacher_url) window.location.assign(lesson.teacher_url);
}

async function showTimetable() {
  const data = await api('GET', '/api/timetable', { credential: key() });
  const list = $('timetable');
  list.replaceChildren();
  $('timetable-empty').hidden = data.lessons.length > 0;
  const today = local({ starts_at: Date.now() / 1000 }, data.zone).day;
  for (const lesson of data.lessons) {
    const when = local(lesson, data.zone);
    const item = document.createElement('li');
    item.dataset.lesson = lesson.id;
    const at = document.createElement('span');
    at.className = `when${when.day === today ? ' today' : ''}`;
    const dayName = when.day === today ? t('home.timetable.today') : t('weekday').split(',')[when.weekday];
    at.textContent = `${dayName} ${when.day} ${when.time}`;
    const title = document.createElement('span');
    title.className = 'lesson-title';
    title.textContent = `${lesson.course.title} · ${t('home.timetable.number', { n: lesson.number })}`;
    const state = document.createElement('span');
    state.className = `pill state-${lesson.state}`;
    setText(state, `state.${lesson.state}`);
    item.append(at, title, state);
    if (lesson.state !== 'ended') {
      const open = document.createElement('button');
      open.type = 'button';
      setText(open, 'home.timetable.open');
      open.addEventListener('click', () => openLesson(lesson.id).catch(() => {}));
      item.append(open);
    }
    list.append(item);
  }
}

async function showCourses(selected = null) {
  const { courses } = await api('GET', '/api/courses', { credential: key() });
  const select = $('schedule-course');
  select.replaceChildren();
  for (const course of courses) {
    const option = new Option(course.title, course.id);
    select.append(option);
  }
  const fresh = new Option(t('home.schedule.new'), '');
  select.append(fresh);
  select.value = selected ?? (courses[0]?.id || '');
  $('new-course').hidden = select.value !== '';
}

function showLinks(course) {
  const list = $('course-links');
  list.replaceChildren();
  const links = [course.link, ...course.classroom_links].filter((link) => link && link.url);
  for (const link of links) {
    const item = document.createElement('li');
    const name = document.createElement('span');
    name.className = 'lesson-title';
    if (link.classroom) name.textContent = link.classroom;
    else setText(name, 'home.schedule.shared');
    const url = document.createElement('input');
    url.readOnly = true;
    url.value = link.url;
    url.className = 'course-link';
    item.append(name, url);
    list.append(item);
  }
}

async function schedule(event) {
  event.preventDefault();
  $('schedule-error').hidden = true;
  $('schedule-done').hidden = true;
  let courseId = $('schedule-course').value;
  try {
    const date = $('schedule-date').value;
    const until = $('schedule-until').value;
    const body = { time: $('schedule-time').value, minutes: Number($('schedule-minutes').value) };
    if (until) {
      body.weekly = [WEEKDAYS[new Date(`${date}T12:00:00`).getDay()]];
      body.from = date;
      body.until = until;
    } else {
      body.date = date;
    }
    let made;
    if (!courseId) {
      // a new course with its first lessons, all or nothing: a clash makes no course either
      const classrooms = $('course-classrooms').value.split(/[\n,，]/).map((s) => s.trim()).filter(Boolean);
      const course = await api('POST', '/api/courses', {
        credential: key(), body: { title: $('course-title').value.trim(), classrooms, lessons: body },
      });
      courseId = course.id;
      made = course;
      await showCourses(courseId);
    } else {
      made = await api('POST', `/api/courses/${encodeURIComponent(courseId)}/lessons`, {
        credential: key(), body,
      });
    }
    $('schedule-done').hidden = false;
    setText($('schedule-done'), 'home.schedule.done', { n: made.lessons.length });
    showLinks(await api('GET', `/api/courses/${encodeURIComponent(courseId)}`, { credential: key() }));
    await showTimetable();
  } catch (error) {
    const problem = $('schedule-error');
    problem.hidden = false;
    if (error instanceof ApiError && error.code === 'clash') {
      setText(problem, 'home.schedule.clash', { message: error.message });
    } else if (error instanceof ApiError && error.status === 0) {
      setText(problem, 'error.network');
    } else {
      setText(problem, 'error.generic', { message: error.message });
    }
  }
}

/** Wire the schedule form (once, at load). */
export function mountTimetable() {
  $('schedule-course').addEventListener('change', () => {
    $('new-course').hidden = $('schedule-course').value !== '';
  });
  $('schedule-form').addEventListener('submit', schedule);
}

/** Show the timetable and the schedule form when the teacher's key works, else hide them. */
export function showTimetableCards(shown) {
  $('timetable-card').hidden = !shown;
  $('schedule-card').hidden = !shown;
  if (!shown) return;
  showTimetable().catch(() => {});
  showCourses().catch(() => {});
}
