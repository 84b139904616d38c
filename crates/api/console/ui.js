// Pieces several views share: problem boxes, notices, status pills,
// feed-readiness in plain words.

import {ApiProblem} from './api.js';
import {h, icon} from './dom.js';

/** A visible error: the problem document's title and detail. */
export function problemBox(error, {retry} = {}) {
  const title = error instanceof ApiProblem ? error.title : 'Something went wrong';
  const detail = error instanceof ApiProblem ? error.detail : String(error?.message ?? error);
  const status = error instanceof ApiProblem && error.status ? ` (${error.status}${error.code ? `, ${error.code}` : ''})` : '';
  return h('div', {class: 'problem', role: 'alert'},
    icon('warn'),
    h('div', null,
      h('strong', {class: 'problem-title'}, title, status),
      detail ? h('p', {class: 'problem-detail'}, detail) : null,
      retry ? h('button', {type: 'button', onclick: retry}, 'Try again') : null));
}

/** Reports an error in place of `target`'s content, and logs nothing. */
export function showProblem(target, error, options) {
  target.replaceChildren(problemBox(error, options));
}

/** A short message at the top of the page that goes away by itself. */
export function notify(message, kind = 'info') {
  const area = document.getElementById('notices');
  const note = h('div', {class: `notice ${kind}`}, message);
  area.append(note);
  setTimeout(() => note.remove(), kind === 'error' ? 10000 : 4000);
}

const STATUS_TEXT = {ingesting: 'Rendering', finished: 'Finished', error: 'Error'};

export function statusPill(status) {
  return h('span', {class: `pill status-${status}`}, STATUS_TEXT[status] ?? status);
}

export function feedBadge(image) {
  const ready = image.feed_ready?.ok;
  if (image.status !== 'finished') return null;
  return ready
    ? h('span', {class: 'pill feed-ok', title: 'The feed image passes Apple Podcasts\u2019 artwork rules'}, icon('check'), 'Feed ready')
    : h('span', {class: 'pill feed-bad', title: (image.feed_ready?.reasons ?? []).join('; ')}, icon('cross'), 'Not feed-ready');
}

/** The image's files that were enlarged from a smaller crop. */
export function upscaledStyles(image) {
  return (image.assets ?? []).filter((asset) => asset.upscaled).map((asset) => asset.style);
}

/** The asset of `style` (from `include=assets` or the single resource). */
export function assetOf(image, style) {
  return (image.assets ?? []).find((asset) => asset.style === style);
}

// What the API's feed_ready texts mean for a podcast host, and what to do.
const PLAIN = [
  [/^not square: (\d+)x(\d+)/, (m) => `The feed image is ${m[1]}\u00d7${m[2]} pixels, not square. Apple Podcasts and Spotify only take square covers.`],
  [/^smaller than 1400x1400: (\d+)x(\d+)/, (m) => `The feed image is only ${m[1]}\u00d7${m[2]} pixels. Apple Podcasts needs at least 1400\u00d71400: upload a larger original, or widen the crop.`],
  [/^larger than 3000x3000: (\d+)x(\d+)/, (m) => `The feed image is ${m[1]}\u00d7${m[2]} pixels. Apple Podcasts takes at most 3000\u00d73000.`],
  [/^(\S+) is not a JPEG or PNG/, (m) => `The ${m[1]} file is not a JPEG or PNG. Podcast directories take JPEG or PNG only.`],
  [/^(\S+) is enlarged from a smaller crop/, (m) => `The ${m[1]} file was blown up from a crop smaller than 1400 pixels, so it will look soft in podcast apps. Upload a sharper original of at least 1400\u00d71400, or widen the crop.`],
  [/^no feed style/, () => 'No feed image (square-3000 or itunes) was rendered yet. Wait for the render to finish, or re-render the image.'],
  [/^(\S+) is (\d+) KB, over the feed budget of (\d+) KB, even at quality (\d+)/, (m) => `The ${m[1]} file is ${m[2]} KB even at quality ${m[4]}, over the ${m[3]} KB that Spotify and most podcast hosts accept. A simpler picture, or a lower --feed-min-quality, makes it fit.`],
  [/^square-3000 is (\d+) KB, over the feed budget of (\d+) KB: the feed file is itunes/, (m) => `The 3000\u00d73000 file is ${m[1]} KB, over the ${m[2]} KB budget, so feeds get the 1400\u00d71400 itunes file instead.`],
  [/^(\S+) was encoded at quality (\d+) instead of (\d+) to fit the feed budget/, (m) => `The ${m[1]} file was saved at quality ${m[2]} instead of ${m[3]} so that it fits the feed byte budget.`],
  [/^(\S+)(?: \((\d+) px\))? is not public: bucket (\S+)/, (m) => `The ${m[1]} file is not public in bucket ${m[3]}, so podcast directories (which fetch without a key) cannot read it. Make the bucket\u2019s styles public.`],
  [/^(\S+)(?: \((\d+) px\))? is not public: the image's max_unauthorised \((-?\d+)\)/, (m) => `The ${m[1]} file is not public: this image shows sizes up to ${m[3]} px without a key, so podcast directories (which fetch without one) cannot read it. Raise its largest public size in Details, or empty it to follow the bucket.`],
  [/^not RGB: the file is (.+)/, (m) => `The feed image is ${m[1]}. Podcast directories want RGB colour.`],
  [/^has an alpha channel/, () => 'The feed image has transparency. Podcast directories want it without an alpha channel.'],
];

/** A feed_ready reason or warning in plain words (the API's text if unknown). */
export function plainWords(text) {
  for (const [pattern, say] of PLAIN) {
    const match = pattern.exec(text);
    if (match) return say(match);
  }
  return text;
}

/** Labelled form field: <label> + control + optional hint. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintEl = hint ? h('small', {class: 'hint', id: `${id}-hint`}, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', {class: 'field'}, h('label', {for: id}, label), control, hintEl);
}
