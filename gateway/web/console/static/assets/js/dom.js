// DOM helpers shared by every console page. Everything is built with createElement and
// textContent: no innerHTML anywhere, so nothing the API returns can become markup, and
// nothing needs an inline script or style (the CSP forbids both).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'text') {
      el.textContent = value;
    } else if (key === 'class') {
      el.setAttribute('class', value);
    } else if (key in el && !(el instanceof SVGElement) && typeof value !== 'string') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

let uid = 0;
export function nextId(prefix = 'f') { uid += 1; return `${prefix}-${uid}`; }

// A labelled form control with a slot for the API's validation message (aria-describedby).
export function field(label, attrs = {}, { hint, control = 'input', options } = {}) {
  const id = attrs.id || nextId('field');
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  let input;
  if (control === 'select') {
    input = h('select', { id, ...attrs },
      (options || []).map(([value, text]) => h('option', { value, text: text ?? value })));
  } else {
    input = h(control, { id, ...attrs });
  }
  input.setAttribute('aria-describedby', [hintId, errorId].filter(Boolean).join(' '));
  const error = h('span', { id: errorId, class: 'field-error' });
  const wrap = h('div', { class: 'field' }, h('label', { for: id, text: label }),
    input, hint ? h('span', { id: hintId, class: 'hint', text: hint }) : null, error);
  return { wrap, input, error };
}

// Show an API problem next to the field it names (problem.field), or in `fallback`.
export function showProblem(err, fields, fallback) {
  for (const f of Object.values(fields)) { f.error.textContent = ''; f.input.removeAttribute('aria-invalid'); }
  const name = err && err.problem && err.problem.field;
  const target = name && (fields[name] || fields[name.replace(/^credentials\./, '')]);
  if (target) {
    target.error.textContent = err.message;
    target.input.setAttribute('aria-invalid', 'true');
    target.input.focus();
  } else if (fallback) {
    notice(fallback, 'bad', err.message || String(err));
  }
}

// A status message. 'bad' messages are alerts (announced at once); others are polite.
export function notice(container, kind, text) {
  clear(container);
  container.append(h('div', { class: `notice ${kind}`, role: kind === 'bad' ? 'alert' : 'status', text }));
  return container;
}

export function table(caption, columns, rows, { empty = 'None.' } = {}) {
  if (!rows.length) return h('p', { class: 'hint', text: `${caption}: ${empty}` });
  return h('table', {},
    h('caption', { text: caption }),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null, text: c.label })))),
    h('tbody', {}, rows.map((row) => h('tr', {}, columns.map((c) => {
      const value = c.value(row);
      return h('td', { class: c.num ? 'num' : null }, value ?? '–');
    })))));
}

export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', { text: k }), h('dd', {}, v ?? '–')]));
}

export function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC');
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  const s = Math.max(0, Math.round(seconds));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  return hh ? `${hh}h ${mm}m ${ss}s` : mm ? `${mm}m ${ss}s` : `${ss}s`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = n, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

// "in 3m 20s" / "2m ago": the clocks of grants and pending requests.
export function fmtUntil(iso, now = Date.now()) {
  if (!iso) return '–';
  const delta = (new Date(iso).getTime() - now) / 1000;
  return delta >= 0 ? `in ${fmtDuration(delta)}` : `${fmtDuration(-delta)} ago`;
}

export function copyButton(label, getText) {
  const status = h('span', { class: 'hint', role: 'status' });
  const button = h('button', { type: 'button', text: label, onclick: async () => {
    try {
      await navigator.clipboard.writeText(getText());
      status.textContent = 'Copied.';
    } catch {
      status.textContent = 'Copy failed: select the text and copy it by hand.';
    }
  } });
  return h('span', { class: 'actions' }, button, status);
}

export function download(filename, blob) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
