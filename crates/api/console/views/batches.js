// Batches: start a re-render of the bucket (POST /v1/rerender) and watch
// its progress (GET /v1/batches/{id}) until every image is done.

import {api, session, sleep, READ, WRITE} from '../api.js';
import {formatDate, h, icon, setProgress} from '../dom.js';
import {field, problemBox} from '../ui.js';

const RECENT = 'easel.console.batches';
const STYLES = ['stripped-original', 'regular', 'thumb', 'square-400', 'square-640', 'square-888', 'itunes', 'square-3000'];

function recent() {
  try {
    return JSON.parse(sessionStorage.getItem(RECENT) ?? '[]');
  } catch {
    return [];
  }
}

function remember(id) {
  sessionStorage.setItem(RECENT, JSON.stringify([id, ...recent().filter((x) => x !== id)].slice(0, 10)));
}

export async function render(main, {params, signal, navigate}) {
  const [batchId] = params;
  const heading = h('h1', {tabindex: '-1'}, 'Batches');
  const watch = h('div', {id: 'batch-watch', 'aria-live': 'polite'});
  main.replaceChildren(
    h('div', {class: 'page-head'}, heading,
      h('p', {class: 'page-sub'}, 'Re-render images after a settings change: stale ones by default, or all of them. Uploads go first; a batch never delays them.')),
    h('div', {class: 'batches-layout'},
      session.can(WRITE) ? startForm(navigate) : h('section', {class: 'panel'},
        h('p', null, 'This key cannot start a re-render (it has no image:write scope).')),
      h('div', null, watch, recentList(batchId))));
  if (batchId) {
    if (!session.can(READ)) {
      watch.append(h('p', {class: 'panel muted'}, `Batch ${batchId} started. This key cannot read its progress (no image:read scope).`));
      return;
    }
    await follow(batchId, watch, signal);
  }
}

function startForm(navigate) {
  const style = h('select', {name: 'style', id: 'batch-style'}, h('option', {value: ''}, 'Every style'),
    STYLES.map((name) => h('option', {value: name}, name)));
  const since = h('input', {type: 'date', name: 'since', id: 'batch-since'});
  const all = h('input', {type: 'checkbox', name: 'all', id: 'batch-all'});
  const error = h('div', {'aria-live': 'assertive'});
  const start = h('button', {type: 'submit', class: 'primary', id: 'batch-start'}, icon('refresh'), 'Start re-render');
  const form = h('form', {class: 'panel batch-form', novalidate: true},
    h('h2', null, `Re-render bucket \u201c${session.info.bucket}\u201d`),
    field('Style', style, 'Only images missing this style or holding a stale file of it.'),
    field('Created since', since, 'Optional.'),
    h('div', {class: 'check'}, all, h('label', {for: 'batch-all'}, 'Every image, not only stale ones')),
    error,
    start);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.replaceChildren();
    start.disabled = true;
    const body = {all: all.checked};
    if (style.value) body.style = style.value;
    if (since.value) body.since = new Date(`${since.value}T00:00:00`).toISOString();
    try {
      const {data} = await api('/v1/rerender', {method: 'POST', body});
      remember(data.id);
      navigate(`/batches/${encodeURIComponent(data.id)}`);
    } catch (problem) {
      error.append(problemBox(problem));
    } finally {
      start.disabled = false;
    }
  });
  return form;
}

function recentList(current) {
  const ids = recent().filter((id) => id !== current);
  if (!ids.length) return null;
  return h('section', {class: 'panel'}, h('h2', null, 'Earlier in this tab'),
    h('ul', {class: 'plain'}, ids.map((id) => h('li', null, h('a', {href: `#/batches/${encodeURIComponent(id)}`}, id)))));
}

async function follow(id, watch, signal) {
  const bar = h('progress', {max: 100, value: 0, id: 'batch-bar', 'aria-label': 'Batch progress'}, '0%');
  const counts = h('dl', {class: 'counts', id: 'batch-counts'});
  const state = h('p', {class: 'batch-state', id: 'batch-state'});
  const failures = h('div');
  watch.replaceChildren(h('section', {class: 'panel batch'}, h('h2', null, 'Batch ', h('code', null, id)), state, bar, counts, failures));
  for (;;) {
    let batch;
    try {
      batch = (await api(`/v1/batches/${encodeURIComponent(id)}`, {signal})).data;
    } catch (error) {
      if (error.name === 'AbortError') return;
      watch.replaceChildren(problemBox(error));
      return;
    }
    const finished = batch.counts.done + batch.counts.failed;
    setProgress(bar, batch.total ? finished / batch.total : 1);
    counts.replaceChildren(...['pending', 'queued', 'running', 'done', 'failed'].map((name) =>
      h('div', {class: `count count-${name}`, 'data-count': name}, h('dt', null, name), h('dd', null, String(batch.counts[name])))));
    state.replaceChildren(batch.complete
      ? h('span', {class: 'pill status-finished'}, 'Complete')
      : h('span', {class: 'pill status-ingesting'}, 'Running'),
    ` ${finished} of ${batch.total} image${batch.total === 1 ? '' : 's'} re-rendered`,
    batch.style ? ` \u00b7 style ${batch.style}` : '', batch.all ? ' \u00b7 all images' : ' \u00b7 stale images',
    ` \u00b7 started ${formatDate(batch.created_at)}`);
    state.dataset.complete = String(batch.complete);
    failures.replaceChildren(batch.failures.length ? h('div', null, h('h3', null, 'Failures'),
      h('ul', {class: 'reasons'}, batch.failures.map((f) => h('li', {class: 'reason'}, icon('cross'),
        h('a', {href: `#/images/${encodeURIComponent(f.image_id)}`}, f.image_id), `: ${f.reason ?? 'no reason recorded'}`)))) : '');
    if (batch.complete) return;
    try {
      await sleep(800, signal);
    } catch {
      return;
    }
  }
}
