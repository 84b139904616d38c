// The Easel Console: sign-in, navigation and the router. Each view is its
// own module under views/ exporting `render(main, context)`; the router
// gives each one an AbortSignal that fires when the person leaves, which
// stops its polling.

import {forgetImages, session, signIn, READ, WRITE} from './api.js';
import {clear, h, icon} from './dom.js';
import {problemBox} from './ui.js';
import * as signin from './views/signin.js';
import * as library from './views/library.js';
import * as upload from './views/upload.js';
import * as image from './views/image.js';
import * as batches from './views/batches.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');

// [pattern, view, navigation entry it belongs to]
const ROUTES = [
  [/^\/?$/, library, 'library'],
  [/^\/library$/, library, 'library'],
  [/^\/trash$/, library, 'trash'],
  [/^\/upload$/, upload, 'upload'],
  [/^\/images\/([^/]+)(?:\/(styles|crop|details))?$/, image, 'library'],
  [/^\/batches(?:\/([^/]+))?$/, batches, 'batches'],
];

let leaving = null;

/** Parses `#/path?query` into its path and query. */
function location() {
  const raw = window.location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  return {path, query: new URLSearchParams(query)};
}

export function navigate(path, query) {
  const search = query && [...query].length ? `?${query}` : '';
  window.location.hash = `#${path}${search}`;
}

function renderNav(current) {
  const links = [
    ['library', '#/', 'Library', 'library', session.can(READ)],
    ['upload', '#/upload', 'Upload', 'upload', session.can(WRITE)],
    ['trash', '#/trash', 'Trash', 'trash', session.can(READ)],
    ['batches', '#/batches', 'Batches', 'batch', session.can(READ) || session.can(WRITE)],
  ];
  nav.replaceChildren(...links.filter((l) => l[4]).map(([name, href, label, glyph]) =>
    h('a', {href, class: name === current ? 'active' : null, 'aria-current': name === current ? 'page' : null,
      'data-nav': name}, icon(glyph), label)));
  nav.hidden = false;
  const info = session.info;
  who.replaceChildren(
    h('div', {class: 'who-key'},
      h('span', {class: 'who-bucket', title: 'The bucket this key sees'}, icon('key'), h('span', {class: 'label'}, 'Bucket '), h('strong', {id: 'bucket'}, info.bucket)),
      h('span', {class: 'who-scopes', id: 'scopes'},
        info.scopes.map((scope) => h('span', {class: 'scope'}, scope)))),
    h('button', {type: 'button', class: 'ghost', id: 'sign-out', onclick: signOut}, icon('out'), 'Sign out'));
  who.hidden = false;
}

function signOut() {
  session.key = null;
  session.info = null;
  forgetImages();
  nav.hidden = true;
  who.hidden = true;
  nav.replaceChildren();
  who.replaceChildren();
  navigate('/');
  route();
}

async function route() {
  leaving?.abort();
  const controller = new AbortController();
  leaving = controller;
  clear(main);
  if (!session.key) {
    nav.hidden = true;
    who.hidden = true;
    await signin.render(main, {signal: controller.signal, done: () => route()});
    return;
  }
  if (!session.info) {
    try {
      await signIn(session.key);
    } catch (error) {
      if (controller.signal.aborted) return;
      // A revoked key, or the server is down: say which, offer to sign in again.
      main.replaceChildren(problemBox(error),
        h('p', null, h('button', {type: 'button', onclick: signOut}, 'Sign in with another key')));
      return;
    }
    // The address changed while this sign-in was out, and a newer route
    // drew (or is drawing) that page: drawing this one now would cover it
    // with a view whose requests are already cancelled ("Loading images…"
    // for good, when this sign-in answered last).
    if (controller.signal.aborted) return;
  }
  const {path, query} = location();
  const match = ROUTES.map(([pattern, view, entry]) => [pattern.exec(path), view, entry]).find(([m]) => m);
  if (!match) {
    main.replaceChildren(h('section', {class: 'panel'}, h('h1', null, 'Nothing here'),
      h('p', null, 'This console page does not exist. ', h('a', {href: '#/'}, 'Back to the library'), '.')));
    return;
  }
  const [groups, view, entry] = match;
  renderNav(entry);
  try {
    await view.render(main, {
      params: groups.slice(1).map((g) => (g ? decodeURIComponent(g) : g)),
      query,
      trash: entry === 'trash',
      signal: controller.signal,
      navigate,
      refresh: () => route(),
    });
  } catch (error) {
    if (error?.name === 'AbortError') return;
    main.replaceChildren(problemBox(error, {retry: () => route()}));
  }
  // Move focus to the new page's heading so keyboard and screen-reader
  // users start there, as after a page load.
  if (!controller.signal.aborted) main.querySelector('h1')?.focus?.({preventScroll: true});
}

window.addEventListener('hashchange', route);
window.addEventListener('unhandledrejection', (event) => {
  if (event.reason?.name === 'AbortError') event.preventDefault();
});
route();
