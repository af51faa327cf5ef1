// The console's only door to the gateway: the public API plus the session endpoints.
// Invariants: the API key / staff token is sent once, to the sign-in endpoint, and kept
// nowhere (not in localStorage, not in memory after the request); the session lives in an
// HttpOnly cookie the page cannot read; every state-changing request carries the CSRF
// token, which lives only in this module's memory and is fetched again on page load.

export class ApiError extends Error {
  constructor(status, problem) {
    const text = problem && (problem.detail || problem.title);
    super(text ? `${problem.title || 'Error'}${problem.detail ? `: ${problem.detail}` : ''}` : `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

export class Api {
  constructor(sessionPath) {
    this.sessionPath = sessionPath;
    this.csrf = null;
    this.session = null;
    this.onSignedOut = () => {};
  }

  async restore() {
    const response = await fetch(this.sessionPath, { credentials: 'same-origin', cache: 'no-store' });
    if (!response.ok) { this.session = null; this.csrf = null; return null; }
    return this._remember(await response.json());
  }

  async signIn(body) {
    const response = await fetch(this.sessionPath, {
      method: 'POST', credentials: 'same-origin', cache: 'no-store',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    return this._remember(await response.json());
  }

  async signOut() {
    await fetch(this.sessionPath, { method: 'DELETE', credentials: 'same-origin',
      headers: this.csrf ? { 'X-CSRF-Token': this.csrf } : {} });
    this.session = null;
    this.csrf = null;
  }

  _remember(session) {
    this.session = session;
    this.csrf = session.csrf_token;
    return session;
  }

  // JSON in, JSON out (or the Response itself with {raw: true}); problems become ApiError.
  async request(method, path, { json, query, raw = false } = {}) {
    const url = new URL(path, window.location.origin);
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
    }
    const headers = { Accept: 'application/json' };
    if (!SAFE.has(method) && this.csrf) headers['X-CSRF-Token'] = this.csrf;
    if (json !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(url, { method, headers, credentials: 'same-origin', cache: 'no-store',
      body: json !== undefined ? JSON.stringify(json) : undefined });
    if (response.status === 401) {
      this.session = null;
      this.onSignedOut();
      throw new ApiError(401, await problemOf(response));
    }
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    if (raw) return response;
    if (response.status === 204) return null;
    const type = response.headers.get('Content-Type') || '';
    return type.includes('json') ? response.json() : response.text();
  }

  get(path, query) { return this.request('GET', path, { query }); }
  post(path, json) { return this.request('POST', path, { json }); }
  put(path, json) { return this.request('PUT', path, { json }); }
  del(path) { return this.request('DELETE', path); }
}

async function problemOf(response) {
  try { return await response.json(); } catch { return { title: `HTTP ${response.status}` }; }
}
