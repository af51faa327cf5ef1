// Retention (days per data class within the operator's bounds, legal holds, the next
// sweep's preview), data subjects (search, export, erase, restrict, rectify, requests) and
// keys (status, rotation with progress).
import { download, facts, field, fmtTime, h, notice, showProblem, table } from './dom.js';

export async function retentionPage(view, api) {
  view.append(h('h1', { text: 'Retention' }));
  const status = h('div');
  const policyBox = h('div'), previewBox = h('div'), holdsBox = h('div');
  view.append(status, h('h2', { id: 'policy-h', text: 'Days kept per data class' }), policyBox,
    h('h2', { text: 'What the next sweep deletes' }), previewBox,
    h('h2', { id: 'holds-h', text: 'Legal holds' }), holdsBox);

  async function loadPolicy() {
    const policy = await api.get('/v1/retention');
    const inputs = {};
    const rows = Object.entries(policy.classes).map(([name, c]) => {
      const f = field(`${name} (days)`, { type: 'number', min: c.min_days, max: c.max_days, step: 1, required: true, value: c.days, name },
        { hint: `${c.min_days}–${c.max_days} days; operator default ${c.default_days}; ${c.source === 'tenant' ? 'set by you' : 'default'}${c.effective_days !== undefined && c.effective_days !== c.days ? `; effectively ${c.effective_days} (goes with its call)` : ''}${c.enforced === false ? '; not swept' : ''}` });
      inputs[name] = f;
      return f.wrap;
    });
    const form = h('form', { class: 'stack', 'aria-labelledby': 'policy-h' }, rows,
      h('div', {}, h('button', { type: 'submit', class: 'primary', text: 'Save retention' })));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body = {};
      for (const [name, f] of Object.entries(inputs)) body[name] = Number(f.input.value);
      try {
        await api.put('/v1/retention', body);
        notice(status, 'ok', 'Retention saved.');
        await loadPolicy();
        await loadPreview();
      } catch (err) { showProblem(err, inputs, status); }
    });
    policyBox.replaceChildren(form);
  }

  async function loadPreview() {
    const preview = await api.get('/v1/retention/preview');
    previewBox.replaceChildren(
      preview.tenant_held ? h('p', { class: 'notice warn', text: 'A tenant-wide legal hold is in force: the sweep deletes nothing.' }) : '',
      table(`Preview as of ${fmtTime(preview.as_of)}`, [
        { label: 'Data class', value: ([n]) => n },
        { label: 'Days', num: true, value: ([, c]) => String(c.days) },
        { label: 'Deletes items older than', value: ([, c]) => fmtTime(c.cutoff) },
        { label: 'Would delete', num: true, value: ([, c]) => String(c.would_delete ?? 0) },
        { label: 'Kept: held', num: true, value: ([, c]) => String(c.held ?? 0) },
        { label: 'Kept: restricted', num: true, value: ([, c]) => String(c.restricted ?? 0) },
      ], Object.entries(preview.classes)));
  }

  async function loadHolds() {
    const { items } = await api.get('/v1/legal-holds');
    const scope = field('Scope', { name: 'scope' }, { control: 'select', options: [['tenant', 'whole tenant'], ['call', 'one call'], ['phone_number', 'one phone number']] });
    const callId = field('Call id', { name: 'call_id' }, { hint: 'for scope "one call"' });
    const number = field('Phone number', { name: 'phone_number', type: 'tel', autocomplete: 'off' }, { hint: 'for scope "one phone number", any format' });
    const reason = field('Reason', { name: 'reason', required: true, maxlength: 500 });
    const ends = field('Ends (optional, UTC date)', { type: 'date', name: 'ends_at' });
    const holdStatus = h('div');
    const form = h('form', { class: 'stack', 'aria-labelledby': 'holds-h' }, scope.wrap, callId.wrap, number.wrap, reason.wrap, ends.wrap,
      h('div', {}, h('button', { type: 'submit', text: 'Place legal hold' })));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body = { scope: scope.input.value, reason: reason.input.value };
      if (body.scope === 'call') body.call_id = callId.input.value.trim();
      if (body.scope === 'phone_number') body.phone_number = number.input.value.trim();
      if (ends.input.value) body.ends_at = `${ends.input.value}T00:00:00Z`;
      try { await api.post('/v1/legal-holds', body); await loadHolds(); notice(status, 'ok', 'Legal hold placed.'); } catch (err) {
        showProblem(err, { scope, call_id: callId, phone_number: number, reason, ends_at: ends }, holdStatus);
      }
    });
    holdsBox.replaceChildren(table('Legal holds', [
      { label: 'Scope', value: (x) => x.scope },
      { label: 'Applies to', value: (x) => x.call_id || x.phone_number || 'all data' },
      { label: 'Reason', value: (x) => x.reason },
      { label: 'Placed', value: (x) => fmtTime(x.created_at) },
      { label: 'Ends', value: (x) => fmtTime(x.ends_at) },
      { label: 'Released', value: (x) => fmtTime(x.released_at) },
      { label: 'Actions', value: (x) => (x.released_at ? '' : h('button', { type: 'button', text: 'Release', 'aria-label': `Release hold: ${x.reason}`,
        onclick: async () => { await api.del(`/v1/legal-holds/${x.id}`); await loadHolds(); notice(status, 'ok', 'Legal hold released.'); } })) },
    ], items, { empty: 'none' }), holdStatus, form);
  }
  await Promise.all([loadPolicy(), loadPreview(), loadHolds()]);
}

export async function subjectsPage(view, api) {
  view.append(h('h1', { text: 'Data subjects' }),
    h('p', { class: 'hint', text: 'Requests from a person about their data, found by phone number (any format: +44 20 7183 8750, 020 7183 8750 with your default region, …). Each request gets a receipt in your transparency log.' }));
  const status = h('div'), results = h('div'), listBox = h('div');
  const number = field('Phone number', { type: 'tel', name: 'phone_number', autocomplete: 'off', required: true });
  const form = h('form', { class: 'row', 'aria-label': 'Find a data subject' }, number.wrap,
    h('button', { type: 'submit', class: 'primary', text: 'Search' }));
  view.append(form, status, results, h('h2', { text: 'Requests' }), listBox);
  const fields = { phone_number: number };

  async function loadRequests() {
    const { items } = await api.get('/v1/subjects/requests', { limit: 50 });
    listBox.replaceChildren(table('Data-subject requests', [
      { label: 'Received', value: (r) => fmtTime(r.received_at) },
      { label: 'Kind', value: (r) => r.kind },
      { label: 'Number', value: (r) => r.phone_number },
      { label: 'Status', value: (r) => r.status },
      { label: 'Due', value: (r) => fmtTime(r.due_at) },
      { label: 'Completed', value: (r) => fmtTime(r.completed_at) },
    ], items, { empty: 'none' }));
  }

  function actions(phone, found) {
    const confirm = field('Type the number again to confirm erasure', { type: 'tel', autocomplete: 'off' });
    const corrected = field('Corrected number', { type: 'tel', autocomplete: 'off', name: 'corrected_number' });
    const eraseButton = h('button', { type: 'submit', class: 'danger', text: 'Erase' });
    const eraseForm = h('form', { class: 'stack', 'aria-label': 'Erase this subject' }, confirm.wrap, h('div', {}, eraseButton));
    eraseForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      const digits = (x) => x.replace(/[^0-9+]/g, '');
      if (digits(confirm.input.value) !== digits(phone)) {
        confirm.error.textContent = 'The numbers differ: nothing was erased.';
        confirm.input.setAttribute('aria-invalid', 'true');
        confirm.input.focus();
        return;
      }
      try {
        const r = await api.post('/v1/subjects/erase', { phone_number: phone });
        results.replaceChildren(h('div', { class: 'notice ok', role: 'status' }, h('p', { text: 'Erased.' }), h('pre', { text: JSON.stringify(r.receipt || r, null, 2) })));
        await loadRequests();
      } catch (err) { notice(status, 'bad', err.message); }
    });
    const rectifyForm = h('form', { class: 'row', 'aria-label': 'Rectify this subject' }, corrected.wrap,
      h('button', { type: 'submit', text: 'Rectify' }));
    rectifyForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        await api.post('/v1/subjects/rectify', { phone_number: phone, corrected_number: corrected.input.value.trim() });
        notice(status, 'ok', 'Rectified.'); await loadRequests();
      } catch (err) { showProblem(err, { corrected_number: corrected }, status); }
    });
    return h('div', {},
      h('div', { class: 'actions' },
        h('button', { type: 'button', text: 'Export (download)', onclick: async () => {
          try {
            const response = await api.request('POST', '/v1/subjects/export', { json: { phone_number: phone }, raw: true });
            download('subject-export.json', await response.blob());
            notice(status, 'ok', 'Export downloaded.'); await loadRequests();
          } catch (err) { notice(status, 'bad', err.message); }
        } }),
        h('button', { type: 'button', text: 'Restrict processing', onclick: async () => {
          try { await api.post('/v1/subjects/restrict', { phone_number: phone }); notice(status, 'ok', 'Processing restricted.'); await loadRequests(); } catch (err) { notice(status, 'bad', err.message); }
        } }),
        h('button', { type: 'button', text: 'Lift restriction', onclick: async () => {
          try { await api.post('/v1/subjects/restrict', { phone_number: phone, lift: true }); notice(status, 'ok', 'Restriction lifted.'); await loadRequests(); } catch (err) { notice(status, 'bad', err.message); }
        } })),
      h('h3', { text: 'Rectify' }), rectifyForm,
      h('h3', { text: 'Erase' }), found ? eraseForm : h('p', { class: 'hint', text: 'Nothing to erase.' }));
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    status.textContent = '';
    const phone = number.input.value.trim();
    try {
      const r = await api.post('/v1/subjects/search', { phone_number: phone });
      const calls = r.calls || [];
      results.replaceChildren(h('h2', { text: `Found ${calls.length} call${calls.length === 1 ? '' : 's'}` }),
        table('Calls with this number', [
          { label: 'Call', value: (c) => h('a', { href: `#/calls/${c.id}`, text: fmtTime(c.started_at || c.created_at) }) },
          { label: 'As', value: (c) => (c.matched_as || []).join(', ') },
          { label: 'From', value: (c) => c.from }, { label: 'To', value: (c) => c.to },
          { label: 'Restricted', value: (c) => (c.restricted_at ? fmtTime(c.restricted_at) : 'no') },
          { label: 'Legal hold', value: (c) => (c.legal_hold ? 'yes' : 'no') },
        ], calls, { empty: 'none' }), actions(phone, calls.length > 0));
      await loadRequests();
    } catch (err) { showProblem(err, fields, status); }
  });
  await loadRequests();
}

export async function keysPage(view, api, args, current) {
  view.append(h('h1', { text: 'Keys' }));
  const status = h('div'), box = h('div');
  view.append(status, box);
  async function load() {
    const k = await api.get('/v1/keys');
    const r = k.rotation;
    box.replaceChildren(facts([['Primary key version', String(k.primary_version)], ['Versions held', k.versions.join(', ')],
      ['Tenant root key file', k.tenant_root_key ? 'present' : 'absent']]),
    h('h2', { text: 'Rotation' }),
    r ? h('div', {}, facts([['State', r.state], ['To version', String(r.to_version)], ['Started', fmtTime(r.started_at)],
      ['Old versions destroyed after', fmtTime(r.grace_until)], ['Finished', fmtTime(r.finished_at)],
      ['Destroyed versions', (r.destroyed_versions || []).join(', ') || 'none']]),
    h('label', { for: 'rotation-progress', text: `Progress: ${r.progress.items_done} of ${r.progress.items_total} items (${r.progress.percent}%)` }),
    h('progress', { id: 'rotation-progress', max: 100, value: r.progress.percent }))
      : h('p', { class: 'hint', text: 'No rotation yet.' }),
    h('button', { type: 'button', class: 'primary', text: 'Rotate keys', onclick: async () => {
      try { await api.post('/v1/keys/rotate'); notice(status, 'ok', 'Rotation started.'); await load(); } catch (err) { notice(status, 'bad', err.message); }
    } }));
    if (r && !r.finished_at && current()) setTimeout(() => { if (current()) load().catch(() => {}); }, 2000);
  }
  await load();
}
