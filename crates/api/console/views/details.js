// Details: edit name, facet, tags, the string/number fields and who may
// see the image (max_unauthorised, roles). Only the
// fields a person changed are sent, with If-Match, so a conflicting edit
// elsewhere is a clear 412 message instead of a silent overwrite.

import {api, imageURL, session, WRITE} from '../api.js';
import {formatBytes, formatDate, h, icon} from '../dom.js';
import {field, notify, problemBox} from '../ui.js';

const TEXT = ['name', 'facet', 'string1', 'string2', 'string3'];
const NUMBERS = ['number1', 'number2', 'number3'];

export async function render(panel, context) {
  const {current} = context;
  const image = current.image;
  const canWrite = session.can(WRITE);
  const inputs = {};
  for (const name of TEXT) {
    inputs[name] = name.startsWith('string')
      ? h('textarea', {name, id: `meta-${name}`, rows: 2, readonly: !canWrite, value: image[name] ?? ''})
      : h('input', {type: 'text', name, id: `meta-${name}`, readonly: !canWrite, value: image[name] ?? ''});
  }
  for (const name of NUMBERS) {
    inputs[name] = h('input', {type: 'number', step: 'any', name, id: `meta-${name}`, readonly: !canWrite,
      value: image[name] == null ? '' : String(image[name])});
  }
  inputs.tags = h('input', {type: 'text', name: 'tags', id: 'meta-tags', readonly: !canWrite, value: (image.tags ?? []).join(', ')});
  // Empty follows the bucket's setting (null); -1 is open to everyone.
  inputs.max_unauthorised = h('input', {type: 'number', step: 1, min: -1, name: 'max_unauthorised', id: 'meta-max-unauthorised',
    readonly: !canWrite, value: image.max_unauthorised == null ? '' : String(image.max_unauthorised)});
  inputs.roles = h('input', {type: 'text', name: 'roles', id: 'meta-roles', readonly: !canWrite, value: (image.roles ?? []).join(', ')});
  const result = h('div', {id: 'meta-result', 'aria-live': 'polite'});
  const save = h('button', {type: 'submit', class: 'primary', id: 'meta-save'}, icon('check'), 'Save details');

  /** The changed fields as the PATCH body; empty text clears a field. */
  const changes = () => {
    const body = {};
    for (const name of TEXT) {
      const value = inputs[name].value.trim();
      if (value !== (current.image[name] ?? '')) body[name] = value === '' ? null : value;
    }
    for (const name of NUMBERS) {
      const raw = inputs[name].value.trim();
      const value = raw === '' ? null : Number(raw);
      if (value !== (current.image[name] ?? null)) body[name] = value;
    }
    const tags = inputs.tags.value.split(',').map((t) => t.trim()).filter(Boolean);
    if (tags.join('\n') !== (current.image.tags ?? []).join('\n')) body.tags = tags;
    const limit = inputs.max_unauthorised.value.trim();
    const maxUnauthorised = limit === '' ? null : Number(limit);
    if (maxUnauthorised !== (current.image.max_unauthorised ?? null)) body.max_unauthorised = maxUnauthorised;
    const roles = inputs.roles.value.split(',').map((r) => r.trim()).filter(Boolean);
    if (roles.join('\n') !== (current.image.roles ?? []).join('\n')) body.roles = roles;
    return body;
  };

  const form = h('form', {class: 'panel meta-form', id: 'meta-form', novalidate: true},
    h('h2', null, 'Metadata'),
    h('div', {class: 'meta-grid'},
      field('Name', inputs.name),
      field('Facet', inputs.facet, 'A label such as cover, small cover or grill.'),
      field('Tags', inputs.tags, 'Comma-separated.'),
      field('String 1', inputs.string1), field('String 2', inputs.string2), field('String 3', inputs.string3),
      field('Number 1', inputs.number1), field('Number 2', inputs.number2), field('Number 3', inputs.number3),
      field('Largest public size (px)', inputs.max_unauthorised,
        'Styles and IIIF sizes up to this longest edge need no key; -1 opens everything, 0 nothing; empty follows the bucket.'),
      field('Roles', inputs.roles, 'Comma-separated role URIs: a key holding one sees the image above that size.')),
    canWrite ? h('div', {class: 'actions'}, save) : h('p', {class: 'muted'}, 'This key cannot change images (it has no image:write scope).'),
    result);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = changes();
    result.replaceChildren();
    if (Object.keys(body).length === 0) {
      result.append(h('p', {class: 'muted'}, 'Nothing changed.'));
      return;
    }
    save.disabled = true;
    try {
      const {data, etag} = await api(current.path, {method: 'PATCH', body, ifMatch: current.etag});
      context.changed(data, etag);
      const fresh = facts(data);
      factsPanel.replaceWith(fresh);
      factsPanel = fresh;
      result.append(h('div', {class: 'success', id: 'meta-saved'}, icon('check'), 'Saved.'));
      notify('Details saved.');
    } catch (error) {
      const box = problemBox(error);
      if (error.status === 412) {
        box.id = 'meta-conflict';
        box.append(h('p', null, 'Someone else changed this image since you opened it, so nothing was saved. ',
          h('button', {type: 'button', onclick: () => context.refresh()}, 'Reload it'),
          ' to see their version, then make your change again.'));
      }
      result.append(box);
    } finally {
      save.disabled = false;
    }
  });

  let factsPanel = facts(image);
  panel.replaceChildren(h('div', {class: 'details-layout'}, form, factsPanel));
}

/** What the server knows about the original. */
function facts(image) {
  const download = h('button', {type: 'button', class: 'small', id: 'download-original', onclick: async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const url = await imageURL(image.links.original, image.sha256, {keep: false});
      const link = h('a', {href: url, download: image.name || image.id});
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (error) {
      notify(`Could not download the original: ${error.message}`, 'error');
    } finally {
      button.disabled = false;
    }
  }}, 'Download original');
  const row = (label, value) => h('div', {class: 'fact'}, h('dt', null, label), h('dd', null, value ?? '\u2013'));
  return h('section', {class: 'panel'},
    h('h2', null, 'Original'),
    h('dl', {class: 'facts'},
      row('Id', image.id),
      row('Bucket', image.bucket),
      row('Size', image.width ? `${image.width}\u00d7${image.height}` : null),
      row('Bytes', image.size != null ? formatBytes(image.size) : null),
      row('Type', image.mimetype),
      row('Crop', image.crop ? `${image.crop.x}, ${image.crop.y}, ${image.crop.width}\u00d7${image.crop.height}` : 'centred square'),
      row('Origin', image.origin),
      row('Public up to', image.max_unauthorised == null ? 'the bucket\u2019s setting'
        : image.max_unauthorised < 0 ? 'everything' : image.max_unauthorised === 0 ? 'nothing without a key' : `${image.max_unauthorised} px`),
      row('Roles', image.roles?.length ? image.roles.join(', ') : null),
      row('Batch', image.batch),
      row('Uploaded', formatDate(image.created_at)),
      row('Changed', formatDate(image.updated_at)),
      row('Rendered', formatDate(image.finished_at)),
      row('sha256', image.sha256)),
    image.status === 'error' ? problemBox({message: image.error ?? 'unknown reason'}) : null,
    image.sha256 ? download : null);
}
