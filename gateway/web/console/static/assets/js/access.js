// Access: staff requests waiting for a decision, active grants, the policy matrix
// (purpose x level -> action) and the notification endpoint with its secret (shown once).
import { copyButton, field, fmtDuration, fmtTime, fmtUntil, h, notice, showProblem, table } from './dom.js';
import { b64encode } from './verify.js';

const PURPOSES = ['operability', 'fault_diagnostics', 'integration_analysis', 'legal_request'];
const LEVELS = ['technical', 'audio'];
const ACTIONS = [['auto_approve', 'auto-approve'], ['require_approval', 'require approval'], ['deny', 'deny']];

function who(g) {
  return `${g.staff.id} (${g.staff.employer}, ${g.staff.country})`;
}
function scopeText(scope) {
  if (!scope) return '–';
  if (scope.calls) return `calls: ${scope.calls.join(', ')}`;
  if (scope.window) return `window: ${fmtTime(scope.window.since)} – ${fmtTime(scope.window.until)}`;
  return JSON.stringify(scope);
}

export async function accessPage(view, api) {
  view.append(h('h1', { text: 'Access' }));
  const status = h('div');
  const pendingBox = h('div'), activeBox = h('div'), historyBox = h('div');
  view.append(status, h('h2', { text: 'Pending requests' }), pendingBox, h('h2', { text: 'Active grants' }), activeBox);

  async function decide(path, done) {
    try { await api.post(path); notice(status, 'ok', done); } catch (err) { notice(status, 'bad', err.message); }
    await refresh();
  }

  async function refresh() {
    const [pending, active, recent] = await Promise.all([
      api.get('/v1/access-requests', { state: 'pending', limit: 100 }),
      api.get('/v1/access-requests', { state: 'approved', limit: 100 }),
      api.get('/v1/access-requests', { limit: 20 })]);
    pendingBox.replaceChildren(table('Requests waiting for a decision', [
      { label: 'Who', value: who },
      { label: 'Purpose', value: (g) => g.purpose },
      { label: 'Level', value: (g) => g.level },
      { label: 'Reference', value: (g) => g.reference },
      { label: 'Scope', value: (g) => scopeText(g.scope) },
      { label: 'Duration', value: (g) => `${fmtDuration(g.duration_seconds)}${g.single_use ? ', single use' : ''}` },
      { label: 'Expires', value: (g) => fmtUntil(g.pending_until) },
      { label: 'Decision', value: (g) => h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'primary', text: 'Approve', 'aria-label': `Approve ${g.reference} from ${g.staff.id}`,
          onclick: () => decide(`/v1/access-requests/${g.id}/approve`, `Approved ${g.reference}.`) }),
        h('button', { type: 'button', class: 'danger', text: 'Deny', 'aria-label': `Deny ${g.reference} from ${g.staff.id}`,
          onclick: () => decide(`/v1/access-requests/${g.id}/deny`, `Denied ${g.reference}.`) })) },
    ], pending.items, { empty: 'nothing is waiting' }));
    activeBox.replaceChildren(table('Grants in force', [
      { label: 'Who', value: who },
      { label: 'Purpose', value: (g) => g.purpose },
      { label: 'Level', value: (g) => g.level },
      { label: 'Reference', value: (g) => g.reference },
      { label: 'Scope', value: (g) => scopeText(g.scope) },
      { label: 'Reads', num: true, value: (g) => String(g.reads ?? 0) },
      { label: 'Ends', value: (g) => `${fmtTime(g.expires_at)} (${fmtUntil(g.expires_at)})` },
      { label: 'Actions', value: (g) => h('button', { type: 'button', class: 'danger', text: 'Revoke',
        'aria-label': `Revoke ${g.reference} from ${g.staff.id}`,
        onclick: () => decide(`/v1/grants/${g.id}/revoke`, `Revoked ${g.reference}.`) }) },
    ], active.items, { empty: 'none' }));
    historyBox.replaceChildren(table('Latest requests', [
      { label: 'Created', value: (g) => fmtTime(g.created_at) },
      { label: 'Who', value: who },
      { label: 'Reference', value: (g) => g.reference },
      { label: 'Level', value: (g) => g.level },
      { label: 'State', value: (g) => g.state },
    ], recent.items, { empty: 'none' }));
  }

  // The policy matrix.
  const policy = await api.get('/v1/access-policy');
  const selects = {};
  const policyStatus = h('div');
  const matrix = h('table', {}, h('caption', { text: 'What happens to a request, by purpose and level' }),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Purpose' }), LEVELS.map((l) => h('th', { scope: 'col', text: l })))),
    h('tbody', {}, PURPOSES.map((p) => h('tr', {}, h('th', { scope: 'row', text: p }), LEVELS.map((l) => {
      const sel = h('select', { 'aria-label': `${p} / ${l}` }, ACTIONS.map(([v, t]) => h('option', { value: v, text: t })));
      sel.value = policy.effective[p][l];
      selects[`${p}.${l}`] = sel;
      return h('td', {}, sel);
    })))));
  const policyForm = h('form', { 'aria-labelledby': 'policy-h' }, matrix,
    h('button', { type: 'submit', class: 'primary', text: 'Save policy' }));
  policyForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const rules = {};
    for (const p of PURPOSES) { rules[p] = {}; for (const l of LEVELS) rules[p][l] = selects[`${p}.${l}`].value; }
    try {
      await api.put('/v1/access-policy', { rules, pending_ttl_seconds: policy.pending_ttl_seconds, max_grant_seconds: policy.max_grant_seconds });
      notice(policyStatus, 'ok', 'Policy saved.');
    } catch (err) { notice(policyStatus, 'bad', err.message); }
  });

  // The notification endpoint: the secret is generated here, sent once, shown once.
  const hookStatus = h('div');
  const url = field('Notification URL', { type: 'url', required: true, value: policy.webhook ? policy.webhook.url : '' },
    { hint: 'The gateway POSTs each new request here, signed (Standard Webhooks).' });
  const hookForm = h('form', { class: 'stack', 'aria-labelledby': 'hook-h' }, url.wrap,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: 'Save endpoint and new secret' }),
      h('button', { type: 'button', text: 'Remove endpoint', onclick: async () => {
        await api.del('/v1/access-policy/webhook'); notice(hookStatus, 'ok', 'Endpoint removed.');
      } })));
  hookForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const secret = `whsec_${b64encode(crypto.getRandomValues(new Uint8Array(32)))}`;
    try {
      await api.put('/v1/access-policy/webhook', { url: url.input.value.trim(), secret });
      hookStatus.replaceChildren(h('p', { role: 'status', text: 'Saved. The signing secret (shown once; store it in your receiver now):' }),
        h('code', { class: 'secret', text: secret }), copyButton('Copy signing secret', () => secret));
    } catch (err) { showProblem(err, { url }, hookStatus); }
  });

  view.append(h('h2', { id: 'policy-h', text: 'Policy' }), policyStatus, policyForm,
    h('h2', { id: 'hook-h', text: 'Notification endpoint' }),
    h('p', { class: 'hint', text: policy.webhook ? `Current: ${policy.webhook.url} (since ${fmtTime(policy.webhook.updated_at)})` : 'None set.' }),
    hookStatus, hookForm, h('h2', { text: 'History' }), historyBox);
  await refresh();
}
