// The home page: the teacher key (kept in this browser), new lessons, the lesson list, and the
// teacher's timetable (timetable.js).

import { api, ApiError } from './api.js';
import { mountLanguageSwitch, setText } from './i18n.js';
import { mountTimetable, showTimetableCards } from './timetable.js';

const KEY_STORAGE = 'syncclass.teacherKey';
const $ = (id) => document.getElementById(id);

function showError(element, error) {
  element.hidden = false;
  if (error instanceof ApiError && error.status === 0) setText(element, 'error.network');
  else setText(element, 'error.generic', { message: error.message });
}

function keySaved(saved) {
  $('key-form').hidden = saved;
  $('key-saved').hidden = !saved;
  $('create-card').hidden = !saved;
  $('lessons-card').hidden = !saved;
  if (!saved) showTimetableCards(false);
}

async function checkKey(key) {
  try {
    return (await api('GET', '/api/lessons', { credential: key })).lessons;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

function renderLessons(lessons, key) {
  const list = $('lessons');
  list.replaceChildren();
  // a course's lessons yet to come are in the timetable above, not here
  lessons = lessons.filter((lesson) => !(lesson.course_id && lesson.state === 'scheduled'));
  $('lessons-empty').hidden = lessons.length > 0;
  for (const lesson of lessons.slice(0, 20)) {
    const item = document.createElement('li');
    const title = document.createElement('span');
    title.className = 'lesson-title';
    title.textContent = lesson.title;
    const state = document.createElement('span');
    state.className = `pill state-${lesson.state}`;
    setText(state, `state.${lesson.state}`);
    item.append(title, state);
    if (lesson.state === 'live') {
      const online = document.createElement('span');
      online.className = 'hint';
      setText(online, 'home.lessons.classrooms', { n: lesson.classrooms });
      item.append(online);
    }
    if (lesson.state !== 'ended') {
      const open = document.createElement('button');
      open.type = 'button';
      setText(open, 'home.lessons.open');
      open.addEventListener('click', () => {
        openLesson(lesson.id, key).catch((error) => showError($('key-error'), error));
      });
      item.append(open);
    }
    list.append(item);
  }
}

async function openLesson(id, key) {
  const lesson = await api('GET', `/api/lessons/${encodeURIComponent(id)}`, { credential: key });
  if (lesson.teacher_url) window.location.assign(lesson.teacher_url);
}

async function showLessons(key) {
  const lessons = await checkKey(key);
  if (lessons === null) {
    localStorage.removeItem(KEY_STORAGE);
    keySaved(false);
    $('key-error').hidden = false;
    setText($('key-error'), 'home.key.wrong');
    return;
  }
  keySaved(true);
  showTimetableCards(true);
  renderLessons(lessons, key);
}

function main() {
  mountLanguageSwitch($('lang'));
  mountTimetable();
  const stored = localStorage.getItem(KEY_STORAGE);
  keySaved(false);
  if (stored) showLessons(stored).catch((error) => showError($('key-error'), error));

  $('key-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    $('key-error').hidden = true;
    const key = $('key-input').value.trim();
    try {
      if ((await checkKey(key)) === null) {
        $('key-error').hidden = false;
        setText($('key-error'), 'home.key.wrong');
        return;
      }
      localStorage.setItem(KEY_STORAGE, key);
      $('key-input').value = '';
      await showLessons(key);
    } catch (error) {
      showError($('key-error'), error);
    }
  });

  $('key-change').addEventListener('click', () => {
    localStorage.removeItem(KEY_STORAGE);
    keySaved(false);
    $('key-input').focus();
  });

  $('create-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    $('create-error').hidden = true;
    const key = localStorage.getItem(KEY_STORAGE);
    const body = { title: $('lesson-title').value.trim() };
    const max = $('lesson-max').value.trim();
    if (max) body.max_classrooms = Number(max);
    $('create').disabled = true;
    try {
      const lesson = await api('POST', '/api/lessons', { credential: key, body });
      window.location.assign(lesson.teacher_url);
    } catch (error) {
      $('create').disabled = false;
      showError($('create-error'), error);
    }
  });
}

main();
