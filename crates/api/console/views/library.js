// The library: a grid of the bucket's images with search, facet and tag
// filters, sort and paging; in trash mode, the soft-deleted ones with
// restore and delete forever. Filters live in the URL, so Back works and
// a filtered view can be bookmarked.

import {api, imageURL, session, sleep, DELETE, READ, WRITE} from '../api.js';
import {confirmDialog, formatDate, h, icon} from '../dom.js';
import {assetOf, feedBadge, field, notify, problemBox, statusPill, upscaledStyles} from '../ui.js';

const PAGE_SIZE = 24;
const SORTS = [
  ['-created_at', 'Newest first'],
  ['created_at', 'Oldest first'],
  ['-updated_at', 'Recently changed'],
  ['name', 'Name A\u2013Z'],
  ['-name', 'Name Z\u2013A'],
];

/** The list request for the filters in the console's URL. */
function listPath(query, trash) {
  const params = new URLSearchParams();
  params.set('page[size]', String(PAGE_SIZE));
  params.set('page[number]', query.get('page') || '1');
  params.set('include', 'assets');
  params.set('sort', query.get('sort') || (trash ? '-updated_at' : '-created_at'));
  if (query.get('search')) params.set('search', query.get('search'));
  if (query.get('facet')) params.set('filter[facet]', query.get('facet'));
  if (query.get('tag')) params.set('filter[tag]', query.get('tag'));
  if (query.get('status')) params.set('filter[status]', query.get('status'));
  if (query.get('feed')) params.set('filter[feed_ready]', query.get('feed'));
  if (trash) params.set('filter[trashed]', 'only');
  return `/v1/images?${params}`;
}

export async function render(main, {query, trash, signal, navigate, refresh}) {
  const base = trash ? '/trash' : '/';
  const heading = h('h1', {tabindex: '-1'}, trash ? 'Trash' : 'Library');
  if (!session.can(READ)) {
    main.replaceChildren(h('section', {class: 'panel'}, heading,
      h('p', null, 'This key has no image:read scope, so it cannot list images.',
        session.can(WRITE) ? [' It can still ', h('a', {href: '#/upload'}, 'upload'), '.'] : '')));
    return;
  }
  const go = (changes) => {
    const next = new URLSearchParams(query);
    for (const [name, value] of Object.entries(changes)) {
      if (value) next.set(name, value);
      else next.delete(name);
    }
    if (!('page' in changes)) next.delete('page');
    navigate(base, next);
  };

  const filters = filterBar(query, trash, go);
  const results = h('div', {class: 'results', 'aria-live': 'polite'}, h('p', {class: 'loading'}, 'Loading images\u2026'));
  main.replaceChildren(
    h('div', {class: 'page-head'},
      heading,
      h('p', {class: 'page-sub'}, trash
        ? 'Deleted images stay here until deleted for good. Their files are no longer served.'
        : `Every image in bucket \u201c${session.info.bucket}\u201d.`),
      !trash && session.can(WRITE) ? h('a', {class: 'button primary', href: '#/upload', id: 'upload-link'}, icon('upload'), 'Upload') : null),
    filters,
    results);

  let page;
  try {
    page = (await api(listPath(query, trash), {signal})).data;
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    results.replaceChildren(problemBox(error));
    return;
  }
  fillSuggestions(filters, page.data);
  if (page.data.length === 0) {
    results.replaceChildren(emptyState(query, trash));
    return;
  }
  const cards = new Map();
  const grid = h('div', {class: 'grid', id: 'image-grid'});
  for (const image of page.data) {
    const card = imageCard(image, trash, go, signal, refresh);
    cards.set(image.id, card);
    grid.append(card);
  }
  results.replaceChildren(grid, pager(page.meta, query, go));
  if (!trash) watchIngesting(page.data, cards, go, signal);
}

function filterBar(query, trash, go) {
  const search = h('input', {type: 'search', name: 'search', value: query.get('search') ?? '', placeholder: 'Name contains\u2026'});
  const facet = h('input', {type: 'text', name: 'facet', value: query.get('facet') ?? '', list: 'facets', placeholder: 'e.g. cover'});
  const tag = h('input', {type: 'text', name: 'tag', value: query.get('tag') ?? '', list: 'tags', placeholder: 'e.g. season-2'});
  const status = h('select', {name: 'status', value: query.get('status') ?? ''},
    h('option', {value: ''}, 'Any status'),
    h('option', {value: 'finished'}, 'Finished'),
    h('option', {value: 'ingesting'}, 'Rendering'),
    h('option', {value: 'error'}, 'Error'));
  const feed = h('select', {name: 'feed', value: query.get('feed') ?? ''},
    h('option', {value: ''}, 'Any'),
    h('option', {value: 'true'}, 'Feed ready'),
    h('option', {value: 'false'}, 'Needs fixing'));
  const sort = h('select', {name: 'sort', value: query.get('sort') || (trash ? '-updated_at' : '-created_at')},
    SORTS.map(([value, label]) => h('option', {value}, label)));
  const form = h('form', {class: 'filters', role: 'search', 'aria-label': 'Filter images'},
    field('Search', search),
    field('Facet', facet),
    field('Tag', tag),
    field('Status', status),
    trash ? null : field('Feed', feed),
    field('Sort', sort),
    h('div', {class: 'filter-actions'},
      h('button', {type: 'submit'}, 'Apply'),
      h('button', {type: 'button', class: 'ghost', onclick: () => go({search: '', facet: '', tag: '', status: '', feed: '', sort: ''})}, 'Clear')),
    h('datalist', {id: 'facets'}),
    h('datalist', {id: 'tags'}));
  const apply = () => go({search: search.value.trim(), facet: facet.value.trim(), tag: tag.value.trim(),
    status: status.value, feed: trash ? '' : feed.value, sort: sort.value});
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    apply();
  });
  for (const select of [status, feed, sort]) select.addEventListener('change', apply);
  return form;
}

/** Facets and tags seen on this page, offered as suggestions. */
function fillSuggestions(form, images) {
  const facets = new Set(images.map((i) => i.facet).filter(Boolean));
  const tags = new Set(images.flatMap((i) => i.tags ?? []));
  form.querySelector('#facets').replaceChildren(...[...facets].sort().map((value) => h('option', {value})));
  form.querySelector('#tags').replaceChildren(...[...tags].sort().map((value) => h('option', {value})));
}

function emptyState(query, trash) {
  const filtered = ['search', 'facet', 'tag', 'status', 'feed'].some((name) => query.get(name));
  if (filtered) return h('div', {class: 'empty'}, h('h2', null, 'No image matches these filters'), h('p', null, 'Clear a filter to see more.'));
  if (trash) return h('div', {class: 'empty'}, h('h2', null, 'The trash is empty'), h('p', null, 'Deleted images appear here, and can be restored.'));
  return h('div', {class: 'empty'},
    icon('upload'),
    h('h2', null, 'No images yet'),
    h('p', null, 'Upload a cover to see every style Easel renders for it.'),
    session.can(WRITE) ? h('a', {class: 'button primary', href: '#/upload'}, 'Upload your first cover') : null);
}

function imageCard(image, trash, go, signal, refresh) {
  const title = image.name || image.id;
  const thumb = h('div', {class: 'thumb'});
  const thumbAsset = assetOf(image, 'thumb');
  if (trash) {
    thumb.append(h('span', {class: 'thumb-note'}, icon('trash'), 'In the trash'));
  } else if (thumbAsset) {
    // The thumb style is 100 px: shown crisp at its size, over a blurred
    // copy of itself that fills the card.
    const backdrop = h('img', {alt: '', class: 'thumb-backdrop', 'aria-hidden': 'true'});
    const img = h('img', {alt: '', width: 100, height: 100, class: 'thumb-image'});
    thumb.append(backdrop, img);
    thumb.classList.add('has-image');
    imageURL(thumbAsset.url, thumbAsset.sha256, {signal}).then((url) => {
      backdrop.src = url;
      img.src = url;
    }, (error) => {
      if (error.name === 'AbortError') return;
      thumb.replaceChildren(h('span', {class: 'thumb-note'}, icon('warn'), 'Preview failed'));
      thumb.title = error.message;
    });
  } else if (image.status === 'ingesting') {
    thumb.append(h('span', {class: 'spinner', 'aria-hidden': 'true'}), h('span', {class: 'thumb-note'}, 'Rendering\u2026'));
  } else {
    thumb.append(h('span', {class: 'thumb-note'}, icon('warn'), image.status === 'error' ? 'Not rendered' : 'No preview'));
  }
  const upscaled = upscaledStyles(image);
  const markers = h('div', {class: 'badges'},
    statusPill(image.status),
    trash ? null : feedBadge(image),
    upscaled.length ? h('span', {class: 'pill warn', title: `Enlarged from a smaller crop: ${upscaled.join(', ')}`}, 'Upscaled') : null);
  const body = h('div', {class: 'card-body'},
    h('h3', {class: 'card-title'}, title),
    markers,
    image.status === 'error' ? h('p', {class: 'card-error'}, image.error ?? 'The image could not be rendered.') : null,
    h('p', {class: 'card-meta'},
      image.width && image.height ? `${image.width}\u00d7${image.height}` : '',
      image.facet ? ` \u00b7 ${image.facet}` : '',
      trash ? ` \u00b7 deleted ${formatDate(image.deleted_at)}` : ''));
  const card = h('article', {class: 'card', 'data-id': image.id, 'data-status': image.status},
    trash ? h('div', {class: 'card-link'}, thumb, body)
      : h('a', {class: 'card-link', href: `#/images/${encodeURIComponent(image.id)}`, 'aria-label': `${title}, ${image.status}`}, thumb, body),
    image.tags?.length ? h('div', {class: 'tags'}, image.tags.map((tag) =>
      h('button', {type: 'button', class: 'tag', title: `Show images tagged ${tag}`, onclick: () => go({tag})}, tag))) : null,
    trash ? trashActions(image, refresh) : null);
  return card;
}

function trashActions(image, refresh) {
  if (!session.can(DELETE)) return null;
  const label = image.name || image.id;
  return h('div', {class: 'card-actions'},
    h('button', {type: 'button', onclick: async (event) => {
      const button = event.currentTarget;
      button.disabled = true;
      try {
        await api(`/v1/images/${encodeURIComponent(image.id)}/restore`, {method: 'POST'});
        notify(`Restored \u201c${label}\u201d.`);
        refresh();
      } catch (error) {
        notify(`Could not restore \u201c${label}\u201d: ${error.message}`, 'error');
        button.disabled = false;
      }
    }}, icon('restore'), 'Restore'),
    h('button', {type: 'button', class: 'danger', onclick: async () => {
      const sure = await confirmDialog({
        title: `Delete \u201c${label}\u201d forever?`,
        body: 'Its original and every rendered file are removed from storage. This cannot be undone.',
        confirm: 'Delete forever',
      });
      if (!sure) return;
      try {
        await api(`/v1/images/${encodeURIComponent(image.id)}?force=true`, {method: 'DELETE'});
        notify(`Deleted \u201c${label}\u201d for good.`);
        refresh();
      } catch (error) {
        notify(`Could not delete \u201c${label}\u201d: ${error.message}`, 'error');
      }
    }}, icon('trash'), 'Delete forever'));
}

function pager(meta, query, go) {
  const current = meta.current_page ?? 1;
  const last = Math.max(1, meta.last_page ?? 1);
  return h('nav', {class: 'pager', 'aria-label': 'Pages'},
    h('button', {type: 'button', disabled: current <= 1, onclick: () => go({page: String(current - 1)})}, '\u2190 Previous'),
    h('span', {class: 'pager-text'}, `Page ${current} of ${last} \u00b7 ${meta.total} image${meta.total === 1 ? '' : 's'}`),
    h('button', {type: 'button', disabled: current >= last, onclick: () => go({page: String(current + 1)})}, 'Next \u2192'));
}

/** Images still rendering: their cards update in place once they finish. */
async function watchIngesting(images, cards, go, signal) {
  let waiting = images.filter((i) => i.status === 'ingesting').map((i) => i.id);
  while (waiting.length && !signal.aborted) {
    try {
      await sleep(1500, signal);
      const ids = encodeURIComponent(waiting.join(','));
      const {data} = await api(`/v1/images?filter[id]=${ids}&include=assets&page[size]=${PAGE_SIZE}`, {signal});
      for (const image of data.data) {
        if (image.status === 'ingesting') continue;
        const fresh = imageCard(image, false, go, signal, null);
        cards.get(image.id)?.replaceWith(fresh);
        cards.set(image.id, fresh);
      }
      waiting = data.data.filter((i) => i.status === 'ingesting').map((i) => i.id);
    } catch (error) {
      if (error.name === 'AbortError') return;
      notify(`Could not refresh the library: ${error.message}`, 'error');
      return;
    }
  }
}
