// The staff console: sign in with the staff token; request access; see own requests and
// grants with their clocks; open the technical view of a call under a grant (stats as
// charts) and play a recording under an audio grant. Every diagnostic read is logged in the
// tenant's transparency log before it is answered, and the page says so.
import { barChart } from './charts.js';
import { facts, field, fmtDuration, fmtTime, fmtUntil, h, notice, showProblem, table } from './dom.js';
import { startConsole } from './shell.js';

const PURPOSES = ['operability', 'fault_diagnostics', 'integration_analysis', 'legal_request'];
const LEVELS = ['technical', 'audio'];
const LOGGED = 'This read was logged in the tenant\u2019s transparency log before it was answered.';

async function requestPage(view, api) {
  view.append(h('h1', { text: 'Request access' }),
    h('p', { class: 'hint', text: `Signed in as ${api.session.pseudonym} (${api.session.employer}, ${api.session.country}). The tenant sees this identity, the purpose and the reference.` }));
  const status = h('div');
  const tenant = field('Tenant id', { name: 'tenant', required: true, autocomplete: 'off' });
  const scopeKind = field('Scope', {}, { control: 'select', options: [['calls', 'specific calls'], ['window', 'a time window']] });
  const calls = field('Call ids', { name: 'calls', rows: 2 }, { control: 'textarea', hint: 'separated by spaces, commas or new lines' });
  const since = field('Window from (UTC)', { type: 'datetime-local', name: 'since' });
  const until = field('Window until (UTC)', { type: 'datetime-local', name: 'until' });
  const purpose = field('Purpose', { name: 'purpose' }, { control: 'select', options: PURPOSES.map((p) => [p]) });
  const level = field('Level', { name: 'level' }, { control: 'select', options: LEVELS.map((l) => [l]) });
  const reference = field('Ticket reference', { name: 'reference', required: true, maxlength: 100 });
  const minutes = field('Duration (minutes)', { type: 'number', min: 1, step: 1, value: 60, name: 'duration_seconds' });
  const single = h('input', { type: 'checkbox', id: 'single-use', name: 'single_use' });
  function syncScope() {
    const byCalls = scopeKind.input.value === 'calls';
    calls.wrap.hidden = !byCalls; since.wrap.hidden = byCalls; until.wrap.hidden = byCalls;
  }
  scopeKind.input.addEventListener('change', syncScope);
  syncScope();
  const form = h('form', { class: 'stack', 'aria-label': 'Access request' }, tenant.wrap, scopeKind.wrap, calls.wrap, since.wrap, until.wrap,
    purpose.wrap, level.wrap, reference.wrap, minutes.wrap,
    h('div', {}, single, ' ', h('label', { for: 'single-use', text: 'Single use (the grant ends after one read)' })),
    h('div', {}, h('button', { type: 'submit', class: 'primary', text: 'Send request' })));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const scope = scopeKind.input.value === 'calls'
      ? { calls: calls.input.value.split(/[\s,]+/).filter(Boolean) }
      : { window: { since: `${since.input.value}:00Z`, until: `${until.input.value}:00Z` } };
    try {
      const created = await api.post('/v1/staff/access-requests', { tenant: tenant.input.value.trim(), scope,
        purpose: purpose.input.value, level: level.input.value, reference: reference.input.value.trim(),
        duration_seconds: Math.round(Number(minutes.input.value) * 60), single_use: single.checked });
      notice(status, created.state === 'denied' ? 'bad' : 'ok', `Request ${created.reference} is ${created.state}${created.state === 'pending' ? ` until ${fmtTime(created.pending_until)}` : ''}.`);
    } catch (err) {
      showProblem(err, { tenant, scope: calls, calls, purpose, level, reference, duration_seconds: minutes }, status);
    }
  });
  view.append(status, form);
}

function diagnosticsLink(grant, callId, text) {
  return h('a', { href: `#/diagnostics/${grant.id}/${callId}`, text });
}

async function requestsPage(view, api) {
  view.append(h('h1', { text: 'My requests' }));
  const { items } = await api.get('/v1/staff/access-requests', { limit: 100 });
  const open = h('form', { class: 'row', 'aria-label': 'Open a call under a window grant' });
  const grantSel = field('Grant', {}, { control: 'select', options: items.filter((g) => g.state === 'approved').map((g) => [g.id, `${g.reference} (${g.level})`]) });
  const callId = field('Call id', { autocomplete: 'off' });
  open.append(grantSel.wrap, callId.wrap, h('button', { type: 'submit', text: 'Open technical view' }));
  open.addEventListener('submit', (e) => { e.preventDefault(); location.hash = `#/diagnostics/${grantSel.input.value}/${callId.input.value.trim()}`; });
  view.append(table('Requests and grants', [
    { label: 'Reference', value: (g) => g.reference },
    { label: 'Tenant', value: (g) => h('code', { text: g.tenant_id }) },
    { label: 'Purpose', value: (g) => g.purpose },
    { label: 'Level', value: (g) => g.level },
    { label: 'State', value: (g) => g.state },
    { label: 'Clock', value: (g) => (g.state === 'pending' ? `decision due ${fmtUntil(g.pending_until)}`
      : g.state === 'approved' ? `ends ${fmtUntil(g.expires_at)} (${fmtTime(g.expires_at)})` : fmtTime(g.ended_at || g.decided_at)) },
    { label: 'Duration', value: (g) => `${fmtDuration(g.duration_seconds)}${g.single_use ? ', single use' : ''}` },
    { label: 'Calls', value: (g) => (g.scope && g.scope.calls && g.state === 'approved'
      ? h('ul', {}, g.scope.calls.map((c) => h('li', {}, diagnosticsLink(g, c, `Technical view of ${c.slice(0, 8)}`))))
      : g.scope && g.scope.window ? `window ${fmtTime(g.scope.window.since)} – ${fmtTime(g.scope.window.until)}` : (g.scope && g.scope.calls ? g.scope.calls.join(', ') : '–')) },
  ], items, { empty: 'none yet' }));
  if (items.some((g) => g.state === 'approved' && g.scope && g.scope.window)) view.append(h('h2', { text: 'Open a call in a window grant' }), open);
}

async function diagnosticsPage(view, api, [grantId, callId]) {
  const grant = await api.get(`/v1/staff/access-requests/${encodeURIComponent(grantId)}`);
  view.append(h('p', {}, h('a', { href: '#/requests', text: '← My requests' })), h('h1', { text: `Technical view of call ${callId.slice(0, 8)}` }));
  let tv;
  try {
    tv = await api.get(`/v1/staff/diagnostics/calls/${encodeURIComponent(callId)}`, { grant: grantId });
  } catch (err) {
    view.append(h('div', { class: 'notice bad', role: 'alert', text: `Refused: ${err.message}` }),
      h('p', { class: 'logged', text: 'The refusal was logged in the tenant\u2019s transparency log.' }));
    return;
  }
  view.append(h('p', { class: 'notice', role: 'status', text: LOGGED }));
  const c = tv.call || {};
  view.append(facts([['Grant', `${grant.reference} (${tv.grant.level}), ends ${fmtUntil(tv.grant.expires_at)}${tv.grant.single_use ? ', single use' : ''}`],
    ['Platform', c.platform], ['Status', c.status], ['Direction', c.direction], ['From', c.parties && c.parties.from], ['To', c.parties && c.parties.to],
    ['Started', fmtTime(c.started_at)], ['Duration', fmtDuration(c.duration_seconds)]]));
  view.append(h('h2', { text: 'Status history' }), table('Events', [
    { label: 'Kind', value: (e) => e.kind }, { label: 'Status', value: (e) => e.status },
    { label: 'Occurred', value: (e) => fmtTime(e.occurred_at) }, { label: 'Delivery delay', num: true, value: (e) => (e.delivery_delay_ms ?? '–').toString() },
  ], tv.status_history || []));
  view.append(h('h2', { text: 'Recordings' }));
  const recs = tv.recordings || [];
  if (!recs.length) view.append(h('p', { class: 'hint', text: 'No recordings.' }));
  recs.forEach((r, i) => {
    const st = r.stats || {};
    const charts = [];
    const levels = ['rms_dbfs', 'peak_dbfs', 'mean_dbfs'].filter((k) => typeof st[k] === 'number');
    if (levels.length) charts.push(barChart(`Recording ${i + 1}: levels (dB below full scale)`, levels, [{ name: 'dB below full scale', values: levels.map((k) => Math.abs(st[k])) }], levels.map((k) => `${k} ${st[k]}`).join(', ')));
    const ratios = ['silence_ratio', 'clipping_ratio', 'packet_loss_ratio'].filter((k) => typeof st[k] === 'number');
    if (ratios.length) charts.push(barChart(`Recording ${i + 1}: ratios (%)`, ratios, [{ name: 'percent', values: ratios.map((k) => Math.round(st[k] * 1000) / 10) }], ratios.map((k) => `${k} ${st[k]}`).join(', ')));
    view.append(h('section', { class: 'card', 'aria-label': `Recording ${i + 1}` }, h('h3', { text: `Recording ${i + 1} (${r.state}, ${r.source})` }),
      facts(Object.entries(st).map(([k, v]) => [k, String(v)])), charts,
      tv.grant.level === 'audio' ? [h('audio', { controls: true, preload: 'none', 'aria-label': `Recording ${i + 1} player (audio grant)`,
        src: `/v1/staff/diagnostics/calls/${encodeURIComponent(callId)}/audio?grant=${encodeURIComponent(grantId)}&recording=${encodeURIComponent(r.id)}` }),
      h('p', { class: 'logged', text: 'Playing is a read of the audio: each request is logged in the tenant\u2019s transparency log.' })] : ''));
  });
}

startConsole({
  sessionPath: '/console/staff/session',
  credential: 'token',
  credentialLabel: 'Staff token',
  heading: 'Sign in to the staff console',
  home: 'requests',
  routes: { request: requestPage, requests: requestsPage, diagnostics: diagnosticsPage },
});
