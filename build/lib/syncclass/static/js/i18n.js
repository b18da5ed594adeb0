// Chinese by default, English on request; the choice is kept in this browser.
//
// An element with data-i18n="key" shows that string; data-i18n-vars holds JSON values for its
// {placeholders}; data-i18n-placeholder / data-i18n-title / data-i18n-label translate those
// attributes. setText() is how pages put translatable text on screen, so a language switch
// re-renders everything already shown.

import { STRINGS } from './strings.js';

const STORAGE_KEY = 'syncclass.lang';
const LANGS = ['zh', 'en'];

export function lang() {
  const chosen = localStorage.getItem(STORAGE_KEY);
  return LANGS.includes(chosen) ? chosen : 'zh';
}

export function t(key, vars = {}) {
  const text = STRINGS[lang()][key] ?? STRINGS.zh[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ''));
}

export function setText(element, key, vars = null) {
  element.dataset.i18n = key;
  if (vars) element.dataset.i18nVars = JSON.stringify(vars);
  else delete element.dataset.i18nVars;
  element.textContent = t(key, vars ?? {});
}

export function translate(root = document) {
  document.documentElement.lang = lang() === 'zh' ? 'zh-CN' : 'en';
  for (const element of root.querySelectorAll('[data-i18n]')) {
    const vars = element.dataset.i18nVars ? JSON.parse(element.dataset.i18nVars) : {};
    element.textContent = t(element.dataset.i18n, vars);
  }
  for (const attribute of ['placeholder', 'title', 'label']) {
    for (const element of root.querySelectorAll(`[data-i18n-${attribute}]`)) {
      const key = element.getAttribute(`data-i18n-${attribute}`);
      element.setAttribute(attribute === 'label' ? 'aria-label' : attribute, t(key));
    }
  }
  const title = document.querySelector('title[data-i18n-doc]');
  if (title) document.title = t(title.dataset.i18nDoc);
}

/** Make `button` switch between the languages; it is labelled with the other one. */
export function mountLanguageSwitch(button) {
  const render = () => {
    button.textContent = lang() === 'zh' ? 'English' : '中文';
    button.lang = lang() === 'zh' ? 'en' : 'zh-CN';
  };
  button.addEventListener('click', () => {
    localStorage.setItem(STORAGE_KEY, lang() === 'zh' ? 'en' : 'zh');
    render();
    translate();
    window.dispatchEvent(new Event('langchange'));
  });
  render();
  translate();
}
