// Small inline SVG charts for the lesson report, drawn here with no library: a figure over the
// lesson's time with a band of grades under it, and a timeline of hands and stage turns.
// Colours come from the stylesheet (classes), so the charts follow the page.

const SVG = 'http://www.w3.org/2000/svg';
const GAP_S = 30; // samples further apart than this are not joined by a line (the room was away)

function node(tag, attributes = {}, text = undefined) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

/** "m:ss" (or "h:mm:ss") of a time from the lesson's start. */
export function elapsed(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

/** A step for about `count` ticks over `span` seconds, from a list of readable steps. */
function timeStep(span, count = 6) {
  const steps = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
  return steps.find((step) => span / step <= count) ?? 3600;
}

function timeAxis(svg, { start, end, x, top, bottom }) {
  const step = timeStep(end - start);
  for (let at = 0; at <= end - start + 0.001; at += step) {
    const px = x(start + at);
    svg.append(node('line', { x1: px, x2: px, y1: top, y2: bottom, class: 'grid' }));
    const label = { x: px, y: bottom + 14, class: 'tick', 'text-anchor': 'middle' };
    svg.append(node('text', label, elapsed(at)));
  }
}

/**
 * A line of `points` ([[at, value], ...], Unix seconds) from `start` to `end`, with `bands`
 * ([[at, grade], ...]) coloured under it. `max` is the top of the scale, `format(value)` its
 * labels, `label` the chart's accessible name.
 */
export function timeChart({ start, end, points, bands = [], max, format, label, className = '' }) {
  const width = 640;
  const height = 150;
  const left = 52;
  const right = 10;
  const top = 10;
  const plotBottom = height - 40;
  const svg = node('svg', {
    viewBox: `0 0 ${width} ${height}`,
    class: `chart ${className}`,
    role: 'img',
    'aria-label': label,
  });
  svg.append(node('title', {}, label));
  const span = Math.max(1, end - start);
  const x = (at) =>
    left + ((Math.min(Math.max(at, start), end) - start) / span) * (width - left - right);
  const y = (value) => plotBottom - (Math.min(value, max) / max) * (plotBottom - top);

  for (const fraction of [0, 0.5, 1]) {
    const py = y(max * fraction);
    svg.append(node('line', { x1: left, x2: width - right, y1: py, y2: py, class: 'grid' }));
    const tick = { x: left - 6, y: py + 4, class: 'tick', 'text-anchor': 'end' };
    svg.append(node('text', tick, format(max * fraction)));
  }
  timeAxis(svg, { start, end, x, top, bottom: plotBottom + 10 });

  // the grade at each sample holds until the next one
  bands.forEach(([at, grade], i) => {
    const next = bands[i + 1]?.[0] ?? Math.min(end, at + 10);
    const until = next - at > GAP_S ? at + 10 : next;
    const x1 = x(at);
    const x2 = Math.max(x1 + 1, x(until));
    const band = { x: x1, y: plotBottom + 2, width: x2 - x1, height: 7, class: `band ${grade}` };
    svg.append(node('rect', band));
  });

  let run = [];
  const lines = [];
  points.forEach(([at, value], i) => {
    if (i > 0 && at - points[i - 1][0] > GAP_S) {
      lines.push(run);
      run = [];
    }
    if (typeof value === 'number' && Number.isFinite(value)) {
      run.push(`${x(at).toFixed(1)},${y(value).toFixed(1)}`);
    }
  });
  lines.push(run);
  for (const line of lines) {
    if (line.length === 1) {
      const [px, py] = line[0].split(',');
      svg.append(node('circle', { cx: px, cy: py, r: 2.5, class: 'dot' }));
    } else if (line.length > 1) {
      svg.append(node('polyline', { points: line.join(' '), class: 'line' }));
    }
  }
  return svg;
}

/**
 * One row per classroom: hands raised (a marker, with a bar until lowered) and turns on stage
 * (bars), over the lesson's time. `rows`: [{name, hands: [[raised, lowered|null]], stage:
 * [[on, off|null]]}].
 */
export function timeline({ start, end, rows, label }) {
  const width = 900;
  const left = 170;
  const right = 10;
  const rowHeight = 30;
  const top = 6;
  const bottom = top + rows.length * rowHeight;
  const height = bottom + 24;
  const svg = node('svg', {
    viewBox: `0 0 ${width} ${height}`,
    class: 'chart timeline',
    role: 'img',
    'aria-label': label,
  });
  svg.append(node('title', {}, label));
  const span = Math.max(1, end - start);
  const x = (at) =>
    left + ((Math.min(Math.max(at, start), end) - start) / span) * (width - left - right);
  timeAxis(svg, { start, end, x, top, bottom });
  rows.forEach((row, i) => {
    const mid = top + i * rowHeight + rowHeight / 2;
    const name = row.name.length > 14 ? `${row.name.slice(0, 13)}…` : row.name;
    const place = { x: left - 8, y: mid + 4, class: 'row-name', 'text-anchor': 'end' };
    const text = node('text', place, name);
    text.append(node('title', {}, row.name));
    svg.append(text);
    svg.append(node('line', { x1: left, x2: width - right, y1: mid, y2: mid, class: 'row-line' }));
    for (const [on, off] of row.stage) {
      const x1 = x(on);
      const width = Math.max(2, x(off ?? end) - x1);
      svg.append(node('rect', { x: x1, y: mid - 8, width, height: 16, rx: 3, class: 'stage-bar' }));
    }
    for (const [raised, lowered] of row.hands) {
      const x1 = x(raised);
      if (lowered !== null) {
        const width = Math.max(1, x(lowered) - x1);
        svg.append(node('rect', { x: x1, y: mid - 2, width, height: 4, class: 'hand-bar' }));
      }
      svg.append(node('circle', { cx: x1, cy: mid, r: 5, class: 'hand-dot' }));
    }
  });
  return svg;
}
