// The network check: one data channel to the server per path (UDP alone, then TCP alone, then
// the relay over the server's TURN servers, if it has any), the direct ones told apart by
// keeping only that transport's candidates in the offer and the answer, the relay by the
// browser gathering relay candidates only.
// Per path: whether it connects, the round trip of a few pings, and a fixed download and
// upload (media/probe.py on the server). Then what to ask the network's administrator.

import { iceGatheringComplete } from './offer.js';

const CONNECT_TIMEOUT_MS = 8000;
const PINGS = 10;
const UP_BYTES = 1 << 20;
const CHUNK = 16 << 10;

const $ = (id) => document.getElementById(id);

/** ``sdp`` with only the candidates of ``transport`` ('udp' or 'tcp'). */
function onlyTransport(sdp, transport) {
  return sdp
    .split('\r\n')
    .filter((line) => {
      const match = /^a=candidate:\S+ \d+ (\S+) /.exec(line);
      return !match || match[1].toLowerCase() === transport;
    })
    .join('\r\n');
}

/** The ports of the answer's candidates, by transport. */
function serverPorts(sdp) {
  const ports = { udp: new Set(), tcp: new Set() };
  for (const match of sdp.matchAll(/a=candidate:\S+ \d+ (udp|tcp) \d+ \S+ (\d+) typ host/gi)) {
    ports[match[1].toLowerCase()].add(Number(match[2]));
  }
  return { udp: [...ports.udp], tcp: [...ports.tcp] };
}

function waitFor(channel, predicate, timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      channel.removeEventListener('message', listener);
      reject(new Error('timeout'));
    }, timeoutMs);
    function listener(event) {
      if (typeof event.data === 'string' && predicate(event.data)) {
        clearTimeout(timer);
        channel.removeEventListener('message', listener);
        resolve(event.data);
      }
    }
    channel.addEventListener('message', listener);
  });
}

async function probe(transport, iceServers = []) {
  const relay = transport === 'relay';
  const pc = new RTCPeerConnection(
    relay ? { iceServers, iceTransportPolicy: 'relay' } : { iceServers: [] },
  );
  const channel = pc.createDataChannel('probe');
  channel.binaryType = 'arraybuffer';
  const result = { transport, works: false, rttMs: null, downMbps: null, upMbps: null };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc);
    const response = await fetch('/api/check', {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp' },
      body: relay ? pc.localDescription.sdp : onlyTransport(pc.localDescription.sdp, transport),
    });
    if (response.status !== 201) {
      const body = await response.json().catch(() => ({}));
      result.error = `HTTP ${response.status} ${body.error || ''}`.trim();
      return result;
    }
    const answer = await response.text();
    result.ports = serverPorts(answer);
    await pc.setRemoteDescription({
      type: 'answer', sdp: relay ? answer : onlyTransport(answer, transport),
    });
    await new Promise((resolve, reject) => {
      if (channel.readyState === 'open') resolve();
      const timer = setTimeout(() => reject(new Error('timeout')), CONNECT_TIMEOUT_MS);
      channel.addEventListener('open', () => { clearTimeout(timer); resolve(); });
    });
    result.works = true;
    const rtts = [];
    for (let i = 0; i < PINGS; i++) {
      const sent = performance.now();
      channel.send(`ping:${i}`);
      await waitFor(channel, (data) => data === `ping:${i}`, 3000);
      rtts.push(performance.now() - sent);
    }
    rtts.sort((a, b) => a - b);
    result.rttMs = rtts[Math.floor(rtts.length / 2)];

    let started = performance.now();
    channel.send('down');
    const done = await waitFor(channel, (data) => data.startsWith('down:'), 20000);
    result.downMbps = (Number(done.slice(5)) * 8) / ((performance.now() - started) * 1000);

    started = performance.now();
    const chunk = new Uint8Array(CHUNK);
    channel.bufferedAmountLowThreshold = 4 * CHUNK;
    for (let sent = 0; sent < UP_BYTES; sent += CHUNK) {
      if (channel.bufferedAmount > 16 * CHUNK) {
        await new Promise((resolve) => {
          channel.addEventListener('bufferedamountlow', resolve, { once: true });
        });
      }
      channel.send(chunk);
    }
    channel.send('up');
    const up = await waitFor(
      channel, (data) => data.startsWith('up:') && Number(data.slice(3)) >= UP_BYTES, 20000,
    );
    result.upMbps = (Number(up.slice(3)) * 8) / ((performance.now() - started) * 1000);
  } catch (error) {
    result.error = String(error.message || error);
  } finally {
    pc.close();
  }
  return result;
}

function show(result) {
  const row = $(`path-${result.transport}`);
  row.dataset.works = String(result.works);
  row.querySelector('.result').textContent = result.works ? '可用' : '不可用';
  row.querySelector('.result').title = result.error || '';
  row.querySelector('.rtt').textContent = result.rttMs == null ? '' : `${Math.round(result.rttMs)} 毫秒`;
  row.querySelector('.down').textContent = result.downMbps == null ? '' : `${result.downMbps.toFixed(1)} Mbit/s`;
  row.querySelector('.up').textContent = result.upMbps == null ? '' : `${result.upMbps.toFixed(1)} Mbit/s`;
}

function advise(udp, tcp, relay) {
  const ports = udp.ports || tcp.ports || { udp: [], tcp: [] };
  const host = location.hostname;
  const udpPorts = ports.udp.join('、') || '（未知）';
  const tcpPorts = ports.tcp.join('、') || '（未知）';
  let text;
  if (udp.works) {
    text = '无需改动：直连 UDP 可用，上课效果最好。';
  } else if (tcp.works) {
    text = `目前经 TCP 上课可用，但 TCP 遇到丢包时画面容易卡顿。请放行到服务器 ${host} 的 UDP 端口 ${udpPorts}（出站及其回应）。`;
  } else if (relay && relay.works) {
    text = `目前只能经中继服务器上课（多绕一程，延迟稍大）。请放行到服务器 ${host} 的 UDP 端口 ${udpPorts}，或至少 TCP 端口 ${tcpPorts}。`;
  } else {
    text = `这台电脑收不到音视频。请放行到服务器 ${host} 的 UDP 端口 ${udpPorts}，至少放行 TCP 端口 ${tcpPorts}。`;
  }
  $('check-advice-text').textContent = text;
  $('check-advice').hidden = false;
  document.body.dataset.checked = udp.works
    ? 'udp' : tcp.works ? 'tcp' : relay && relay.works ? 'relay' : 'none';
}

async function run() {
  $('check-start').disabled = true;
  $('check-advice').hidden = true;
  $('check-status').textContent = '正在检测 UDP…';
  const udp = await probe('udp');
  show(udp);
  $('check-status').textContent = '正在检测 TCP…';
  const tcp = await probe('tcp');
  show(tcp);
  let relay = null;
  const servers = await fetch('/api/check').then((r) => (r.ok ? r.json() : null)).catch(() => null);
  if (servers && servers.ice_servers.length) {
    $('path-relay').hidden = false;
    $('check-status').textContent = '正在检测中继…';
    relay = await probe('relay', servers.ice_servers);
    show(relay);
  }
  $('check-status').textContent = '检测完成';
  advise(udp, tcp, relay);
  $('check-start').disabled = false;
}

$('check-start').addEventListener('click', run);
