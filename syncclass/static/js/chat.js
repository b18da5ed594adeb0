// The chat panel of the teacher's and the classroom's pages: short messages shown as they
// come, and a line to send one. Messages travel on the lesson's events socket; the server
// sends each one back to its sender too, so what is shown is what was delivered.

import { lang, setText } from './i18n.js';

export const MAX_CHAT_CHARS = 500;
const KEEP = 200; // messages kept on screen

function clockTime(seconds) {
  const locale = lang() === 'zh' ? 'zh-CN' : 'en-GB';
  const style = { hour: '2-digit', minute: '2-digit' };
  return new Date(seconds * 1000).toLocaleTimeString(locale, style);
}

export class ChatPanel {
  /**
   * `send(text)` puts a message on the socket and says whether it could; `who(from)` is the
   * name to show for a sender ('teacher' or a classroom's name).
   */
  constructor({ list, form, input, status, send, who }) {
    Object.assign(this, { list, form, input, status, send, who });
    this.messages = [];
    input.maxLength = MAX_CHAT_CHARS;
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  submit() {
    const text = this.input.value.trim();
    if (!text) return;
    if (this.send(text.slice(0, MAX_CHAT_CHARS))) {
      this.input.value = '';
      this.status.hidden = true;
    } else {
      this.status.hidden = false;
      setText(this.status, 'chat.notSent');
    }
  }

  /** A {"type": "chat", from, text, at} message from the socket. */
  add(message) {
    this.messages.push(message);
    if (this.messages.length > KEEP) this.messages.shift();
    const stick = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    this.list.append(this.item(message));
    while (this.list.children.length > KEEP) this.list.firstElementChild.remove();
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }

  item(message) {
    const item = document.createElement('li');
    item.className = message.from === 'teacher' ? 'from-teacher' : 'from-classroom';
    const head = document.createElement('span');
    head.className = 'chat-from';
    head.textContent = this.who(message.from);
    const time = document.createElement('time');
    time.textContent = typeof message.at === 'number' ? clockTime(message.at) : '';
    const text = document.createElement('span');
    text.className = 'chat-text';
    text.textContent = message.text;
    item.append(head, time, text);
    return item;
  }

  /** Show everything again (after a change of language). */
  render() {
    this.list.replaceChildren(...this.messages.map((message) => this.item(message)));
    this.list.scrollTop = this.list.scrollHeight;
  }
}
