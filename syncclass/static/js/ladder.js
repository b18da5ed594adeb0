// The fallback ladder a page's media connections climb when a school's network lets little
// through, and which path a connection is on.
//
// Rung 1, straight to the server: every answer carries the server's UDP candidate and its
// ICE-TCP candidate, and the browser checks both at once; UDP's priority is higher, so it wins
// wherever it works, and TCP takes over where only TCP gets out. Trying TCP as a rung of its
// own would only add a whole timeout for the schools that need it.
// Rung 2, relayed by the TURN server over TLS (iceTransportPolicy 'relay'), when the server
// names one (`ice_servers` of the lesson): for a firewall that lets out only what looks like
// HTTPS to one address.
//
// Timeouts: 6 s for the direct rung. ICE and DTLS take about 1.5 s on a 600 ms satellite
// link and TCP adds a round trip, and a lost TCP SYN costs 1 s more: 6 s leaves room for all
// of that, and with the relay's few seconds keeps the first picture within 10 s when only
// the relay works. 8 s for the relay rung when it comes first (remembered): TLS, the TURN
// allocation and its 401 challenge, the permission, then ICE and DTLS are about 8 round
// trips (~5 s on a satellite link) before the browser gives up on it for the direct rung.
// The last rung has no timeout of its own: it is kept, and a failure there is a network drop
// like any other (the page reconnects).
//
// A browser whose connection needed the relay remembers it (localStorage) and starts on the
// relay next time; one that connects directly again forgets it.

export const DIRECT_MS = 6000;
export const RELAY_MS = 8000;
const RELAY_KEY = 'syncclass.relay';

let iceServers = [];

/** The lesson's TURN servers (`ice_servers` of GET /api/lessons/ID), with their credentials. */
export function setIceServers(servers) {
  iceServers = Array.isArray(servers) ? servers.filter((s) => s && s.urls) : [];
}

function relayRemembered() {
  try {
    return localStorage.getItem(RELAY_KEY) === '1';
  } catch {
    return false;
  }
}

function remember(relay) {
  try {
    if (relay) localStorage.setItem(RELAY_KEY, '1');
    else localStorage.removeItem(RELAY_KEY);
  } catch {
    // private mode: nothing is remembered
  }
}

/** The rungs to try, in order: `{name, config, timeoutMs}`. */
export function rungs() {
  const direct = { name: 'direct', config: { iceServers: [] }, timeoutMs: DIRECT_MS };
  if (!iceServers.length) return [direct];
  const relay = {
    name: 'relay',
    config: { iceServers, iceTransportPolicy: 'relay' },
    timeoutMs: RELAY_MS,
  };
  return relayRemembered() ? [relay, direct] : [direct, relay];
}

/** Resolves true once `pc` is connected, false when it fails, closes or `ms` pass first. */
export function connectedWithin(pc, ms) {
  return new Promise((resolve) => {
    const done = (ok) => {
      clearTimeout(timer);
      pc.removeEventListener('connectionstatechange', check);
      resolve(ok);
    };
    const check = () => {
      if (pc.connectionState === 'connected') done(true);
      else if (['failed', 'closed'].includes(pc.connectionState)) done(false);
    };
    const timer = setTimeout(() => done(false), ms);
    pc.addEventListener('connectionstatechange', check);
    check();
  });
}

/**
 * Opens `owner`'s session on each rung in turn until one connects. `owner.open(config)` makes
 * the RTCPeerConnection with `config`, negotiates and returns it (an HTTP refusal throws, and
 * ends the climb); `owner.abandon()` leaves that session. While a rung is on trial
 * `owner.climbing` is true (its connection failing is the ladder's business, not a drop).
 */
export async function climb(owner) {
  const list = rungs();
  for (const [i, rung] of list.entries()) {
    const pc = await owner.open(rung.config);
    if (i === list.length - 1) {
      connectedWithin(pc, 60000).then((ok) => {
        if (ok) remember(rung.name === 'relay');
      });
      return;
    }
    owner.climbing = true;
    const ok = await connectedWithin(pc, rung.timeoutMs);
    owner.climbing = false;
    if (ok) {
      remember(rung.name === 'relay');
      return;
    }
    if (owner.pc !== pc) return; // closed by its page meanwhile
    await owner.abandon();
  }
}

/** The path `pc` is on, from its selected candidate pair: 'udp', 'tcp', 'relay' or null. */
export async function connectionPath(pc) {
  if (!pc || pc.connectionState !== 'connected') return null;
  return pathOf(await pc.getStats());
}

/** The path of the selected candidate pair of a getStats() report. */
export function pathOf(report) {
  let pair = null;
  report.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = report.get(r.selectedCandidatePairId);
  });
  if (!pair) {
    report.forEach((r) => {
      if (!pair && r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r;
    });
  }
  const local = pair ? report.get(pair.localCandidateId) : null;
  if (!local) return null;
  if (local.candidateType === 'relay') return 'relay';
  return local.protocol === 'tcp' ? 'tcp' : 'udp';
}
