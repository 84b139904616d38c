// A draggable, resizable crop square over an image, in the image's own
// (oriented) pixels. Positions are percentages of the picture, so the
// box follows the picture at any width with no resize handling. Keyboard:
// arrows move it (Shift: faster), + and - resize it around its centre.

import {h} from '../dom.js';

const MIN = 16;
const HANDLES = [
  ['nw', -1, -1], ['n', 0, -1], ['ne', 1, -1], ['e', 1, 0],
  ['se', 1, 1], ['s', 0, 1], ['sw', -1, 1], ['w', -1, 0],
];

function clamp(value, low, high) {
  return Math.min(Math.max(value, low), high);
}

/** The largest centred square of a width×height area. */
export function centredSquare(width, height) {
  const side = Math.min(width, height);
  return {x: Math.floor((width - side) / 2), y: Math.floor((height - side) / 2), width: side, height: side};
}

export class CropBox {
  /**
   * @param {object} o
   * @param {string} o.src       the picture (a blob: URL)
   * @param {number} o.width     its width in pixels
   * @param {number} o.height    its height
   * @param {object} o.crop      {x, y, width, height}
   * @param {boolean} o.locked   keep the crop square
   * @param {boolean} o.readOnly no dragging
   * @param {function} o.onChange called with the crop after each change
   */
  constructor({src, width, height, crop, locked, readOnly, onChange}) {
    this.W = width;
    this.H = height;
    this.locked = locked;
    this.readOnly = readOnly;
    this.onChange = onChange;
    this.crop = {...crop};
    this.square = h('div', {class: 'crop-square'},
      h('div', {class: 'safe-area', title: 'Apple warns that podcast apps may cover the bottom fifth with text'},
        h('span', null, 'Apple may cover this fifth')));
    this.box = h('div', {
      class: 'crop-box', tabindex: readOnly ? null : '0', id: 'crop-box', role: 'group', 'aria-roledescription': 'crop square',
      'aria-label': 'Crop square. Arrow keys move it, Shift with an arrow moves it faster, plus and minus resize it.',
    }, this.square, readOnly ? null : HANDLES.map(([name]) => h('span', {class: `handle handle-${name}`, 'data-handle': name})));
    this.picture = h('img', {src, alt: 'The image, oriented, with the crop square over it', draggable: 'false'});
    this.el = h('div', {class: `cropper${locked ? ' locked' : ''}`}, this.picture, this.box);
    if (!readOnly) {
      this.box.addEventListener('pointerdown', (event) => this.#start(event));
      this.box.addEventListener('keydown', (event) => this.#key(event));
    }
    this.#draw();
  }

  /** Sets the crop from outside (the numeric fields); no onChange. */
  set(crop) {
    this.crop = {...crop};
    this.#draw();
  }

  setLocked(locked) {
    this.locked = locked;
    this.el.classList.toggle('locked', locked);
    if (locked && this.crop.width !== this.crop.height) {
      const inner = centredSquare(this.crop.width, this.crop.height);
      this.#commit({x: this.crop.x + inner.x, y: this.crop.y + inner.y, width: inner.width, height: inner.height});
    }
  }

  #commit(crop) {
    this.crop = {
      x: Math.round(crop.x), y: Math.round(crop.y),
      width: Math.round(crop.width), height: Math.round(crop.height),
    };
    this.#draw();
    this.onChange?.({...this.crop});
  }

  #draw() {
    const {x, y, width, height} = this.crop;
    const s = this.box.style;
    s.left = `${(x / this.W) * 100}%`;
    s.top = `${(y / this.H) * 100}%`;
    s.width = `${(width / this.W) * 100}%`;
    s.height = `${(height / this.H) * 100}%`;
    // Square styles use the centred square of the crop: the safe area
    // belongs to that square, not to a free crop's whole box.
    const inner = centredSquare(Math.max(width, 1), Math.max(height, 1));
    const q = this.square.style;
    q.left = `${(inner.x / Math.max(width, 1)) * 100}%`;
    q.top = `${(inner.y / Math.max(height, 1)) * 100}%`;
    q.width = `${(inner.width / Math.max(width, 1)) * 100}%`;
    q.height = `${(inner.height / Math.max(height, 1)) * 100}%`;
  }

  /** Image pixels per screen pixel. */
  #scale() {
    const rect = this.picture.getBoundingClientRect();
    return rect.width ? this.W / rect.width : 1;
  }

  #start(event) {
    if (event.button !== 0) return;
    event.preventDefault();
    this.box.focus({preventScroll: true});
    const handle = HANDLES.find(([name]) => name === event.target.dataset?.handle);
    const start = {...this.crop};
    const origin = {x: event.clientX, y: event.clientY};
    const scale = this.#scale();
    this.box.setPointerCapture(event.pointerId);
    this.el.classList.add('dragging');
    const move = (e) => {
      const dx = (e.clientX - origin.x) * scale;
      const dy = (e.clientY - origin.y) * scale;
      this.#commit(handle ? this.#resized(start, handle, dx, dy) : this.#moved(start, dx, dy));
    };
    const end = () => {
      this.box.removeEventListener('pointermove', move);
      this.box.removeEventListener('pointerup', end);
      this.box.removeEventListener('pointercancel', end);
      this.el.classList.remove('dragging');
    };
    this.box.addEventListener('pointermove', move);
    this.box.addEventListener('pointerup', end);
    this.box.addEventListener('pointercancel', end);
  }

  #moved(start, dx, dy) {
    return {
      ...start,
      x: clamp(start.x + dx, 0, this.W - start.width),
      y: clamp(start.y + dy, 0, this.H - start.height),
    };
  }

  #resized(start, [, hx, hy], dx, dy) {
    let left = start.x;
    let top = start.y;
    let right = start.x + start.width;
    let bottom = start.y + start.height;
    if (this.locked && hx !== 0 && hy !== 0) {
      // Along the diagonal, from the opposite corner, as large as fits.
      const anchorX = hx > 0 ? left : right;
      const anchorY = hy > 0 ? top : bottom;
      const room = Math.min(hx > 0 ? this.W - anchorX : anchorX, hy > 0 ? this.H - anchorY : anchorY);
      const side = clamp(start.width + (hx * dx + hy * dy) / 2, MIN, room);
      return {x: hx > 0 ? anchorX : anchorX - side, y: hy > 0 ? anchorY : anchorY - side, width: side, height: side};
    }
    if (this.locked) {
      // An edge of a square: grow both ways around the other axis' centre.
      const delta = hx !== 0 ? hx * dx : hy * dy;
      const centre = hx !== 0 ? start.y + start.height / 2 : start.x + start.width / 2;
      const anchor = hx > 0 ? left : hx < 0 ? right : hy > 0 ? top : bottom;
      const along = hx !== 0 ? (hx > 0 ? this.W - anchor : anchor) : (hy > 0 ? this.H - anchor : anchor);
      const across = hx !== 0 ? 2 * Math.min(centre, this.H - centre) : 2 * Math.min(centre, this.W - centre);
      const side = clamp(start.width + delta, MIN, Math.min(along, across));
      const from = (hx > 0 || hy > 0) ? anchor : anchor - side;
      return hx !== 0
        ? {x: from, y: centre - side / 2, width: side, height: side}
        : {x: centre - side / 2, y: from, width: side, height: side};
    }
    if (hx < 0) left = clamp(left + dx, 0, right - MIN);
    if (hx > 0) right = clamp(right + dx, left + MIN, this.W);
    if (hy < 0) top = clamp(top + dy, 0, bottom - MIN);
    if (hy > 0) bottom = clamp(bottom + dy, top + MIN, this.H);
    return {x: left, y: top, width: right - left, height: bottom - top};
  }

  #key(event) {
    const step = event.shiftKey ? Math.max(10, Math.round(Math.max(this.W, this.H) / 50)) : 1;
    const c = this.crop;
    const moves = {ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step]};
    if (moves[event.key]) {
      event.preventDefault();
      const [dx, dy] = moves[event.key];
      this.#commit(this.#moved(c, dx, dy));
    } else if (['+', '=', '-', '_'].includes(event.key)) {
      event.preventDefault();
      const grow = ['+', '='].includes(event.key) ? step : -step;
      const width = clamp(c.width + 2 * grow, MIN, this.W);
      const height = this.locked ? width : clamp(c.height + 2 * grow, MIN, this.H);
      const side = this.locked ? Math.min(width, this.H) : null;
      const w = side ?? width;
      const hgt = side ?? height;
      this.#commit({
        x: clamp(c.x + (c.width - w) / 2, 0, this.W - w),
        y: clamp(c.y + (c.height - hgt) / 2, 0, this.H - hgt),
        width: w, height: hgt,
      });
    }
  }
}
