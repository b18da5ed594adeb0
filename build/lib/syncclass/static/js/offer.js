// One WHIP/WHEP exchange: a complete SDP offer (every candidate inside, no trickle) is POSTed
// with a Bearer token; the 201 answer is applied and its Location names the session.

import { ApiError } from './api.js';

const GATHERING_TIMEOUT_MS = 3000;

export function iceGatheringComplete(pc, timeoutMs = GATHERING_TIMEOUT_MS) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    // Gathering host candidates only takes milliseconds; the timeout covers a network
    // interface that never answers, and sends what was gathered so far.
    const timer = setTimeout(done, timeoutMs);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === 'complete') done();
    }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** Offer, wait for candidates, POST, apply the answer; returns the session's URL. */
export async function negotiate(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await iceGatheringComplete(pc);
  let response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
      body: pc.localDescription.sdp,
    });
  } catch (error) {
    throw new ApiError(0, 'network', String(error));
  }
  if (response.status !== 201) {
    const data = await response.json().catch(() => ({}));
    throw new ApiError(response.status, data.error, data.message);
  }
  const answer = await response.text();
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  const location = response.headers.get('Location');
  return location ? new URL(location, new URL(url, window.location.href)).href : null;
}

/** Leave a session; `keepalive` lets the request outlive a page that is closing. */
export function leave(sessionUrl, token, { keepalive = false } = {}) {
  if (!sessionUrl) return Promise.resolve();
  return fetch(sessionUrl, {
    method: 'DELETE',
    headers: { Authorization: `Bearer ${token}` },
    keepalive,
  }).catch(() => {});
}

/** Calls `onDrop` once when the connection is lost: failed, or disconnected for a while. */
export function watchConnection(pc, onDrop, { graceMs = 3000 } = {}) {
  let timer = null;
  let dropped = false;
  const drop = () => {
    if (!dropped) {
      dropped = true;
      onDrop(pc.connectionState);
    }
  };
  pc.addEventListener('connectionstatechange', () => {
    clearTimeout(timer);
    const state = pc.connectionState;
    if (state === 'failed' || state === 'closed') drop();
    else if (state === 'disconnected') timer = setTimeout(drop, graceMs);
  });
}
