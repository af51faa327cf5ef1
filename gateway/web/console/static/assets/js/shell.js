// The frame both consoles share: sign-in form, navigation state, hash router, sign-out.
// Routes are "#/name/arg..."; any other hash (the skip link's "#main") is not a route.
import { Api } from './api.js';
import { clear, field, h, notice, showProblem } from './dom.js';

export function startConsole({ sessionPath, credential, credentialLabel, heading, routes, home }) {
  const api = new Api(sessionPath);
  const main = document.getElementById('main');
  const nav = document.getElementById('nav');
  const signOut = document.getElementById('sign-out');
  let renderToken = 0;

  function showSignIn(message) {
    nav.hidden = true;
    signOut.hidden = true;
    clear(main);
    const status = h('div');
    const key = field(credentialLabel, { type: 'password', name: credential, autocomplete: 'off',
      required: true, spellcheck: 'false' });
    const form = h('form', { class: 'stack', 'aria-labelledby': 'sign-in-heading' },
      key.wrap, h('div', {}, h('button', { type: 'submit', class: 'primary', text: 'Sign in' })));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const value = key.input.value.trim();
      key.input.value = '';
      try {
        await api.signIn({ [credential]: value });
        if (!location.hash.startsWith('#/')) location.hash = `#/${home}`;
        await route();
      } catch (err) {
        const text = err.status === 401 ? `That ${credentialLabel.toLowerCase()} was not accepted.` : err.message;
        showProblem({ ...err, message: text }, { [credential]: key }, status);
      }
    });
    main.append(h('h1', { id: 'sign-in-heading', text: heading }), status, form,
      h('p', { class: 'hint', text: `The ${credentialLabel.toLowerCase()} is exchanged for a short session and is not stored by this browser.` }));
    if (message) notice(status, 'warn', message);
    key.input.focus();
  }

  api.onSignedOut = () => showSignIn('Your session ended. Sign in again.');

  async function route() {
    const hash = location.hash.startsWith('#/') ? location.hash.slice(2) : home;
    const [name, ...args] = hash.split('/').map(decodeURIComponent);
    const page = routes[name] || routes[home];
    if (!api.session) { showSignIn(); return; }
    nav.hidden = false;
    signOut.hidden = false;
    for (const a of nav.querySelectorAll('a')) {
      if (a.getAttribute('href') === `#/${name}`) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const token = ++renderToken;
    const view = h('div');
    clear(main).append(view);
    try {
      await page(view, api, args, () => token === renderToken);
    } catch (err) {
      if (err.status === 401) return;
      if (token === renderToken) notice(view, 'bad', err.message || String(err));
    }
    const title = view.querySelector('h1');
    document.title = `${title ? title.textContent : 'Console'} – gateway console`;
  }

  signOut.addEventListener('click', async () => {
    await api.signOut();
    showSignIn('Signed out.');
  });
  window.addEventListener('hashchange', () => {
    if (location.hash.startsWith('#/')) { route().then(() => main.focus()); }
  });
  // A click on the page already shown reloads it (no hashchange fires for the same hash).
  nav.addEventListener('click', (event) => {
    const link = event.target.closest('a');
    if (link && link.getAttribute('href') === location.hash) { event.preventDefault(); route().then(() => main.focus()); }
  });
  document.querySelector('[data-skip]').addEventListener('click', (event) => {
    event.preventDefault();
    main.focus();
  });
  api.restore().then(route, () => showSignIn());
  return api;
}
