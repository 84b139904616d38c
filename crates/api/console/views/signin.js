// Sign in with an API key. The key stays in this tab's sessionStorage:
// closing the tab forgets it, and no other tab or site can read it.

import {signIn} from '../api.js';
import {h, icon} from '../dom.js';
import {field, problemBox} from '../ui.js';

export async function render(main, {done}) {
  const input = h('input', {type: 'password', name: 'key', autocomplete: 'off', spellcheck: 'false',
    required: true, placeholder: 'easel_…', id: 'key-input'});
  const error = h('div', {class: 'form-error', 'aria-live': 'assertive'});
  const submit = h('button', {type: 'submit', class: 'primary', id: 'sign-in'}, icon('key'), 'Sign in');
  const form = h('form', {class: 'signin-form', novalidate: true},
    field('API key', input, 'Kept in this browser tab only, until you sign out or close it.'),
    error,
    submit);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    error.replaceChildren();
    if (!key) {
      error.append(problemBox(new Error('Paste an API key first.')));
      input.focus();
      return;
    }
    submit.disabled = true;
    try {
      await signIn(key);
      done();
    } catch (problem) {
      error.append(problemBox(problem));
      input.select();
    } finally {
      submit.disabled = false;
    }
  });
  main.replaceChildren(
    h('section', {class: 'signin'},
      h('div', {class: 'signin-intro'},
        h('h1', {tabindex: '-1'}, 'Your artwork, ready for every feed'),
        h('p', {class: 'lead'}, 'Upload a cover once. Easel renders every size players and podcast directories ask for, checks it against Apple\u2019s rules, and serves it fast.'),
        h('ul', {class: 'ticks'},
          h('li', null, icon('upload'), 'Drop in covers, several at once'),
          h('li', null, icon('crop'), 'Drag the square over the part that matters'),
          h('li', null, icon('check'), 'See at a glance whether Apple and Spotify will take it'))),
      h('div', {class: 'panel signin-card'},
        h('h2', null, 'Sign in'),
        form,
        h('p', {class: 'hint'}, 'No key yet? On the server, run ',
          h('code', null, './easel.sh keys create --bucket default --scopes image:read,image:write,image:delete'),
          '.'))));
  input.focus();
}
