"""Debian's Chromium driven by Playwright, with a fake camera, microphone and screen.

Every peer connection gathers only 127.0.0.1 (loopback allowed, mDNS host names off), so the
browser works inside the tests' private network namespace. Pages get a hook that records
their ``RTCPeerConnection`` objects, so a test can read ``getStats()`` the way a person would
open chrome://webrtc-internals, without the pages exposing anything for tests.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, Playwright

CHROMIUM = os.environ.get("SYNCCLASS_CHROMIUM", "/usr/bin/chromium")

ARGS = (
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    # getDisplayMedia picks the (fake) entire screen without a picker
    "--auto-select-desktop-capture-source=Entire screen",
    "--enable-usermedia-screen-capturing",
)
# A classroom PC set up as a kiosk plays sound without a click; tests that check the
# "click for sound" prompt launch without this, and with sound on: Playwright mutes the
# browser by default, and a muted browser lets every page play sound.
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"
BLOCK_AUTOPLAY = "--autoplay-policy=document-user-activation-required"

RECORD_PEER_CONNECTIONS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__peerConnections = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      window.__peerConnections.push(this);
    }
  };
})();
"""

# Totals over the page's open peer connections, from their standard statistics.
STATS = """
async () => {
  const totals = {framesDecoded: 0, audioPackets: 0, videoPackets: 0, framesSent: 0,
                  open: 0, videoTracks: {}};
  for (const pc of window.__peerConnections || []) {
    if (pc.connectionState === 'closed') continue;
    totals.open += 1;
    const stats = await pc.getStats();
    stats.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') {
        totals.framesDecoded += r.framesDecoded || 0;
        totals.videoPackets += r.packetsReceived || 0;
        totals.videoTracks[r.mid] = r.framesDecoded || 0;
      }
      if (r.type === 'inbound-rtp' && r.kind === 'audio') {
        totals.audioPackets += r.packetsReceived || 0;
      }
      if (r.type === 'outbound-rtp' && r.kind === 'video') totals.framesSent += r.framesSent || 0;
    });
  }
  return totals;
}
"""

# A classroom page's camera picture and sound, as its getStats() tells them.
RECEIVED = """
async () => {
  let video = null, audio = null;
  for (const pc of window.__peerConnections || []) {
    if (pc.connectionState === 'closed') continue;
    (await pc.getStats()).forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      if (r.kind === 'video' && (!video || (r.framesDecoded || 0) > video.framesDecoded)) {
        video = {framesDecoded: r.framesDecoded || 0, freezeCount: r.freezeCount || 0,
                 freezes: r.totalFreezesDuration || 0, height: r.frameHeight || 0,
                 nacks: r.nackCount || 0, plis: r.pliCount || 0,
                 framesReceived: r.framesReceived || 0, framesDropped: r.framesDropped || 0,
                 keyFrames: r.keyFramesDecoded || 0, packets: r.packetsReceived || 0,
                 packetsLost: r.packetsLost || 0, bufferDelay: r.jitterBufferDelay || 0,
                 bufferEmitted: r.jitterBufferEmittedCount || 0};
      }
      if (r.kind === 'audio' && (!audio || (r.totalSamplesReceived || 0) > audio.samples)) {
        audio = {samples: r.totalSamplesReceived || 0, concealed: r.concealedSamples || 0,
                 delay: r.jitterBufferDelay || 0, emitted: r.jitterBufferEmittedCount || 0};
      }
    });
  }
  return {video, audio};
}
"""

# How long each receiving video track is held before it is shown, as the page asked of the
# browser (RTCRtpReceiver.jitterBufferTarget, ms; null: the browser's own schedule).
HELD = """
() => (window.__peerConnections || [])
  .filter((pc) => pc.connectionState !== 'closed')
  .flatMap((pc) => pc.getReceivers())
  .filter((receiver) => receiver.track && receiver.track.kind === 'video')
  .map((receiver) => receiver.jitterBufferTarget)
"""

# What the user sees in each <video>: decoded frames presented, and the picture size.
VIDEOS = """
() => Object.fromEntries([...document.querySelectorAll('video')].map((v) => {
  const rect = v.getBoundingClientRect();
  const style = getComputedStyle(v);
  return [v.id, {
    frames: v.getVideoPlaybackQuality().totalVideoFrames,
    width: v.videoWidth,
    height: v.videoHeight,
    paused: v.paused,
    muted: v.muted,
    shownWidth: rect.width,
    shownHeight: rect.height,
    visible: style.visibility !== 'hidden' && style.display !== 'none' && rect.width > 0,
  }];
}))
"""


_REQUESTS: weakref.WeakKeyDictionary[BrowserContext, list[str]] = weakref.WeakKeyDictionary()


def requested(page: Page) -> list[str]:
    """Every URL the page's context asked for, in order."""
    return _REQUESTS[page.context]


async def launch(
    playwright: Playwright,
    *,
    autoplay: bool = True,
    extra: Sequence[str] = (),
    executable: str = CHROMIUM,
) -> Browser:
    args = [*ARGS, AUTOPLAY if autoplay else BLOCK_AUTOPLAY, *extra]
    return await playwright.chromium.launch(
        executable_path=executable,
        headless=True,
        args=args,
        ignore_default_args=[] if autoplay else ["--mute-audio"],
    )


async def open_page(
    browser: Browser,
    url: str | None,
    *,
    width: int = 1366,
    height: int = 768,
    **options: Any,
) -> Page:
    """A page in its own context (its own storage: another machine), with the PC hook; at
    ``url`` unless that is None.

    Anything Playwright does in a page (even reading an attribute) counts as a user gesture
    there, so a test about what a page does before anyone touches it must only watch it."""
    context = await browser.new_context(
        viewport={"width": width, "height": height}, permissions=["camera", "microphone"], **options
    )
    await context.add_init_script(RECORD_PEER_CONNECTIONS)
    urls: list[str] = []
    _REQUESTS[context] = urls
    context.on("request", lambda request: urls.append(request.url))
    page = await context.new_page()
    if url is not None:
        await page.goto(url)
    return page


async def stats(page: Page) -> dict[str, Any]:
    return dict(await page.evaluate(STATS))


async def videos(page: Page) -> dict[str, dict[str, Any]]:
    return dict(await page.evaluate(VIDEOS))
