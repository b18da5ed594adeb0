// The REST API under /api/, with a Bearer credential: the teacher key or a lesson token.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status; // 0 when the server could not be reached
    this.code = code;
  }
}

export async function api(method, path, { credential = null, body = undefined } = {}) {
  const headers = {};
  if (credential) headers.Authorization = `Bearer ${credential}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (error) {
    throw new ApiError(0, 'network', String(error));
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data.error, data.message);
  return data;
}

/** The lesson id and token of a page at /lessons/{id}/teach|join?token=... */
export function lessonFromLocation(location = window.location) {
  const match = location.pathname.match(/^\/lessons\/([^/]+)\//);
  return {
    id: match ? decodeURIComponent(match[1]) : '',
    token: new URLSearchParams(location.search).get('token') || '',
  };
}

/**
 * The lesson id and token of the teacher's page. The token leaves the visible address at once
 * (a teacher who copies the address must not hand out the teacher's link) and is kept for
 * this tab only, so a reload still works.
 */
export function teacherLessonFromLocation(location = window.location, storage = window.sessionStorage) {
  const { id, token } = lessonFromLocation(location);
  const slot = `syncclass.teach.${id}`;
  let kept = '';
  try {
    if (token) storage.setItem(slot, token);
    kept = storage.getItem(slot) || '';
  } catch {
    kept = token; // storage refused (a private window's quota): this load still works
  }
  if (token) {
    const params = new URLSearchParams(location.search);
    params.delete('token');
    const query = params.toString();
    window.history.replaceState(window.history.state, '', `${location.pathname}${query ? `?${query}` : ''}${location.hash}`);
  }
  return { id, token: token || kept };
}

/**
 * After the teacher replaced the teacher link, the page's own token is refused; with the
 * teacher key this browser keeps (entered on the home page) it fetches the new one for this
 * tab. Returns whether it did, so the page can reload with it.
 */
export async function renewTeacherToken(lessonId, storage = window.sessionStorage) {
  const key = window.localStorage.getItem('syncclass.teacherKey');
  if (!key) return false;
  try {
    const lesson = await api('GET', `/api/lessons/${encodeURIComponent(lessonId)}`, { credential: key });
    if (!lesson.whip_token) return false;
    storage.setItem(`syncclass.teach.${lessonId}`, lesson.whip_token);
    return true;
  } catch {
    return false;
  }
}
