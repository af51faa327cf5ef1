// Calls: an overview (calls per day, outcomes per platform), the filtered and paged list,
// and one call's page (parties, event timeline, recordings with a player and levels).
import { barChart, lineChart } from './charts.js';
import { facts, field, fmtBytes, fmtDuration, fmtTime, h, notice, table } from './dom.js';

const STATUSES = ['queued', 'ringing', 'in-progress', 'completed', 'busy', 'failed', 'no-answer', 'canceled'];
const OVERVIEW_DAYS = 14;
// The overview reads at most this many calls (5 pages of 200); beyond that it says so.
const OVERVIEW_MAX_CALLS = 1000;

function dayKey(iso) { return (iso || '').slice(0, 10); }

async function overview(api, view) {
  const since = new Date(Date.now() - (OVERVIEW_DAYS - 1) * 86400000);
  since.setUTCHours(0, 0, 0, 0);
  const calls = [];
  let cursor = null;
  do {
    const page = await api.get('/v1/calls', { since: since.toISOString(), limit: 200, cursor });
    calls.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && calls.length < OVERVIEW_MAX_CALLS);
  const days = [];
  for (let i = 0; i < OVERVIEW_DAYS; i += 1) days.push(new Date(since.getTime() + i * 86400000).toISOString().slice(0, 10));
  const perDay = days.map((d) => calls.filter((c) => dayKey(c.started_at || c.created_at) === d).length);
  const platforms = [...new Set(calls.map((c) => c.platform))].sort();
  const outcomes = [...new Set(calls.map((c) => c.status || 'unknown'))].sort();
  const section = h('section', { 'aria-labelledby': 'overview-h' }, h('h2', { id: 'overview-h', text: 'Overview' }));
  section.append(h('div', { class: 'cards' },
    barChart(`Calls per day (last ${OVERVIEW_DAYS} days, UTC)`, days.map((d) => d.slice(5)), [{ name: 'calls', values: perDay }],
      `${calls.length} calls in total${cursor ? ' (first 1000 shown)' : ''}.`),
    barChart('Delivered call outcomes per platform', platforms,
      outcomes.map((o) => ({ name: o, values: platforms.map((p) => calls.filter((c) => c.platform === p && (c.status || 'unknown') === o).length) })),
      `${platforms.length} platforms, ${outcomes.length} outcomes.`)));
  view.append(section);
}

export async function callsPage(view, api, args, current) {
  if (args[0]) return callPage(view, api, args[0]);
  view.append(h('h1', { text: 'Calls' }));
  const overviewBox = h('div');
  view.append(overviewBox);
  overview(api, overviewBox).catch((err) => notice(overviewBox, 'bad', `Overview unavailable: ${err.message}`));

  const status = field('Status', {}, { control: 'select', options: [['', 'any'], ...STATUSES.map((x) => [x])] });
  const since = field('From (UTC date)', { type: 'date' });
  const until = field('Until (UTC date, exclusive)', { type: 'date' });
  const form = h('form', { class: 'row', 'aria-label': 'Filter calls' }, status.wrap, since.wrap, until.wrap,
    h('button', { type: 'submit', text: 'Apply filters' }));
  const results = h('div', { 'aria-live': 'polite' });
  const msg = h('div');
  view.append(h('h2', { text: 'All calls' }), form, msg, results);
  const cursors = [null];

  async function load() {
    const query = { limit: 25, status: status.input.value, cursor: cursors[cursors.length - 1] };
    if (since.input.value) query.since = `${since.input.value}T00:00:00Z`;
    if (until.input.value) query.until = `${until.input.value}T00:00:00Z`;
    let page;
    try { page = await api.get('/v1/calls', query); } catch (err) { notice(msg, 'bad', err.message); return; }
    if (!current()) return;
    msg.textContent = '';
    results.replaceChildren(table(`Calls, page ${cursors.length}`, [
      { label: 'Started', value: (c) => h('a', { href: `#/calls/${c.id}`, text: fmtTime(c.started_at || c.created_at) }) },
      { label: 'Status', value: (c) => c.status },
      { label: 'Direction', value: (c) => c.direction },
      { label: 'From', value: (c) => c.from },
      { label: 'To', value: (c) => c.to },
      { label: 'Duration', num: true, value: (c) => fmtDuration(c.duration_seconds) },
      { label: 'Platform', value: (c) => c.platform },
    ], page.items, { empty: 'no calls match' }),
    h('div', { class: 'actions' },
      h('button', { type: 'button', text: 'Previous page', disabled: cursors.length === 1,
        onclick: () => { cursors.pop(); load(); } }),
      h('button', { type: 'button', text: 'Next page', disabled: !page.next_cursor,
        onclick: () => { cursors.push(page.next_cursor); load(); } })));
  }
  form.addEventListener('submit', (e) => { e.preventDefault(); cursors.length = 1; load(); });
  await load();
}

async function callPage(view, api, callId) {
  const call = await api.get(`/v1/calls/${encodeURIComponent(callId)}`);
  view.append(h('p', {}, h('a', { href: '#/calls', text: '← All calls' })),
    h('h1', { text: `Call ${call.platform_call_id || call.id}` }),
    facts([['Status', call.status], ['Direction', call.direction], ['From', call.from], ['To', call.to],
      ['Started', fmtTime(call.started_at)], ['Ended', fmtTime(call.ended_at)],
      ['Duration', fmtDuration(call.duration_seconds)], ['Platform', call.platform],
      ['Integration', h('code', { text: call.integration_id })], ['Call id', h('code', { text: call.id })]]));
  view.append(h('h2', { text: 'Event timeline' }));
  view.append(call.events.length
    ? h('ol', { class: 'timeline' }, call.events.map((e) => h('li', {},
      h('strong', { text: `${e.kind}${e.status ? `: ${e.status}` : ''}` }),
      ` — occurred ${fmtTime(e.occurred_at)}, received ${fmtTime(e.received_at)}`)))
    : h('p', { class: 'hint', text: 'No events.' }));
  view.append(h('h2', { text: 'Recordings' }));
  if (!call.recordings.length) view.append(h('p', { class: 'hint', text: 'No recordings.' }));
  let n = 0;
  for (const rec of call.recordings) {
    n += 1;
    const meta = await api.get(`/v1/recordings/${rec.id}`);
    const levels = h('div');
    const card = h('section', { class: 'card', 'aria-label': `Recording ${n}` },
      h('h3', { text: `Recording ${n}` }),
      // preload=metadata and a plain src: the browser streams with Range requests.
      h('audio', { controls: true, preload: 'metadata', src: meta.audio_url, 'aria-label': `Recording ${n} player` }),
      facts([['State', meta.state], ['Source', rec.source], ['Format', meta.content_type],
        ['Size', fmtBytes(meta.length)], ['Stored', fmtTime(rec.created_at)]]),
      h('button', { type: 'button', text: `Plot level envelope of recording ${n}`,
        onclick: (e) => { e.target.disabled = true; plotLevels(meta, levels).finally(() => { e.target.disabled = false; }); } }),
      levels);
    view.append(card);
  }
}

// The level envelope is computed here, from the decoded audio, one RMS value per second
// per channel (dBFS): the tenant API serves the audio, not the gateway's internal stats.
async function plotLevels(meta, box) {
  notice(box, 'status', 'Decoding the recording…');
  try {
    const response = await fetch(meta.audio_url, { credentials: 'same-origin' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const ctx = new OfflineAudioContext(1, 1, 8000);
    const audio = await ctx.decodeAudioData(await response.arrayBuffer());
    const per = Math.max(1, Math.round(audio.sampleRate));
    const series = [];
    for (let c = 0; c < audio.numberOfChannels; c += 1) {
      const data = audio.getChannelData(c);
      const points = [];
      for (let start = 0, sec = 0; start < data.length; start += per, sec += 1) {
        let sum = 0;
        const end = Math.min(data.length, start + per);
        for (let i = start; i < end; i += 1) sum += data[i] * data[i];
        const rms = Math.sqrt(sum / Math.max(1, end - start));
        points.push([sec, rms > 0 ? Math.max(-100, 20 * Math.log10(rms)) : -100]);
      }
      series.push({ name: audio.numberOfChannels === 2 ? ['channel 1 (left)', 'channel 2 (right)'][c] : `channel ${c + 1}`, points });
    }
    box.replaceChildren(lineChart('Level envelope (dBFS per second)', series, { yMin: -100, yMax: 0, xLabel: 's', yLabel: '' },
      `${audio.numberOfChannels} channels, ${Math.round(audio.duration)} seconds.`));
  } catch (err) {
    notice(box, 'bad', `Could not plot levels: ${err.message}`);
  }
}
