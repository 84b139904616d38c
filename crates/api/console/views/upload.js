// Upload: drop or pick several files; each gets a row with its real
// upload progress, then its status live until `finished` or `error`.

import {api, ApiProblem, session, sleep, uploadFile, READ, WRITE} from '../api.js';
import {formatBytes, h, icon, setProgress} from '../dom.js';
import {field, problemBox, statusPill} from '../ui.js';

/** Files sent at once: two keeps the bar of each moving on slow links. */
const PARALLEL = 2;

// Uploads outlive the page: a person may look at the library meanwhile and
// come back to this list, which keeps updating.
let list = null;
const queue = [];
let running = 0;

export async function render(main) {
  const heading = h('h1', {tabindex: '-1'}, 'Upload');
  if (!session.can(WRITE)) {
    main.replaceChildren(h('section', {class: 'panel'}, heading,
      h('p', null, 'This key has no image:write scope, so it cannot upload. Sign in with a key that has it.')));
    return;
  }
  const input = h('input', {type: 'file', id: 'file-input', name: 'file', multiple: true,
    accept: 'image/jpeg,image/png,image/webp,image/gif,image/tiff', class: 'visually-hidden'});
  const facet = h('input', {type: 'text', name: 'facet', placeholder: 'e.g. cover', id: 'upload-facet'});
  const tags = h('input', {type: 'text', name: 'tags', placeholder: 'e.g. season-2, trailer', id: 'upload-tags'});
  list ??= h('ul', {class: 'uploads', id: 'uploads', 'aria-live': 'polite'});
  const zone = h('div', {class: 'dropzone', id: 'dropzone'},
    icon('upload'),
    h('p', {class: 'dropzone-title'}, 'Drop covers here'),
    h('p', null, 'JPEG, PNG, WebP, GIF or TIFF. Several at once is fine.'),
    input,
    h('label', {for: 'file-input', class: 'button primary'}, 'Choose files'));

  const pump = () => {
    while (running < PARALLEL && queue.length) {
      const job = queue.shift();
      running += 1;
      job().finally(() => {
        running -= 1;
        pump();
      });
    }
  };
  const add = (files) => {
    for (const file of files) {
      const row = uploadRow(file);
      list.prepend(row.el);
      queue.push(() => send(file, row, {facet: facet.value.trim(), tags: tags.value.trim()}));
    }
    pump();
  };

  input.addEventListener('change', () => {
    add([...input.files]);
    input.value = '';
  });
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    add([...event.dataTransfer.files]);
  });

  main.replaceChildren(
    h('div', {class: 'page-head'}, heading,
      h('p', {class: 'page-sub'}, 'Each file becomes an image in bucket \u201c', session.info.bucket,
        '\u201d, named after the file. Easel keeps the original and renders every style.')),
    h('div', {class: 'upload-layout'},
      zone,
      h('div', {class: 'panel upload-options'},
        h('h2', null, 'For every file'),
        field('Facet', facet, 'A label such as cover or small cover.'),
        field('Tags', tags, 'Comma-separated.'))),
    h('h2', {class: 'section-title'}, 'This session\u2019s uploads'),
    list);
}

function uploadRow(file) {
  const bar = h('progress', {max: 100, value: 0, class: 'upload-bar'}, '0%');
  const state = h('span', {class: 'upload-state'}, 'Waiting\u2026');
  const detail = h('div', {class: 'upload-detail'});
  const el = h('li', {class: 'upload', 'data-file': file.name},
    h('div', {class: 'upload-head'},
      h('strong', {class: 'upload-name'}, file.name),
      h('span', {class: 'upload-size'}, formatBytes(file.size))),
    bar,
    h('div', {class: 'upload-status'}, state),
    detail);
  bar.setAttribute('aria-label', `Upload progress of ${file.name}`);
  return {el, bar, state, detail};
}

async function send(file, row, options) {
  const name = file.name.replace(/\.[^.]+$/, '');
  row.state.replaceChildren('Uploading\u2026');
  let created;
  try {
    created = await uploadFile(file, {name, facet: options.facet, tags: options.tags}, (sent, total) => {
      setProgress(row.bar, total ? sent / total : 0);
      row.state.replaceChildren(`Uploading ${formatBytes(sent)} of ${formatBytes(total)}`);
    });
  } catch (error) {
    row.el.dataset.status = 'refused';
    row.el.classList.add('failed');
    row.state.replaceChildren(statusPill('error'), ' Refused');
    row.detail.replaceChildren(problemBox(error));
    return;
  }
  setProgress(row.bar, 1);
  let image = created.data;
  const link = h('a', {href: `#/images/${encodeURIComponent(image.id)}`}, 'Open');
  const show = (current) => {
    row.el.dataset.status = current.status;
    row.el.dataset.id = current.id;
    const words = {ingesting: ' Uploaded; rendering every style\u2026', finished: ' Every style is ready.', error: ' Could not be rendered.'};
    row.state.replaceChildren(statusPill(current.status), words[current.status] ?? '', ' ', link);
    if (current.status === 'error') {
      row.el.classList.add('failed');
      row.detail.replaceChildren(problemBox(new ApiProblem(0, {
        title: `Render failed${current.error_code ? ` (${current.error_code})` : ''}`,
        detail: current.error ?? 'no reason was recorded',
      })));
    }
  };
  show(image);
  if (!session.can(READ)) {
    row.state.append(' (this key cannot read images, so their status is not shown)');
    return;
  }
  try {
    while (image.status === 'ingesting') {
      await sleep(500);
      image = (await api(`/v1/images/${encodeURIComponent(image.id)}`)).data;
      show(image);
    }
  } catch (error) {
    row.detail.replaceChildren(problemBox(error));
  }
}
