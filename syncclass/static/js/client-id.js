// A random id this browser keeps for the classroom page. The server knows the classroom again
// by it when it comes back after a network drop (its old session is replaced, not counted
// twice), and only the browser that watches as a classroom may send its feed, raise its hand
// or chat in its name.

const CLIENT_KEY = 'syncclass.classroomClient';

export function clientId() {
  let id = localStorage.getItem(CLIENT_KEY);
  if (!id || !/^[A-Za-z0-9_-]{8,64}$/.test(id)) {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    id = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    localStorage.setItem(CLIENT_KEY, id);
  }
  return id;
}
