// The podcast tags (<itunes:image>, <podcast:image>) of an image, from
// `GET /v1/images/{id}/podcast`, as the server writes them: absolute,
// versioned URLs of the feed file and the other useful squares.

import {api} from '../api.js';
import {copyText, h, icon} from '../dom.js';
import {problemBox} from '../ui.js';

export async function render(panel, {current, signal}) {
  const body = h('div', {class: 'podcast-body'}, h('p', {class: 'loading'}, 'Asking for the tags\u2026'));
  panel.replaceChildren(h('h2', {id: 'podcast-title'}, 'Podcast tags'), body);
  let tags;
  try {
    tags = (await api(`${current.path}/podcast`, {signal})).data;
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    panel.dataset.state = 'error';
    body.replaceChildren(problemBox(error));
    return;
  }
  panel.dataset.state = 'ready';
  const xml = typeof tags.xml === 'string' ? tags.xml : null;
  const parts = [];
  if (xml) {
    const copy = h('button', {type: 'button', class: 'small', onclick: (event) => copyText(xml, event.currentTarget)}, icon('copy'), 'Copy tags');
    parts.push(h('p', null, 'Paste these into your feed\u2019s ', h('code', null, '<channel>'), ':'),
      h('pre', {class: 'code', id: 'podcast-xml', tabindex: '0'}, xml), copy);
  }
  const fields = Object.entries(tags).filter(([name]) => name !== 'xml');
  if (fields.length) {
    parts.push(h('details', {class: 'more', open: !xml},
      h('summary', null, 'As data'),
      h('dl', {class: 'facts'}, fields.map(([name, value]) =>
        h('div', {class: 'fact', 'data-field': name}, h('dt', null, name),
          h('dd', null, typeof value === 'string' ? value : JSON.stringify(value, null, 1)))))));
  }
  body.replaceChildren(...parts);
}
