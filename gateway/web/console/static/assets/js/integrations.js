// Integrations: connect a platform (the fields its adapter's validate_credentials takes;
// the API validates and its 422 is shown at the field), the webhook URL with a copy
// button, the platform's own setup snippet, and ingest tokens (shown once).
import { copyButton, field, fmtTime, h, notice, showProblem, table } from './dom.js';

// platform -> [credential name, label, {type, required, hint}]; mirrors adapters/*.py.
const PLATFORMS = {
  twilio: [['account_sid', 'Account SID', { required: true, hint: 'AC followed by 32 hex digits' }],
    ['auth_token', 'Auth token', { required: true, type: 'password' }]],
  telnyx: [['public_key', 'Public key', { required: true, hint: 'base64 Ed25519 key from the Telnyx portal' }],
    ['api_key', 'API key (optional)', { type: 'password', hint: 'only to download recordings' }]],
  vonage: [['application_id', 'Application id', { required: true, hint: 'a UUID' }],
    ['private_key', 'Private key (PEM)', { required: true, control: 'textarea' }],
    ['signature_secret', 'Signature secret', { required: true, type: 'password' }]],
  whatsapp: [['app_secret', 'App secret', { required: true, type: 'password' }],
    ['verify_token', 'Verify token', { required: true }],
    ['access_token', 'Access token', { required: true, type: 'password' }],
    ['phone_number_id', 'Phone number id', { required: true }]],
  standard: [['secret', 'Signing secret', { required: true, type: 'password', hint: 'whsec_… (Standard Webhooks)' }]],
};

function mediaUrl(integration) {
  return integration.webhook_url.replace(/^http/, 'ws').replace('/v1/hooks/', '/v1/media/');
}
function whipUrl(integration) {
  return integration.webhook_url.replace(`/v1/hooks/${integration.platform}/`, '/v1/whip/');
}

function snippet(integration) {
  const media = mediaUrl(integration);
  switch (integration.platform) {
    case 'twilio':
      return ['TwiML <Stream> (start before <Dial>)',
        `<Response>\n  <Start>\n    <Stream url="${media}" track="both_tracks"/>\n  </Start>\n  <Dial>…</Dial>\n</Response>`];
    case 'vonage':
      return ['Vonage NCCO (websocket connect)', JSON.stringify([{ action: 'connect', endpoint: [
        { type: 'websocket', uri: media, 'content-type': 'audio/l16;rate=16000' }] }], null, 2)];
    case 'telnyx':
      return ['Telnyx stream_url (append an ingest token)', `${media}?token=<ingest token>`];
    default:
      return ['WHIP URL (bearer: an ingest token)', whipUrl(integration)];
  }
}

export async function integrationsPage(view, api) {
  view.append(h('h1', { text: 'Integrations' }));
  const listBox = h('div');
  view.append(listBox);

  async function refresh() {
    const { items } = await api.get('/v1/integrations');
    listBox.replaceChildren(...(items.length ? items.map(card) : [h('p', { class: 'hint', text: 'No integrations yet.' })]));
  }

  function card(integration) {
    const label = integration.name || integration.platform;
    const [snippetTitle, snippetText] = snippet(integration);
    const tokens = h('div');
    const shown = h('div');
    async function loadTokens() {
      const { items } = await api.get(`/v1/integrations/${integration.id}/ingest-tokens`);
      tokens.replaceChildren(table(`Ingest tokens of ${label}`, [
        { label: 'Token id', value: (t) => h('code', { text: t.id }) },
        { label: 'Created', value: (t) => fmtTime(t.created_at) },
        { label: 'Revoked', value: (t) => fmtTime(t.revoked_at) },
        { label: 'Actions', value: (t) => (t.revoked_at ? '' : h('button', { type: 'button', text: 'Revoke',
          'aria-label': `Revoke ingest token ${t.id}`, onclick: async () => {
            await api.del(`/v1/integrations/${integration.id}/ingest-tokens/${t.id}`); loadTokens();
          } })) },
      ], items, { empty: 'none' }));
    }
    const el = h('section', { class: 'card', 'aria-label': `Integration ${label}` },
      h('h2', { text: `${label} (${integration.platform})` }),
      h('p', {}, 'Webhook URL: ', h('code', { text: integration.webhook_url }), ' ',
        copyButton(`Copy webhook URL of ${label}`, () => integration.webhook_url)),
      h('h3', { text: snippetTitle }), h('pre', { text: snippetText }),
      copyButton(`Copy setup snippet of ${label}`, () => snippetText),
      h('h3', { text: 'Ingest tokens' }), tokens, shown,
      h('div', { class: 'actions' },
        h('button', { type: 'button', text: `Create ingest token for ${label}`, onclick: async () => {
          const token = await api.post(`/v1/integrations/${integration.id}/ingest-tokens`);
          shown.replaceChildren(h('p', { role: 'status', text: 'New ingest token (shown once; store it now):' }),
            h('code', { class: 'secret', text: token.token }), copyButton('Copy ingest token', () => token.token));
          loadTokens();
        } }),
        h('button', { type: 'button', class: 'danger', text: `Disable ${label}`, onclick: async () => {
          await api.del(`/v1/integrations/${integration.id}`); refresh();
        } })));
    loadTokens().catch((err) => notice(tokens, 'bad', err.message));
    return el;
  }

  // The connect form: its credential fields follow the chosen platform.
  const status = h('div');
  const platform = field('Platform', { name: 'platform' }, { control: 'select', options: Object.keys(PLATFORMS).map((p) => [p]) });
  const name = field('Name (optional)', { name: 'name', maxlength: 100 });
  const credBox = h('fieldset', { class: 'stack' }, h('legend', { text: 'Credentials' }));
  let credFields = {};
  function renderCredentials() {
    credBox.replaceChildren(h('legend', { text: `Credentials for ${platform.input.value}` }));
    credFields = {};
    for (const [key, label, opts] of PLATFORMS[platform.input.value]) {
      const f = field(label, { name: key, type: opts.type || 'text', required: !!opts.required, autocomplete: 'off' },
        { hint: opts.hint, control: opts.control || 'input' });
      credFields[key] = f;
      credBox.append(f.wrap);
    }
  }
  platform.input.addEventListener('change', renderCredentials);
  renderCredentials();
  const form = h('form', { class: 'stack', 'aria-labelledby': 'connect-h' }, platform.wrap, name.wrap, credBox,
    h('div', {}, h('button', { type: 'submit', class: 'primary', text: 'Connect' })));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const credentials = {};
    for (const [key, f] of Object.entries(credFields)) if (f.input.value.trim()) credentials[key] = f.input.value.trim();
    try {
      await api.post('/v1/integrations', { platform: platform.input.value, name: name.input.value.trim() || undefined, credentials });
      for (const f of Object.values(credFields)) f.input.value = '';
      notice(status, 'ok', 'Connected.');
      await refresh();
    } catch (err) {
      showProblem(err, { ...credFields, name, platform }, status);
    }
  });
  view.append(h('h2', { id: 'connect-h', text: 'Connect a platform' }), status, form);
  await refresh();
}
