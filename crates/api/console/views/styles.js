// Styles side by side: every rendered file with its facts and a copy-URL
// button, the feed-readiness report in plain words, and the podcast tags.
// Files are shown from the URLs the API links to, never built here, and
// every field an asset has is shown (fields added later included).

import {imageURL} from '../api.js';
import {append, copyText, formatBytes, formatDate, h, icon} from '../dom.js';
import {plainWords} from '../ui.js';
import * as podcast from './podcast.js';

const ORDER = ['thumb', 'square-400', 'square-640', 'square-888', 'itunes', 'square-3000', 'regular', 'stripped-original'];

const ABOUT = {
  'stripped-original': 'The original without metadata, rotation applied',
  regular: 'The crop at full size',
  thumb: 'Lists and pickers',
  'square-400': 'Small players',
  'square-640': 'Apps and web players',
  'square-888': 'Large players',
  itunes: 'Apple Podcasts (1400\u00d71400)',
  'square-3000': 'The best feed image, when the crop is big enough',
};

// Shown in their own places on the card; any other field goes in "More".
const SHOWN = new Set(['style', 'url', 'width', 'height', 'size', 'mimetype', 'quality', 'upscaled', 'sha256', 'created_at']);

export async function render(panel, {current, signal}) {
  const image = current.image;
  const assets = [...(image.assets ?? [])].sort((a, b) => rank(a.style) - rank(b.style) || a.style.localeCompare(b.style));
  const grid = h('div', {class: 'styles-grid', id: 'styles-grid'});
  if (assets.length === 0) {
    grid.append(h('p', {class: 'empty'}, image.status === 'error'
      ? `This image could not be rendered: ${image.error ?? 'no reason recorded'}`
      : 'No style is rendered yet.'));
  }
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      observer.unobserve(entry.target);
      entry.target.dispatchEvent(new Event('visible'));
    }
  }, {rootMargin: '200px'});
  signal.addEventListener('abort', () => observer.disconnect());
  for (const asset of assets) grid.append(styleCard(asset, observer, signal));

  const podcastPanel = h('section', {class: 'panel podcast', id: 'podcast', 'aria-labelledby': 'podcast-title'});
  panel.replaceChildren(
    h('div', {class: 'styles-layout'},
      h('div', {class: 'styles-side'},
        readiness(image),
        podcastPanel),
      h('div', null,
        h('h2', {class: 'section-title'}, `${assets.length} rendered file${assets.length === 1 ? '' : 's'}`),
        grid)));
  await podcast.render(podcastPanel, {current, signal});
}

function rank(style) {
  const index = ORDER.indexOf(style);
  return index < 0 ? ORDER.length : index;
}

function styleCard(asset, observer, signal) {
  const preview = h('div', {class: 'style-preview'}, h('span', {class: 'spinner', 'aria-hidden': 'true'}));
  preview.addEventListener('visible', () => {
    imageURL(asset.url, asset.sha256, {signal}).then((url) => {
      preview.replaceChildren(h('img', {src: url, alt: `${asset.style}, ${asset.width}\u00d7${asset.height}`}));
    }, (error) => {
      if (error.name !== 'AbortError') preview.replaceChildren(h('span', {class: 'thumb-note'}, icon('warn'), error.message));
    });
  }, {once: true});
  observer.observe(preview);
  const absolute = new URL(asset.url, window.location.href).href;
  const copy = h('button', {type: 'button', class: 'small', 'aria-label': `Copy the URL of ${asset.style}`,
    onclick: (event) => copyText(absolute, event.currentTarget)}, icon('copy'), 'Copy URL');
  const extra = Object.entries(asset).filter(([name]) => !SHOWN.has(name));
  return h('article', {class: 'style-card', 'data-style': asset.style},
    preview,
    h('div', {class: 'style-body'},
      h('h3', null, asset.style, asset.upscaled ? h('span', {class: 'pill warn', title: 'Enlarged from a smaller crop: it will look soft'}, 'Upscaled') : null),
      h('p', {class: 'style-about'}, ABOUT[asset.style] ?? ''),
      h('dl', {class: 'facts'},
        fact('Size', `${asset.width}\u00d7${asset.height}`, 'dimensions'),
        fact('Bytes', `${formatBytes(asset.size)}`, 'bytes'),
        fact('Type', asset.mimetype, 'mimetype'),
        'quality' in asset ? fact('Quality', asset.quality ?? '\u2013', 'quality') : null,
        fact('Upscaled', asset.upscaled ? 'yes' : 'no', 'upscaled')),
      h('details', {class: 'more'}, h('summary', null, 'More'),
        h('dl', {class: 'facts'}, fact('sha256', asset.sha256, 'sha256'), fact('Rendered', formatDate(asset.created_at), 'created_at'),
          extra.map(([name, value]) => fact(name, typeof value === 'object' ? JSON.stringify(value) : String(value), name)))),
      h('div', {class: 'style-actions'}, copy,
        h('a', {class: 'button small ghost', href: asset.url, target: '_blank', rel: 'noopener'}, icon('external'), 'Open'))));
}

function fact(label, value, name) {
  return h('div', {class: 'fact', 'data-field': name}, h('dt', null, label), h('dd', null, value));
}

/** The feed-readiness report, in words a podcast host can act on. */
function readiness(image) {
  const report = image.feed_ready ?? {ok: false, reasons: [], warnings: []};
  const box = h('section', {class: `panel readiness ${report.ok ? 'ok' : 'bad'}`, id: 'readiness', 'aria-labelledby': 'readiness-title'});
  const headline = image.status === 'ingesting' ? 'Checking after the render\u2026'
    : !report.ok ? 'Podcast directories would refuse this cover'
      : report.warnings.length ? 'Feed-ready, with a warning' : 'Feed-ready for Apple Podcasts and Spotify';
  append(box, [
    h('h2', {id: 'readiness-title'}, report.ok ? icon('check') : icon('cross'), headline),
    report.ok ? h('p', null, 'The feed image is square, between 1400 and 3000 pixels, JPEG or PNG, and not enlarged.') : null,
  ]);
  if (report.reasons.length) {
    box.append(h('ul', {class: 'reasons'}, report.reasons.map((reason) =>
      h('li', {class: 'reason', title: reason}, icon('cross'), plainWords(reason)))));
  }
  if (report.warnings.length) {
    box.append(h('ul', {class: 'warnings'}, report.warnings.map((warning) =>
      h('li', {class: 'warning', title: warning}, icon('warn'), plainWords(warning)))));
  }
  if (!report.ok && image.status === 'finished') {
    box.append(h('p', null, h('a', {href: `#/images/${encodeURIComponent(image.id)}/crop`}, 'Adjust the crop'),
      ' or upload a larger original.'));
  }
  return box;
}
