// DOM helpers. Everything the console shows is built with h(): user data
// (names, tags, error texts) only ever becomes text nodes, never markup,
// and no element gets a style attribute (the CSP forbids inline styles).

/** h('button', {class: 'x', onclick: f}, 'Label', child, [more]) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  append(el, children);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value == null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'value' || name === 'checked' || name === 'indeterminate') {
      // Properties, set after the children so a <select> has its options.
      el[name] = value;
    } else el.setAttribute(name, value === true ? '' : String(value));
  }
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
const ICONS = {
  upload: 'M12 16V4m0 0l-5 5m5-5l5 5M4 16v3a1 1 0 001 1h14a1 1 0 001-1v-3',
  library: 'M4 5h7v6H4zM13 5h7v6h-7zM4 13h7v6H4zM13 13h7v6h-7z',
  trash: 'M5 7h14M10 11v6M14 11v6M6 7l1 12a1 1 0 001 1h8a1 1 0 001-1l1-12M9 7V4h6v3',
  refresh: 'M20 11a8 8 0 10-2.3 5.7M20 4v7h-7',
  copy: 'M9 9h10v10H9zM5 15V5h10',
  check: 'M5 12l5 5 9-10',
  cross: 'M6 6l12 12M18 6L6 18',
  warn: 'M12 4l9 16H3zM12 10v4M12 17v.5',
  crop: 'M6 2v16h16M2 6h16v16',
  layers: 'M12 3l9 5-9 5-9-5zM3 13l9 5 9-5',
  edit: 'M4 20h4L19 9l-4-4L4 16zM14 6l4 4',
  batch: 'M4 6h16M4 12h10M4 18h6M17 15l3 3-3 3',
  key: 'M14 10a4 4 0 10-3.5 4L9 16H7v2H5v2H3v-3l7-7',
  out: 'M15 4h4v16h-4M10 8l-4 4 4 4M6 12h10',
  restore: 'M4 12a8 8 0 108-8H8M8 4L4 8l4 4',
  external: 'M14 4h6v6M20 4l-9 9M18 14v5a1 1 0 01-1 1H5a1 1 0 01-1-1V7a1 1 0 011-1h5',
};

/** A 20px stroke icon, hidden from screen readers (labels carry meaning). */
export function icon(name) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', ICONS[name] ?? ICONS.warn);
  svg.append(path);
  return svg;
}

const UNITS = ['bytes', 'KB', 'MB', 'GB'];

/** 1536 -> "1.5 KB" (1024-based, as the API's feed warnings count). */
export function formatBytes(bytes) {
  if (bytes == null || Number.isNaN(Number(bytes))) return '–';
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

export function formatDate(value) {
  if (!value) return '–';
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

/** Copies text and says so next to the button; falls back to selecting it. */
export async function copyText(text, button) {
  const original = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch {
    // No clipboard permission (plain http, headless): show the text instead.
    window.prompt('Copy this:', text);
  }
  setTimeout(() => {
    button.textContent = original;
  }, 1500);
}

/**
 * A modal confirmation (native <dialog>: focus is trapped and Escape
 * cancels). Resolves true only when the person confirms.
 */
export function confirmDialog({title, body, confirm, danger = true}) {
  return new Promise((resolve) => {
    const dialog = h('dialog', {class: 'dialog', 'aria-labelledby': 'dialog-title'});
    // Buttons close it by hand: no <form method="dialog">, so nothing can
    // ever be submitted anywhere (the CSP has form-action 'none').
    const no = h('button', {type: 'button', onclick: () => dialog.close('no')}, 'Cancel');
    const yes = h('button', {type: 'button', class: danger ? 'danger' : 'primary',
      onclick: () => dialog.close('yes')}, confirm);
    append(dialog, [
      h('h2', {id: 'dialog-title'}, title),
      h('p', null, body),
      h('div', {class: 'actions'}, no, yes),
    ]);
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'yes');
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}

/** Sets a <progress>'s value and its accessible text. */
export function setProgress(bar, fraction) {
  const percent = Math.max(0, Math.min(100, Math.round(fraction * 100)));
  bar.value = percent;
  bar.textContent = `${percent}%`;
}
