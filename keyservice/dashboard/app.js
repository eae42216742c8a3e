// The API keys page. Plain DOM, no framework: it runs under a CSP without inline code or eval,
// builds every node with textContent (never markup from data), and never keeps a new key
// anywhere but in one input, cleared when its dialog closes.
'use strict';

(() => {
  const PAGE_SIZE = 100;
  const MAX_PAGES = 50;
  const DAY_SECONDS = 86400;
  // The API's limit for expires_in_seconds: 10 years.
  const MAX_EXPIRY_SECONDS = 315360000;
  const EXPIRY_PRESETS = {
    '7d': 7 * DAY_SECONDS,
    '30d': 30 * DAY_SECONDS,
    '90d': 90 * DAY_SECONDS,
    '1y': 365 * DAY_SECONDS,
  };
  const PAGE_PATH = '/keys';
  const CLIPBOARD_WAIT_MS = 2000;

  const byId = (id) => document.getElementById(id);
  const ui = {
    signedIn: byId('signed-in'),
    signOutForm: byId('sign-out-form'),
    signOut: byId('sign-out'),
    sessionExpired: byId('session-expired'),
    sessionExpiredSignIn: byId('session-expired-sign-in'),
    sessionExpiredNoSignIn: byId('session-expired-no-sign-in'),
    signedOut: byId('signed-out'),
    signIn: byId('sign-in'),
    signInMissing: byId('sign-in-missing'),
    stateError: byId('state-error'),
    stateErrorMessage: byId('state-error-message'),
    retry: byId('retry'),
    stateLoading: byId('state-loading'),
    app: byId('app'),
    createForm: byId('create-form'),
    keyName: byId('key-name'),
    keyExpiry: byId('key-expiry'),
    keyExpiryDateField: byId('key-expiry-date-field'),
    keyExpiryDate: byId('key-expiry-date'),
    keyScopes: byId('key-scopes'),
    keyScopesNone: byId('key-scopes-none'),
    createSubmit: byId('create-submit'),
    keysHeading: byId('keys-heading'),
    filterText: byId('filter-text'),
    filterStatus: byId('filter-status'),
    keysCount: byId('keys-count'),
    keysTruncated: byId('keys-truncated'),
    stateEmpty: byId('state-empty'),
    stateNoMatch: byId('state-no-match'),
    keysTable: byId('keys-table'),
    keysBody: byId('keys-body'),
    toast: byId('toast'),
    newKey: byId('new-key'),
    newKeyName: byId('new-key-name'),
    newKeyValue: byId('new-key-value'),
    copyKey: byId('copy-key'),
    copyStatus: byId('copy-status'),
    newKeyDone: byId('new-key-done'),
    confirmRevoke: byId('confirm-revoke'),
    confirmRevokeName: byId('confirm-revoke-name'),
    confirmRevokeYes: byId('confirm-revoke-yes'),
    confirmRevokeNo: byId('confirm-revoke-no'),
  };

  const links = {
    signIn: document.body.dataset.signInUrl || '',
    signOut: document.body.dataset.signOutUrl || '',
  };

  const state = {
    me: null,
    // Once signed in, a 401 means the session ended rather than "never signed in".
    wasSignedIn: false,
    expired: false,
    keys: [],
    loaded: false,
    truncated: false,
    // Each load of the list has a number; answers of an older load are dropped.
    loadGeneration: 0,
    sort: { key: 'created', direction: 'descending' },
    revokeTarget: null,
    revokeOpener: null,
    newKeyOpener: null,
  };

  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  const collator = new Intl.Collator(undefined, { sensitivity: 'base', numeric: true });

  // --- The API ---------------------------------------------------------------------------

  class NetworkError extends Error {}

  // One request: { status, data } (data: the JSON body, or null). A failed fetch throws
  // NetworkError.
  async function api(method, path, payload) {
    const init = {
      method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' },
    };
    if (payload !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(payload);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (_) {
      throw new NetworkError('the key service could not be reached');
    }
    let data = null;
    const type = response.headers.get('Content-Type') || '';
    if (type.includes('application/json')) {
      try {
        data = await response.json();
      } catch (_) {
        data = null;
      }
    }
    return { status: response.status, data };
  }

  // The API's own words for an error answer, else the status.
  function apiMessage(reply) {
    const data = reply.data;
    if (data && typeof data.message === 'string' && data.message !== '') {
      return data.message;
    }
    if (data && typeof data.error === 'string' && data.error !== '') {
      return data.error;
    }
    return `the server answered ${reply.status}`;
  }

  // --- Small DOM helpers ------------------------------------------------------------------

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function setHidden(node, hidden) {
    node.hidden = hidden;
  }

  function toast(message, kind) {
    ui.toast.dataset.kind = kind || 'info';
    ui.toast.textContent = message;
  }

  function openDialog(dialog) {
    if (typeof dialog.showModal === 'function') {
      if (!dialog.open) {
        dialog.showModal();
      }
    } else {
      dialog.setAttribute('open', '');
    }
  }

  function closeDialog(dialog) {
    if (typeof dialog.close === 'function') {
      if (dialog.open) {
        dialog.close();
      }
    } else {
      dialog.removeAttribute('open');
      dialog.dispatchEvent(new Event('close'));
    }
  }

  // Focus `node` if it is still on the page, else `fallback`.
  function restoreFocus(node, fallback) {
    const target = node && node.isConnected && !node.disabled ? node : fallback;
    if (target) {
      target.focus();
    }
  }

  // --- Sign in, sign out ------------------------------------------------------------------

  // The sign-in URL with redirect_url pointing back here (a path when the sign-in page is on
  // this origin, as the dev IdP wants; an absolute URL otherwise).
  function signInHref() {
    if (!links.signIn) {
      return '';
    }
    let url;
    try {
      url = new URL(links.signIn, window.location.href);
    } catch (_) {
      return '';
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      return '';
    }
    url.searchParams.delete('redirect_url');
    url.hash = '';
    const sameOrigin = url.origin === window.location.origin;
    const back = sameOrigin ? PAGE_PATH : new URL(PAGE_PATH, window.location.href).href;
    const separator = url.search ? '&' : '?';
    // "/" and ":" may stay as they are in a query; keeping them makes the link readable.
    const value = encodeURIComponent(back).replace(/%2F/gi, '/').replace(/%3A/gi, ':');
    const base = sameOrigin ? url.pathname + url.search : url.href;
    return `${base}${separator}redirect_url=${value}`;
  }

  function setSignInLink(link, missing) {
    const href = signInHref();
    if (href) {
      link.href = href;
      setHidden(link, false);
      setHidden(missing, true);
    } else {
      link.removeAttribute('href');
      setHidden(link, true);
      setHidden(missing, false);
    }
  }

  // Clerk-style ids ("user_alice", "org_acme", "org:admin") shown without their prefixes; the
  // full ids are in the title.
  function withoutPrefix(id, prefix) {
    if (typeof id !== 'string') {
      return '';
    }
    return id.startsWith(prefix) && id.length > prefix.length ? id.slice(prefix.length) : id;
  }

  function identityText(me) {
    let text = withoutPrefix(me.user_id, 'user_');
    if (!text) {
      text = me.via === 'admin' ? 'administrator' : 'signed in';
    }
    if (me.org_id) {
      text += ` · ${withoutPrefix(me.org_id, 'org_')}`;
    }
    if (me.org_role) {
      text += ` (${withoutPrefix(me.org_role, 'org:')})`;
    }
    return text;
  }

  function renderIdentity(me) {
    ui.signedIn.textContent = identityText(me);
    ui.signedIn.title = [me.user_id, me.org_id, me.org_role].filter(Boolean).join(' · ');
    setHidden(ui.signedIn, false);
    const signOutUrl = links.signOut || (typeof me.sign_out_url === 'string' ? me.sign_out_url : '');
    if (signOutUrl) {
      ui.signOutForm.action = signOutUrl;
      setHidden(ui.signOutForm, false);
    } else {
      setHidden(ui.signOutForm, true);
    }
  }

  function hideIdentity() {
    setHidden(ui.signedIn, true);
    setHidden(ui.signOutForm, true);
  }

  // --- Page states ------------------------------------------------------------------------

  const screens = [ui.sessionExpired, ui.signedOut, ui.stateError, ui.stateLoading, ui.app];

  function showOnly(...visible) {
    for (const screen of screens) {
      setHidden(screen, !visible.includes(screen));
    }
  }

  function showSignedOut() {
    if (state.wasSignedIn) {
      showSessionExpired();
      return;
    }
    hideIdentity();
    setSignInLink(ui.signIn, ui.signInMissing);
    showOnly(ui.signedOut);
  }

  // A 401 after having been signed in. The new-key dialog is left alone: its key is not lost.
  function showSessionExpired() {
    state.expired = true;
    state.loadGeneration += 1;
    closeDialog(ui.confirmRevoke);
    hideIdentity();
    setSignInLink(ui.sessionExpiredSignIn, ui.sessionExpiredNoSignIn);
    showOnly(ui.sessionExpired);
    if (!ui.newKey.open) {
      ui.sessionExpired.focus();
    }
  }

  function showError(message) {
    ui.stateErrorMessage.textContent = message;
    showOnly(ui.stateError);
  }

  // --- Start: who is this? ----------------------------------------------------------------

  async function start() {
    state.loadGeneration += 1;
    const generation = state.loadGeneration;
    showOnly(ui.stateLoading);
    let reply;
    try {
      reply = await api('GET', '/v1/me');
    } catch (_) {
      showError('The key service could not be reached. Check your connection and retry.');
      return;
    }
    if (generation !== state.loadGeneration) {
      return;
    }
    if (reply.status === 401) {
      showSignedOut();
      return;
    }
    if (reply.status !== 200 || !reply.data || typeof reply.data !== 'object') {
      showError(`Could not check your session: ${apiMessage(reply)}.`);
      return;
    }
    state.me = reply.data;
    state.wasSignedIn = true;
    state.expired = false;
    renderIdentity(state.me);
    renderScopes(Array.isArray(state.me.scopes) ? state.me.scopes : []);
    await loadKeys();
  }

  // --- The list ---------------------------------------------------------------------------

  // Every page of the list (up to MAX_PAGES), then one render.
  async function loadKeys() {
    state.loadGeneration += 1;
    const generation = state.loadGeneration;
    const visible = state.loaded ? [ui.app, ui.stateLoading] : [ui.stateLoading];
    showOnly(...visible);
    const byKeyId = new Map();
    let cursor = null;
    let pages = 0;
    let truncated = false;
    for (;;) {
      let path = `/v1/keys?limit=${PAGE_SIZE}`;
      if (cursor) {
        path += `&after=${encodeURIComponent(cursor)}`;
      }
      let reply;
      try {
        reply = await api('GET', path);
      } catch (_) {
        if (generation === state.loadGeneration) {
          showError('The key service could not be reached. Check your connection and retry.');
        }
        return;
      }
      if (generation !== state.loadGeneration) {
        return;
      }
      if (reply.status === 401) {
        showSessionExpired();
        return;
      }
      if (reply.status !== 200 || !reply.data || !Array.isArray(reply.data.keys)) {
        showError(`Could not load your keys: ${apiMessage(reply)}.`);
        return;
      }
      for (const key of reply.data.keys) {
        if (key && typeof key.id === 'string') {
          byKeyId.set(key.id, key);
        }
      }
      pages += 1;
      cursor = typeof reply.data.next === 'string' && reply.data.next !== '' ? reply.data.next : null;
      if (!cursor) {
        break;
      }
      if (pages >= MAX_PAGES) {
        truncated = true;
        break;
      }
    }
    state.keys = [...byKeyId.values()];
    state.truncated = truncated;
    state.loaded = true;
    showOnly(ui.app);
    renderKeys();
  }

  function timeValue(iso) {
    if (typeof iso !== 'string') {
      return null;
    }
    const ms = Date.parse(iso);
    return Number.isNaN(ms) ? null : ms;
  }

  function keyStatus(key, now) {
    if (key.revoked_at) {
      return 'revoked';
    }
    const expires = timeValue(key.expires_at);
    if (expires !== null && expires <= now) {
      return 'expired';
    }
    return 'active';
  }

  function hintText(hint) {
    if (typeof hint !== 'string' || hint === '') {
      return '—';
    }
    return hint.startsWith('…') ? hint : `…${hint}`;
  }

  function scopesOf(key) {
    return Array.isArray(key.scopes) ? key.scopes.filter((s) => typeof s === 'string') : [];
  }

  function matchesFilter(key, text, status, now) {
    if (status !== 'all' && keyStatus(key, now) !== status) {
      return false;
    }
    if (!text) {
      return true;
    }
    const haystack = [String(key.name || ''), hintText(key.hint), ...scopesOf(key)];
    return haystack.some((value) => value.toLowerCase().includes(text));
  }

  function compareNumbers(a, b) {
    if (a < b) {
      return -1;
    }
    return a > b ? 1 : 0;
  }

  // What each sortable column compares; a key that never expires sorts after every date, one
  // never used before every date.
  const sortValues = {
    name: null,
    created: (key) => timeValue(key.created_at) ?? -Infinity,
    expires: (key) => timeValue(key.expires_at) ?? Infinity,
    'last-used': (key) => timeValue(key.last_used_at) ?? -Infinity,
  };

  function compareKeys(a, b) {
    const { key, direction } = state.sort;
    let order;
    if (key === 'name') {
      order = collator.compare(String(a.name || ''), String(b.name || ''));
    } else {
      order = compareNumbers(sortValues[key](a), sortValues[key](b));
    }
    if (direction === 'descending') {
      order = -order;
    }
    if (order === 0) {
      // Newest first, then by id: a stable order whatever the column.
      order = compareNumbers(sortValues.created(b), sortValues.created(a)) || compareNumbers(a.id, b.id);
    }
    return order;
  }

  function timeCell(iso) {
    const ms = timeValue(iso);
    if (ms === null) {
      return element('span', 'muted', 'never');
    }
    const node = element('time', '', dateFormat.format(new Date(ms)));
    node.dateTime = iso;
    node.title = new Date(ms).toISOString();
    return node;
  }

  function cell(className, label, ...content) {
    const td = element('td', className);
    td.dataset.label = label;
    td.append(...content);
    return td;
  }

  function scopesList(scopes) {
    if (scopes.length === 0) {
      return element('span', 'muted', '—');
    }
    const list = element('ul', 'chips');
    for (const scope of scopes) {
      list.append(element('li', 'chip', scope));
    }
    return list;
  }

  function keyRow(key, now) {
    const status = keyStatus(key, now);
    const row = element('tr');
    row.dataset.keyId = key.id;
    const hint = element('span', typeof key.hint === 'string' && key.hint ? 'hint-value' : 'muted', hintText(key.hint));
    const actions = element('td', 'actions');
    if (status === 'active') {
      const revoke = element('button', 'revoke button button-danger-quiet', 'Revoke');
      revoke.type = 'button';
      revoke.setAttribute('aria-label', `Revoke ${key.name}`);
      revoke.addEventListener('click', () => askRevoke(key.id, revoke));
      actions.append(revoke);
    }
    row.append(
      cell('name', 'Name', String(key.name || '')),
      cell('hint', 'Key', hint),
      cell('scopes', 'Scopes', scopesList(scopesOf(key))),
      cell('created', 'Created', timeCell(key.created_at)),
      cell('expires', 'Expires', timeCell(key.expires_at)),
      cell('last-used', 'Last used', timeCell(key.last_used_at)),
      cell('status', 'Status', element('span', `badge badge-${status}`, status)),
      actions,
    );
    return row;
  }

  function renderSortHeaders() {
    for (const button of ui.keysTable.querySelectorAll('th button[data-sort]')) {
      const th = button.closest('th');
      if (button.dataset.sort === state.sort.key) {
        th.setAttribute('aria-sort', state.sort.direction);
      } else {
        th.removeAttribute('aria-sort');
      }
    }
  }

  function renderKeys() {
    const now = Date.now();
    const text = ui.filterText.value.trim().toLowerCase();
    const status = ui.filterStatus.value;
    const shown = state.keys.filter((key) => matchesFilter(key, text, status, now));
    shown.sort(compareKeys);
    ui.keysBody.replaceChildren(...shown.map((key) => keyRow(key, now)));
    renderSortHeaders();

    const total = state.keys.length;
    setHidden(ui.stateEmpty, total !== 0);
    setHidden(ui.stateNoMatch, total === 0 || shown.length !== 0);
    setHidden(ui.keysTable, shown.length === 0);
    ui.keysCount.textContent = shown.length === total
      ? `${total} ${total === 1 ? 'key' : 'keys'}`
      : `Showing ${shown.length} of ${total} keys`;
    setHidden(ui.keysCount, total === 0);
    ui.keysTruncated.textContent = state.truncated
      ? `Showing the first ${total} keys only: there are more than this page loads.`
      : '';
    setHidden(ui.keysTruncated, !state.truncated);
  }

  function onSort(event) {
    const button = event.target.closest('button[data-sort]');
    if (!button) {
      return;
    }
    const key = button.dataset.sort;
    if (state.sort.key === key) {
      state.sort.direction = state.sort.direction === 'ascending' ? 'descending' : 'ascending';
    } else {
      state.sort = { key, direction: 'ascending' };
    }
    renderKeys();
  }

  // --- Create -----------------------------------------------------------------------------

  function renderScopes(scopes) {
    for (const old of ui.keyScopes.querySelectorAll('.scope-option')) {
      old.remove();
    }
    let index = 0;
    for (const scope of scopes) {
      if (!scope || typeof scope.name !== 'string') {
        continue;
      }
      index += 1;
      const id = `scope-${index}`;
      const option = element('div', 'scope-option');
      const input = element('input');
      input.type = 'checkbox';
      input.name = 'scope';
      input.value = scope.name;
      input.id = id;
      const label = element('label');
      label.htmlFor = id;
      label.append(element('span', 'scope-name', scope.name));
      if (typeof scope.description === 'string' && scope.description) {
        label.append(element('span', 'scope-description', scope.description));
      }
      option.append(input, label);
      ui.keyScopes.append(option);
    }
    setHidden(ui.keyScopesNone, index !== 0);
  }

  function pad(n) {
    return String(n).padStart(2, '0');
  }

  // A local date as an <input type=date> value.
  function dateValue(date) {
    return `${String(date.getFullYear()).padStart(4, '0')}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  }

  // Tomorrow up to the last day whose end is within the API's 10 years.
  function updateDateBounds() {
    const now = new Date();
    const tomorrow = new Date(now.getFullYear(), now.getMonth(), now.getDate() + 1);
    const latest = new Date(now.getTime() + MAX_EXPIRY_SECONDS * 1000);
    const lastDay = new Date(latest.getFullYear(), latest.getMonth(), latest.getDate() - 1);
    ui.keyExpiryDate.min = dateValue(tomorrow);
    ui.keyExpiryDate.max = dateValue(lastDay);
  }

  function onExpiryChange() {
    const byDate = ui.keyExpiry.value === 'date';
    setHidden(ui.keyExpiryDateField, !byDate);
    ui.keyExpiryDate.required = byDate;
    if (byDate) {
      updateDateBounds();
    } else {
      ui.keyExpiryDate.setCustomValidity('');
    }
  }

  // { seconds } (undefined: never expires) or { error } naming what is wrong.
  function expiryChoice() {
    const choice = ui.keyExpiry.value;
    if (choice === 'never') {
      return { seconds: undefined };
    }
    if (Object.prototype.hasOwnProperty.call(EXPIRY_PRESETS, choice)) {
      return { seconds: EXPIRY_PRESETS[choice] };
    }
    const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(ui.keyExpiryDate.value);
    if (!match) {
      return { error: 'Choose the day the key expires.' };
    }
    updateDateBounds();
    if (ui.keyExpiryDate.value < ui.keyExpiryDate.min) {
      return { error: 'Choose a day after today.' };
    }
    if (ui.keyExpiryDate.value > ui.keyExpiryDate.max) {
      return { error: 'Choose a day within 10 years.' };
    }
    // The end of the chosen day, local time: midnight at the start of the next.
    const end = new Date(Number(match[1]), Number(match[2]) - 1, Number(match[3]) + 1);
    const seconds = Math.floor((end.getTime() - Date.now()) / 1000);
    if (seconds <= 0 || seconds > MAX_EXPIRY_SECONDS) {
      return { error: 'Choose a day after today and within 10 years.' };
    }
    return { seconds };
  }

  async function onCreate(event) {
    event.preventDefault();
    const name = ui.keyName.value.trim();
    if (!name) {
      ui.keyName.setCustomValidity('Enter a name for the key.');
      ui.keyName.reportValidity();
      return;
    }
    const expiry = expiryChoice();
    if (expiry.error) {
      ui.keyExpiryDate.setCustomValidity(expiry.error);
      ui.keyExpiryDate.reportValidity();
      return;
    }
    const payload = { name };
    if (expiry.seconds !== undefined) {
      payload.expires_in_seconds = expiry.seconds;
    }
    const scopes = [...ui.keyScopes.querySelectorAll('input[name="scope"]:checked')].map((input) => input.value);
    if (scopes.length > 0) {
      payload.scopes = scopes;
    }

    ui.createSubmit.disabled = true;
    ui.createForm.setAttribute('aria-busy', 'true');
    let reply;
    try {
      reply = await api('POST', '/v1/keys', payload);
    } catch (_) {
      toast('Could not create the key: the key service could not be reached.', 'error');
      return;
    } finally {
      ui.createSubmit.disabled = false;
      ui.createForm.removeAttribute('aria-busy');
    }
    if (reply.status === 201 && reply.data && typeof reply.data.key === 'string') {
      ui.createForm.reset();
      onExpiryChange();
      showNewKey(reply.data);
    } else if (reply.status === 401) {
      showSessionExpired();
    } else {
      toast(`Could not create the key: ${apiMessage(reply)}`, 'error');
    }
  }

  // --- The new key, shown once ------------------------------------------------------------

  function showNewKey(created) {
    state.newKeyOpener = ui.keyName;
    ui.newKeyName.textContent = `Key “${created.name}” was created.`;
    ui.newKeyValue.value = created.key;
    ui.copyKey.textContent = 'Copy';
    ui.copyStatus.textContent = '';
    openDialog(ui.newKey);
    ui.copyKey.focus();
  }

  // Whatever closes the dialog (Done, Escape, leaving the page) takes the key out of the page.
  function forgetNewKey() {
    ui.newKeyValue.value = '';
    ui.newKeyValue.removeAttribute('value');
    ui.newKeyName.textContent = '';
    ui.copyStatus.textContent = '';
    ui.copyKey.textContent = 'Copy';
  }

  // Done, Escape and the dialog closing any other way all end here; only the first call acts.
  // The key leaves the page before the dialog closes (closing fires its event later).
  function finishNewKey() {
    const hadKey = ui.newKeyValue.value !== '';
    forgetNewKey();
    closeDialog(ui.newKey);
    if (!hadKey) {
      return;
    }
    if (state.expired) {
      ui.sessionExpired.focus();
      return;
    }
    toast('The key was created.');
    restoreFocus(state.newKeyOpener, ui.keysHeading);
    loadKeys();
  }

  async function copyNewKey() {
    const value = ui.newKeyValue.value;
    if (!value) {
      return;
    }
    let copied = false;
    if (navigator.clipboard && typeof navigator.clipboard.writeText === 'function') {
      // A clipboard that neither copies nor refuses (a permission prompt left open) must not
      // leave the button hanging: after a while, fall back.
      const gaveUp = new Promise((resolve) => setTimeout(() => resolve(false), CLIPBOARD_WAIT_MS));
      const wrote = navigator.clipboard.writeText(value).then(() => true, () => false);
      copied = await Promise.race([wrote, gaveUp]);
    }
    if (!copied) {
      ui.newKeyValue.focus();
      ui.newKeyValue.select();
      try {
        copied = document.execCommand('copy');
      } catch (_) {
        copied = false;
      }
    }
    if (copied) {
      ui.copyKey.textContent = 'Copied';
      ui.copyStatus.textContent = 'The key is on your clipboard.';
    } else {
      ui.newKeyValue.focus();
      ui.newKeyValue.select();
      ui.copyStatus.textContent = 'Copying failed: the key is selected, copy it with your keyboard.';
    }
  }

  // --- Revoke -----------------------------------------------------------------------------

  function askRevoke(id, opener) {
    const key = state.keys.find((k) => k.id === id);
    if (!key) {
      return;
    }
    state.revokeTarget = key;
    state.revokeOpener = opener;
    ui.confirmRevokeName.textContent = String(key.name || '');
    ui.confirmRevokeYes.disabled = false;
    openDialog(ui.confirmRevoke);
    ui.confirmRevokeNo.focus();
  }

  function onConfirmClosed() {
    const opener = state.revokeOpener;
    state.revokeTarget = null;
    state.revokeOpener = null;
    if (!state.expired) {
      restoreFocus(opener, ui.keysHeading);
    }
  }

  async function revoke() {
    const key = state.revokeTarget;
    if (!key) {
      return;
    }
    ui.confirmRevokeYes.disabled = true;
    const name = String(key.name || '');
    let reply;
    try {
      reply = await api('DELETE', `/v1/keys/${encodeURIComponent(key.id)}`);
    } catch (_) {
      closeDialog(ui.confirmRevoke);
      toast(`Could not revoke “${name}”: the key service could not be reached.`, 'error');
      return;
    }
    if (reply.status === 401) {
      showSessionExpired();
      return;
    }
    closeDialog(ui.confirmRevoke);
    if (reply.status === 200) {
      const revokedAt = reply.data && typeof reply.data.revoked_at === 'string'
        ? reply.data.revoked_at
        : new Date().toISOString();
      state.keys = state.keys.map((k) => (k.id === key.id ? { ...k, revoked_at: revokedAt } : k));
      renderKeys();
      ui.keysHeading.focus();
      toast(`Key “${name}” was revoked.`);
    } else if (reply.status === 404) {
      toast(`Could not revoke “${name}”: ${apiMessage(reply)}`, 'error');
      loadKeys();
    } else {
      toast(`Could not revoke “${name}”: ${apiMessage(reply)}`, 'error');
    }
  }

  // --- Wiring -----------------------------------------------------------------------------

  ui.retry.addEventListener('click', () => start());
  ui.keysTable.querySelector('thead').addEventListener('click', onSort);
  ui.filterText.addEventListener('input', renderKeys);
  ui.filterStatus.addEventListener('change', renderKeys);
  ui.keyExpiry.addEventListener('change', onExpiryChange);
  ui.keyName.addEventListener('input', () => ui.keyName.setCustomValidity(''));
  ui.keyExpiryDate.addEventListener('input', () => ui.keyExpiryDate.setCustomValidity(''));
  ui.createForm.addEventListener('submit', onCreate);
  ui.copyKey.addEventListener('click', copyNewKey);
  ui.newKeyDone.addEventListener('click', finishNewKey);
  ui.newKey.addEventListener('close', finishNewKey);
  ui.confirmRevokeNo.addEventListener('click', () => closeDialog(ui.confirmRevoke));
  ui.confirmRevokeYes.addEventListener('click', revoke);
  ui.confirmRevoke.addEventListener('close', onConfirmClosed);
  // Leaving the page (or it going into the back/forward cache) drops the key too.
  window.addEventListener('pagehide', forgetNewKey);

  onExpiryChange();
  start();
})();
