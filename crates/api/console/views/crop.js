// The crop editor: the oriented picture (the `stripped-original` file)
// with the crop square over it, numeric x, y, width and height kept in
// sync with it, previews of the square styles, and Save, which PATCHes the
// crop (If-Match) and follows the re-render until the new files are in.

import {api, ApiProblem, imageURL, session, WRITE} from '../api.js';
import {h, icon} from '../dom.js';
import {assetOf, notify, problemBox} from '../ui.js';
import {CropBox, centredSquare} from '../widgets/cropbox.js';

const PREVIEWS = [['thumb', 100, 56], ['square-640', 640, 96], ['itunes', 1400, 150]];
const FIELDS = ['x', 'y', 'width', 'height'];

/** Why a crop would be refused, as the API would say it; null if fine. */
export function cropProblem(crop, width, height) {
  for (const name of FIELDS) {
    if (!Number.isInteger(crop[name]) || crop[name] < 0) return `${name} must be a whole number of pixels, 0 or more`;
  }
  if (crop.width === 0 || crop.height === 0) return 'width and height must be at least 1';
  if (crop.x + crop.width > width) return `the right edge (x + width = ${crop.x + crop.width}) is past the image\u2019s width, ${width}`;
  if (crop.y + crop.height > height) return `the bottom edge (y + height = ${crop.y + crop.height}) is past the image\u2019s height, ${height}`;
  return null;
}

function parseCrop(text) {
  const parts = String(text ?? '').split(',').map(Number);
  return parts.length === 4 && parts.every(Number.isFinite)
    ? {x: parts[0], y: parts[1], width: parts[2], height: parts[3]}
    : null;
}

export async function render(panel, context) {
  const {current, signal} = context;
  const image = current.image;
  const source = assetOf(image, 'stripped-original');
  if (!source || !image.width || !image.height) {
    panel.replaceChildren(h('div', {class: 'panel'}, h('p', null, image.status === 'error'
      ? `This image could not be rendered (${image.error ?? 'no reason recorded'}), so there is nothing to crop.`
      : 'The picture is not rendered yet. The crop editor opens once it is.')));
    if (image.status === 'ingesting') {
      await context.waitForRender('Rendering');
      if (!signal.aborted) context.refresh();
    }
    return;
  }
  const W = image.width;
  const H = image.height;
  const canWrite = session.can(WRITE);
  panel.replaceChildren(h('p', {class: 'loading'}, 'Loading the picture\u2026'));
  const src = await imageURL(source.url, source.sha256, {signal, keep: false});
  // Later, not at once: the crop box's own <img> may still be reading it
  // when a person moves on, and a revoked URL fails that load.
  signal.addEventListener('abort', () => setTimeout(() => URL.revokeObjectURL(src), 10000));
  const picture = new Image();
  picture.src = src;
  await picture.decode();

  const initial = (typeof image.crop === 'string' ? parseCrop(image.crop) : image.crop) ?? centredSquare(W, H);
  const inputs = Object.fromEntries(FIELDS.map((name) => [name, h('input', {
    type: 'number', inputmode: 'numeric', min: 0, step: 1, id: `crop-${name}`, name,
    max: name === 'x' || name === 'width' ? W : H, value: String(initial[name]), readonly: !canWrite,
  })]));
  const lock = h('input', {type: 'checkbox', id: 'crop-lock', checked: initial.width === initial.height});
  const message = h('p', {class: 'crop-message', id: 'crop-message', 'aria-live': 'polite'});
  const result = h('div', {class: 'crop-result', id: 'crop-result', 'aria-live': 'polite'});
  const save = h('button', {type: 'submit', class: 'primary', id: 'crop-save'}, icon('check'), 'Save crop');
  const previews = PREVIEWS.map(([style, side, shown]) => {
    const canvas = h('canvas', {width: shown * 2, height: shown * 2, class: `preview preview-${shown}`,
      'aria-label': `Preview of ${style}`, role: 'img'});
    return {style, side, shown, canvas};
  });

  let crop = {...initial};
  const box = new CropBox({
    src, width: W, height: H, crop, locked: lock.checked, readOnly: !canWrite,
    onChange: (next) => {
      crop = next;
      for (const name of FIELDS) inputs[name].value = String(next[name]);
      changed();
    },
  });

  let frame = 0;
  const drawPreviews = () => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => {
      const inner = centredSquare(crop.width, crop.height);
      for (const {canvas} of previews) {
        const context2d = canvas.getContext('2d');
        context2d.imageSmoothingQuality = 'high';
        context2d.clearRect(0, 0, canvas.width, canvas.height);
        context2d.drawImage(picture, crop.x + inner.x, crop.y + inner.y, inner.width, inner.height, 0, 0, canvas.width, canvas.height);
      }
    });
  };

  const changed = () => {
    const problem = cropProblem(crop, W, H);
    const inner = centredSquare(crop.width || 1, crop.height || 1);
    message.classList.toggle('bad', Boolean(problem));
    if (problem) {
      message.textContent = `This crop would be refused: ${problem}.`;
    } else {
      const notes = [`Square styles use the centred ${inner.width}\u00d7${inner.height} square of this crop.`];
      if (inner.width < 1400) notes.push(`Under 1400 pixels, the itunes file will be enlarged and not feed-ready.`);
      else if (inner.width >= 3000) notes.push('Big enough for square-3000.');
      message.textContent = notes.join(' ');
      drawPreviews();
    }
    save.disabled = Boolean(problem) || !canWrite;
  };

  const fromFields = (edited) => {
    const next = Object.fromEntries(FIELDS.map((name) => [name, Number(inputs[name].value)]));
    if (lock.checked) {
      // Kept square: the side follows whichever of width or height was typed.
      const side = edited === 'height' ? next.height : next.width;
      next.width = side;
      next.height = side;
      inputs.width.value = String(side);
      inputs.height.value = String(side);
    }
    crop = next;
    if (!cropProblem(crop, W, H)) box.set(crop);
    changed();
  };
  for (const name of FIELDS) inputs[name].addEventListener('input', () => fromFields(name));
  lock.addEventListener('change', () => box.setLocked(lock.checked));

  const form = h('form', {class: 'crop-form', id: 'crop-form', novalidate: true},
    h('fieldset', {class: 'crop-fields'},
      h('legend', null, 'Crop, in pixels of the oriented picture'),
      FIELDS.map((name) => h('div', {class: 'field'}, h('label', {for: `crop-${name}`}, name), inputs[name]))),
    h('div', {class: 'check'}, lock, h('label', {for: 'crop-lock'}, 'Keep it square')),
    message,
    canWrite ? h('div', {class: 'actions'},
      save,
      h('button', {type: 'button', id: 'crop-centre', onclick: () => {
        const square = centredSquare(W, H);
        lock.checked = true;
        box.setLocked(true);
        box.set(square);
        crop = square;
        for (const name of FIELDS) inputs[name].value = String(square[name]);
        changed();
      }}, 'Centred square'),
      image.crop ? h('button', {type: 'button', class: 'ghost', id: 'crop-remove', onclick: () => submit(null)}, 'Remove crop') : null)
      : h('p', {class: 'muted'}, 'This key cannot change crops (it has no image:write scope).'),
    result);

  const submit = async (value) => {
    save.disabled = true;
    result.replaceChildren();
    const before = assetOf(current.image, 'itunes')?.sha256;
    try {
      const {data, etag} = await api(current.path, {method: 'PATCH', body: {crop: value}, ifMatch: current.etag, signal});
      context.changed(data, etag);
      const done = data.status === 'ingesting' ? await context.waitForRender('New crop saved') : data;
      if (done.status === 'error') {
        result.replaceChildren(problemBox(new ApiProblem(0, {title: 'The re-render failed', detail: done.error ?? 'no reason recorded'})));
        return;
      }
      const after = assetOf(done, 'itunes');
      result.replaceChildren(h('div', {class: 'success', id: 'crop-saved'}, icon('check'),
        before && after?.sha256 !== before
          ? `Saved. The new files are in: itunes is now ${after.width}\u00d7${after.height}, ${Math.round(after.size / 1024)} KB.`
          : 'Saved. The files did not need to change.'));
      notify('Crop saved and every style re-rendered.');
    } catch (error) {
      if (error.name === 'AbortError') return;
      const box412 = problemBox(error);
      result.replaceChildren(box412);
      if (error.status === 412) {
        box412.append(h('p', null, 'Someone changed this image since you opened it. ',
          h('button', {type: 'button', onclick: () => context.refresh()}, 'Reload it'),
          ' and set the crop again.'));
      }
    } finally {
      changed();
    }
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!cropProblem(crop, W, H)) submit({...crop});
  });

  panel.replaceChildren(h('div', {class: 'crop-layout'},
    h('div', {class: 'crop-stage'}, box.el,
      h('p', {class: 'hint'}, 'Drag the square to move it, its corners to resize it. The shaded band is the bottom fifth that Apple warns podcast apps may cover with text.')),
    h('div', {class: 'crop-side'},
      h('div', {class: 'panel'}, form),
      h('div', {class: 'panel previews'},
        h('h2', null, 'Preview'),
        h('div', {class: 'preview-row'}, previews.map(({style, side, canvas}) =>
          h('figure', null, canvas, h('figcaption', null, style, h('small', null, ` ${side}\u00d7${side}`))))),
        h('p', {class: 'hint'}, 'Drawn here from the picture; Save renders the real files.')))));
  changed();
}
