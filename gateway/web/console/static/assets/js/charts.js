// Small SVG charts drawn here rather than with a vendored library: the console needs two
// shapes (stacked bars by category, lines over time), and an SVG with a text summary and a
// data table is accessible without any script in the chart itself. Colours come from CSS
// classes (series-N), never inline styles.
import { h, s } from './dom.js';

const W = 640, H = 220, PAD = { l: 44, r: 12, t: 12, b: 38 };

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v);
}

function legend(series) {
  return h('ul', { class: 'legend' }, series.map((ser, i) => h('li', { class: `series-${i % 6}` }, h('span', { text: ser.name }))));
}

function dataTable(title, headers, rows) {
  return h('details', {}, h('summary', { text: `${title}: data table` }),
    h('table', {}, h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col', text: x })))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', { text: String(c) })))))));
}

// labels: category names; series: [{name, values: [number per label]}] stacked per label.
export function barChart(title, labels, series, summary) {
  const totals = labels.map((_, i) => series.reduce((a, ser) => a + (ser.values[i] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
  const bw = labels.length ? iw / labels.length : iw;
  const y = (v) => PAD.t + ih - (v / max) * ih;
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title}. ${summary}` });
  for (const t of [0, 0.5, 1]) {
    svg.append(s('line', { class: 'grid', x1: PAD.l, x2: W - PAD.r, y1: y(max * t), y2: y(max * t) }),
      s('text', { x: PAD.l - 6, y: y(max * t) + 4, 'text-anchor': 'end', text: String(Math.round(max * t)) }));
  }
  labels.forEach((label, i) => {
    let base = 0;
    series.forEach((ser, k) => {
      const v = ser.values[i] || 0;
      if (v > 0) {
        svg.append(s('rect', { class: `series-${k % 6}`, x: PAD.l + i * bw + bw * 0.15, width: Math.max(1, bw * 0.7),
          y: y(base + v), height: y(base) - y(base + v) }, s('title', { text: `${label}, ${ser.name}: ${v}` })));
      }
      base += v;
    });
    const every = Math.ceil(labels.length / 10);
    if (i % every === 0) {
      svg.append(s('text', { x: PAD.l + i * bw + bw / 2, y: H - PAD.b + 16, 'text-anchor': 'middle', text: label }));
    }
  });
  svg.append(s('line', { class: 'axis', x1: PAD.l, x2: W - PAD.r, y1: y(0), y2: y(0) }));
  return h('figure', { class: 'chart' }, h('figcaption', { text: title }), svg, legend(series),
    dataTable(title, ['', ...series.map((x) => x.name)], labels.map((l, i) => [l, ...series.map((x) => x.values[i] || 0)])));
}

// series: [{name, points: [[x, y], ...]}]; x in seconds (or any number), y within [yMin, yMax].
export function lineChart(title, series, { yMin, yMax, xLabel = 's', yLabel = '' }, summary) {
  const xs = series.flatMap((ser) => ser.points.map((p) => p[0]));
  const xMax = Math.max(1, ...xs);
  const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
  const x = (v) => PAD.l + (v / xMax) * iw;
  const y = (v) => PAD.t + ih - ((Math.min(yMax, Math.max(yMin, v)) - yMin) / (yMax - yMin)) * ih;
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title}. ${summary}` });
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    const v = yMin + (yMax - yMin) * t;
    svg.append(s('line', { class: 'grid', x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v) }),
      s('text', { x: PAD.l - 6, y: y(v) + 4, 'text-anchor': 'end', text: `${Math.round(v)}${yLabel}` }));
  }
  for (const t of [0, 0.5, 1]) {
    svg.append(s('text', { x: x(xMax * t), y: H - PAD.b + 16, 'text-anchor': 'middle', text: `${Math.round(xMax * t)}${xLabel}` }));
  }
  series.forEach((ser, k) => {
    if (!ser.points.length) return;
    const d = ser.points.map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ');
    svg.append(s('path', { class: `line series-${k % 6}`, d }));
  });
  svg.append(s('line', { class: 'axis', x1: PAD.l, x2: W - PAD.r, y1: H - PAD.b, y2: H - PAD.b }));
  const rows = [];
  const longest = Math.max(...series.map((ser) => ser.points.length));
  for (let i = 0; i < Math.min(longest, 600); i += 1) {
    rows.push([series[0].points[i] ? series[0].points[i][0] : '', ...series.map((ser) => (ser.points[i] ? ser.points[i][1].toFixed(1) : ''))]);
  }
  return h('figure', { class: 'chart' }, h('figcaption', { text: title }), svg, legend(series),
    dataTable(title, [xLabel, ...series.map((ser) => ser.name)], rows));
}
