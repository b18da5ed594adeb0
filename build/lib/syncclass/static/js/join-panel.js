// The join link on the teacher's page: shown, copied, and as a QR code for phones.

import { qrSvg } from './qr.js';
import { setText, t } from './i18n.js';

async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // no clipboard permission (plain http on a LAN address): select for Ctrl+C instead
    input.focus();
    input.select();
    document.execCommand('copy');
  }
}

export function showJoinLink(url, { input, copyButton, qrBox }) {
  input.value = url;
  qrBox.replaceChildren(qrSvg(url, { ecl: 'M', label: t('teach.qrLabel') }));
  copyButton.onclick = async () => {
    await copyText(url, input);
    setText(copyButton, 'teach.copied');
    setTimeout(() => setText(copyButton, 'teach.copy'), 2000);
  };
}
