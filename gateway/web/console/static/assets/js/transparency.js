// Transparency: the tenant's log, newest first, verified here with WebCrypto.
// What is trusted: only the verifier key pinned in this browser on first use, and the last
// checkpoint this browser verified (both in localStorage, per tenant). What is checked:
//   1. the checkpoint's Ed25519 signature against the pinned key (a changed key is an alarm);
//   2. a consistency proof from the last verified checkpoint to this one (no fork, no
//      rewritten history);
//   3. every entry up to the checkpoint hashes to its signed root (no rewritten entry), for
//      logs up to FULL_CHECK_LIMIT entries; above that, each entry the user opens;
//   4. the inclusion proof of each entry the user opens.
// The server's own claims (its "root", "leaf_hash" and "size" fields) are never used.
import { facts, fmtTime, h, notice } from './dom.js';
import { RootBuilder, VerificationError, b64decode, b64encode, equal, fingerprint, leafHash,
  parseVerifierKey, verifyCheckpointNote, verifyConsistency, verifyInclusion } from './verify.js';

const PAGE = 1000;            // the API's largest entries page (MAX_ENTRIES_PAGE)
const FULL_CHECK_LIMIT = 20000; // 20 pages of ~500 B entries: about 10 MB, once per visit
const SHOWN = 25;

const pinKey = (tenant) => `vgw.transparency.${tenant}.pinned_key`;
const lastKey = (tenant) => `vgw.transparency.${tenant}.last_verified`;

function describe(entry) {
  const e = entry.entry;
  const actor = e.actor ? `${e.actor.type} ${e.actor.id}${e.actor.employer ? ` (${e.actor.employer}, ${e.actor.country})` : ''}` : '–';
  const calls = e.scope && e.scope.calls ? e.scope.calls.join(', ') : (e.scope && e.scope.window ? `window ${fmtTime(e.scope.window.since)} – ${fmtTime(e.scope.window.until)}` : '–');
  const what = [e.kind, e.purpose, e.details && e.details.endpoint].filter(Boolean).join(' · ');
  return { actor, calls, what, when: fmtTime(e.time), outcome: e.outcome || '–' };
}

export async function transparencyPage(view, api) {
  const tenant = api.session.tenant_id;
  view.append(h('h1', { text: 'Transparency' }),
    h('p', { class: 'hint', text: 'Every access to your data by operator staff, every decision, deletion and key event, in a log this browser verifies itself. Reading the log is logged too.' }));
  const verdict = h('div', { role: 'status', 'aria-live': 'polite' });
  const keyBox = h('div');
  const entriesBox = h('div');
  const detail = h('div', { 'aria-live': 'polite' });
  view.append(verdict, keyBox,
    h('div', { class: 'actions' },
      h('button', { type: 'button', text: 'Verify again', onclick: () => run() }),
      h('button', { type: 'button', text: 'Forget pinned key and verified checkpoint', onclick: () => {
        if (window.confirm('Forget the pinned key? The next visit pins whatever key the server shows.')) {
          localStorage.removeItem(pinKey(tenant)); localStorage.removeItem(lastKey(tenant)); run();
        }
      } })),
    h('h2', { text: 'Entries, newest first' }), entriesBox, detail);

  let state = null; // {checkpoint, entries: [{seq, data, leaf, entry}], complete}

  function fail(reason) {
    verdict.replaceChildren(h('div', { class: 'notice bad' },
      h('p', { class: 'verdict', text: 'Verification failed' }), h('p', { text: reason })));
  }

  async function pinnedKey() {
    const served = await api.get('/v1/transparency/public-key');
    let pinned = localStorage.getItem(pinKey(tenant));
    let firstUse = false;
    if (!pinned) { localStorage.setItem(pinKey(tenant), served.verifier_key); pinned = served.verifier_key; firstUse = true; }
    const key = await parseVerifierKey(pinned);
    const fp = await fingerprint(key.publicKey);
    keyBox.replaceChildren(facts([['Log', h('code', { text: key.name })],
      ['Pinned key fingerprint', h('code', { text: fp })],
      ['Pinned', firstUse ? 'just now (first use in this browser): compare the fingerprint with the one your operator gave you' : 'earlier, in this browser']]));
    if (served.verifier_key !== pinned) {
      throw new VerificationError(`the log's signing key changed: the server now presents ${served.verifier_key.split('+')[1]}, this browser pinned ${pinned.split('+')[1]}. Treat this as an alarm.`);
    }
    return key;
  }

  async function run() {
    verdict.replaceChildren(h('p', { text: 'Verifying…' }));
    detail.replaceChildren();
    try {
      const key = await pinnedKey();
      const cp = await api.get('/v1/transparency/checkpoint');
      const checkpoint = await verifyCheckpointNote(cp.note, key);
      // 2. consistency with what this browser verified before.
      const last = JSON.parse(localStorage.getItem(lastKey(tenant)) || 'null');
      if (last) {
        const lastRoot = b64decode(last.root);
        if (last.size > checkpoint.size) throw new VerificationError(`the log shrank: this browser verified ${last.size} entries before, the signed checkpoint has ${checkpoint.size}`);
        let ok;
        if (last.size === checkpoint.size) ok = equal(lastRoot, checkpoint.root);
        else {
          const proof = await api.get('/v1/transparency/proofs/consistency', { old: last.size, new: checkpoint.size });
          ok = await verifyConsistency(last.size, checkpoint.size, lastRoot, checkpoint.root, proof.proof.map(b64decode));
        }
        if (!ok) throw new VerificationError(`the log is not consistent with the checkpoint this browser verified at size ${last.size} (a fork, or rewritten history)`);
      }
      // 3. entries: fetch, hash here, and recompute the signed root.
      const complete = checkpoint.size <= FULL_CHECK_LIMIT;
      const from = complete ? 0 : Math.max(0, checkpoint.size - SHOWN);
      const builder = new RootBuilder();
      const entries = [];
      for (let start = from; start < checkpoint.size; start += PAGE) {
        const page = await api.get('/v1/transparency/entries', { start, end: Math.min(checkpoint.size, start + PAGE) });
        for (const item of page.entries) {
          // An entry expired by audit retention has no bytes: its leaf hash stands in for it
          // in the tree (the signed root still checks it; its content is gone).
          const expired = item.state === 'expired';
          const data = expired ? null : b64decode(item.data);
          const leaf = expired ? b64decode(item.leaf_hash) : await leafHash(data);
          const entry = expired ? { seq: item.seq, kind: 'expired (retention)', actor: null, time: null } : JSON.parse(new TextDecoder().decode(data));
          if (entry.seq !== item.seq || item.seq !== from + entries.length) throw new VerificationError(`entry ${from + entries.length} is out of sequence (a removed or reordered entry)`);
          entries.push({ seq: item.seq, data, leaf, entry: { ...item, entry } });
          if (complete) await builder.add(leaf);
        }
      }
      if (entries.length !== checkpoint.size - from) throw new VerificationError(`the server returned ${entries.length} entries where the checkpoint commits to ${checkpoint.size - from} (withheld entries)`);
      state = { checkpoint, entries, complete };
      renderEntries(0);
      if (complete && !equal(await builder.root(), checkpoint.root)) {
        throw new VerificationError(`the entries do not hash to the signed root of size ${checkpoint.size}: an entry was rewritten after it was logged (open entries to find which)`);
      }
      localStorage.setItem(lastKey(tenant), JSON.stringify({ size: checkpoint.size, root: b64encode(checkpoint.root) }));
      verdict.replaceChildren(h('div', { class: 'notice ok' },
        h('p', { class: 'verdict', text: `Verified: tree size ${checkpoint.size}` }),
        h('p', { text: complete
          ? `Signature by the pinned key, consistency with the last checkpoint this browser verified${last ? ` (size ${last.size})` : ' (none before: this is the first)'}, and all ${checkpoint.size} entries against the signed root.`
          : `Signature and consistency verified; the log is large, so entries are verified one by one as you open them.` })));
    } catch (err) {
      if (err.status === 401) throw err;
      fail(err instanceof VerificationError ? err.message : `could not complete the checks (${err.message})`);
    }
  }

  function renderEntries(offset) {
    const newest = state.entries.slice().reverse().slice(offset, offset + SHOWN);
    entriesBox.replaceChildren(h('table', {}, h('caption', { text: `Entries ${offset + 1}–${offset + newest.length} of ${state.entries.length}, newest first` }),
      h('thead', {}, h('tr', {}, ['#', 'When', 'Who', 'What', 'Calls', 'Outcome', ''].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, newest.map((item) => {
        const d = describe(item.entry);
        return h('tr', {}, h('td', { class: 'num', text: String(item.seq) }), h('td', { text: d.when }), h('td', { text: d.actor }),
          h('td', { text: d.what }), h('td', { class: 'mono', text: d.calls }), h('td', { text: d.outcome }),
          h('td', {}, h('button', { type: 'button', text: 'Open', 'aria-label': `Open entry ${item.seq}`, onclick: () => openEntry(item) })));
      }))),
    h('div', { class: 'actions' },
      h('button', { type: 'button', text: 'Newer', disabled: offset === 0, onclick: () => renderEntries(Math.max(0, offset - SHOWN)) }),
      h('button', { type: 'button', text: 'Older', disabled: offset + SHOWN >= state.entries.length, onclick: () => renderEntries(offset + SHOWN) })));
  }

  // 4. The inclusion proof of an opened entry, against the verified signed root.
  async function openEntry(item) {
    const { checkpoint } = state;
    const result = h('div', { role: 'status' }, h('p', { text: 'Checking inclusion…' }));
    detail.replaceChildren(h('h2', { text: `Entry ${item.seq}` }), result, h('pre', { text: JSON.stringify(item.entry.entry, null, 2) }));
    try {
      const proof = await api.get('/v1/transparency/proofs/inclusion', { index: item.seq, size: checkpoint.size });
      const ok = await verifyInclusion(item.seq, checkpoint.size, item.leaf, proof.proof.map(b64decode), checkpoint.root);
      if (!ok) throw new VerificationError(`entry ${item.seq} is not in the signed tree of size ${checkpoint.size}: it was rewritten after it was logged`);
      result.replaceChildren(h('div', { class: 'notice ok' }, h('p', { class: 'verdict', text: `Verified: entry ${item.seq} is included in tree size ${checkpoint.size}` })));
    } catch (err) {
      result.replaceChildren(h('div', { class: 'notice bad' }, h('p', { class: 'verdict', text: 'Verification failed' }),
        h('p', { text: err instanceof VerificationError ? err.message : `could not check inclusion (${err.message})` })));
      if (err instanceof VerificationError) fail(err.message);
    }
    detail.querySelector('h2').scrollIntoView({ block: 'nearest' });
  }

  await run();
}
