// Verifying the transparency log in the browser, trusting nothing the server says:
// RFC 9162 §2.1 Merkle trees (SHA-256), C2SP signed notes and checkpoints (Ed25519), with
// WebCrypto only. Formats: docs/transparency.md. Every check returns or throws a
// VerificationError whose message says which property failed, in words a tenant can act on.

export class VerificationError extends Error {}

const enc = new TextEncoder();

export function b64decode(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i += 1) out[i] = bin.charCodeAt(i);
  return out;
}

export function b64encode(bytes) {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

export function equal(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i += 1) diff |= a[i] ^ b[i];
  return diff === 0;
}

// RFC 9162 §2.1.1: leaf = H(0x00 || entry), node = H(0x01 || left || right).
export const leafHash = (entry) => sha256(concat(Uint8Array.of(0), entry));
export const nodeHash = (left, right) => sha256(concat(Uint8Array.of(1), left, right));

const lsb = (n) => n % 2 === 1;
const half = (n) => Math.floor(n / 2);

// MTH over leaf hashes, streaming: a stack of complete subtrees (sizes are powers of two,
// strictly decreasing), then the right edge folded in. O(log n) memory.
export class RootBuilder {
  constructor() { this.stack = []; this.size = 0; }
  async add(leaf) {
    let node = { size: 1, hash: leaf };
    while (this.stack.length && this.stack[this.stack.length - 1].size === node.size) {
      const left = this.stack.pop();
      node = { size: left.size * 2, hash: await nodeHash(left.hash, node.hash) };
    }
    this.stack.push(node);
    this.size += 1;
  }
  async root() {
    if (!this.stack.length) return sha256(new Uint8Array(0));
    let hash = this.stack[this.stack.length - 1].hash;
    for (let i = this.stack.length - 2; i >= 0; i -= 1) hash = await nodeHash(this.stack[i].hash, hash);
    return hash;
  }
}

// RFC 9162 §2.1.3.2.
export async function verifyInclusion(index, size, leaf, proof, root) {
  if (index >= size) return false;
  let fn = index, sn = size - 1, r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (lsb(fn) || fn === sn) {
      r = await nodeHash(p, r);
      if (!lsb(fn)) { while (!lsb(fn) && fn !== 0) { fn = half(fn); sn = half(sn); } }
    } else {
      r = await nodeHash(r, p);
    }
    fn = half(fn); sn = half(sn);
  }
  return sn === 0 && equal(r, root);
}

// RFC 9162 §2.1.4.2 (plus: equal sizes need equal roots; from size 0 anything extends).
export async function verifyConsistency(first, second, firstRoot, secondRoot, proof) {
  if (first > second) return false;
  if (first === second) return proof.length === 0 && equal(firstRoot, secondRoot);
  if (first === 0) return proof.length === 0;
  if (!proof.length) return false;
  const path = Number.isInteger(Math.log2(first)) ? [firstRoot, ...proof] : [...proof];
  let fn = first - 1, sn = second - 1;
  while (lsb(fn)) { fn = half(fn); sn = half(sn); }
  let fr = path[0], sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (lsb(fn) || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if (!lsb(fn)) { while (!lsb(fn) && fn !== 0) { fn = half(fn); sn = half(sn); } }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn = half(fn); sn = half(sn);
  }
  return sn === 0 && equal(fr, firstRoot) && equal(sr, secondRoot);
}

// Verifier key: "<name>+<8 hex key hash>+<base64(0x01 || 32-byte Ed25519 key)>".
export async function parseVerifierKey(vkey) {
  const first = vkey.indexOf('+');
  const second = vkey.indexOf('+', first + 1);
  if (first <= 0 || second < 0) throw new VerificationError('the verifier key is malformed');
  const name = vkey.slice(0, first), keyHashHex = vkey.slice(first + 1, second);
  const raw = b64decode(vkey.slice(second + 1));
  if (raw.length !== 33 || raw[0] !== 1) throw new VerificationError('the verifier key is not an Ed25519 key');
  const computed = (await sha256(concat(enc.encode(name), Uint8Array.of(0x0a), raw))).slice(0, 4);
  if (hex(computed) !== keyHashHex) throw new VerificationError('the verifier key is corrupt (key hash mismatch)');
  return { name, keyHash: computed, publicKey: raw.slice(1) };
}

// A short, stable fingerprint people can compare by eye: SHA-256 of the raw key, 16 bytes.
export async function fingerprint(publicKey) {
  return hex((await sha256(publicKey)).slice(0, 16)).match(/.{4}/g).join(':');
}

// C2SP signed-note with the one pinned key; returns the checkpoint {origin, size, root}.
export async function verifyCheckpointNote(note, key) {
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw new VerificationError('the checkpoint is malformed');
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2, -1).split('\n');
  let publicKey;
  try {
    publicKey = await crypto.subtle.importKey('raw', key.publicKey, { name: 'Ed25519' }, false, ['verify']);
  } catch {
    throw new VerificationError('this browser cannot check Ed25519 signatures (WebCrypto)');
  }
  let verified = false;
  for (const line of lines) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new VerificationError('the checkpoint has a malformed signature line');
    if (m[1] !== key.name) continue;
    const raw = b64decode(m[2]);
    if (!equal(raw.slice(0, 4), key.keyHash)) continue;
    const ok = raw.length === 68 && await crypto.subtle.verify({ name: 'Ed25519' }, publicKey, raw.slice(4), enc.encode(text));
    if (!ok) throw new VerificationError('the checkpoint signature does not verify with the pinned key (a bad signature)');
    verified = true;
  }
  if (!verified) throw new VerificationError('the checkpoint is not signed by the pinned key');
  const [origin, sizeText, rootText] = text.slice(0, -1).split('\n');
  if (origin !== key.name) throw new VerificationError('the checkpoint is for another log (origin differs)');
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText)) throw new VerificationError('the checkpoint size is malformed');
  const root = b64decode(rootText);
  if (root.length !== 32) throw new VerificationError('the checkpoint root is malformed');
  return { origin, size: Number(sizeText), root };
}
