// The teacher's camera and microphone: opening them, listing them, switching them.

import { t } from './i18n.js';

const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

function constraints(kind, deviceId) {
  const base = kind === 'video' ? VIDEO : AUDIO;
  return deviceId ? { ...base, deviceId: { exact: deviceId } } : base;
}

/** One camera track and one microphone track; either may be missing (null). */
export async function openDevices() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: constraints('video'),
      audio: constraints('audio'),
    });
    return { video: stream.getVideoTracks()[0], audio: stream.getAudioTracks()[0] };
  } catch (error) {
    // one of the two may still work: a classroom can follow a teacher it can only hear
    const video = await openTrack('video').catch(() => null);
    const audio = await openTrack('audio').catch(() => null);
    if (!video && !audio) throw error;
    return { video, audio };
  }
}

export async function openTrack(kind, deviceId = '') {
  const stream = await navigator.mediaDevices.getUserMedia({ [kind]: constraints(kind, deviceId) });
  return kind === 'video' ? stream.getVideoTracks()[0] : stream.getAudioTracks()[0];
}

/** Fill `select` with the devices of `kind` ('videoinput' or 'audioinput'). */
export async function fillDeviceSelect(select, kind, current) {
  const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === kind);
  select.replaceChildren(
    ...devices.map((device, i) => {
      const option = document.createElement('option');
      option.value = device.deviceId;
      option.textContent = device.label || `${t(kind === 'videoinput' ? 'teach.camera' : 'teach.microphone')} ${i + 1}`;
      return option;
    }),
  );
  const selected = current?.getSettings().deviceId;
  if (selected) select.value = selected;
  select.disabled = devices.length === 0;
}
