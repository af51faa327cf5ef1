// The tenant console: sign in with the tenant API key, then the pages of the navigation.
import { accessPage } from './access.js';
import { callsPage } from './calls.js';
import { integrationsPage } from './integrations.js';
import { keysPage, retentionPage, subjectsPage } from './lifecycle.js';
import { startConsole } from './shell.js';
import { transparencyPage } from './transparency.js';

startConsole({
  sessionPath: '/console/session',
  credential: 'api_key',
  credentialLabel: 'API key',
  heading: 'Sign in to your tenant console',
  home: 'calls',
  routes: {
    calls: callsPage,
    integrations: integrationsPage,
    access: accessPage,
    transparency: transparencyPage,
    retention: retentionPage,
    subjects: subjectsPage,
    keys: keysPage,
  },
});
