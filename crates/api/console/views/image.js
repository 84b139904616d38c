// One image: its header (status, feed readiness, actions) and three tabs,
// each its own module: styles side by side, the crop editor, and details
// (metadata). The resource and its ETag are shared by the tabs through
// `current`, so a save in one tab is the version the next one edits.

import {api, session, sleep, DELETE, WRITE} from '../api.js';
import {confirmDialog, h, icon} from '../dom.js';
import {feedBadge, notify, problemBox, statusPill} from '../ui.js';
import * as styles from './styles.js';
import * as crop from './crop.js';
import * as details from './details.js';

const TABS = [
  ['styles', 'Styles & feed', 'layers', styles],
  ['crop', 'Crop', 'crop', crop],
  ['details', 'Details', 'edit', details],
];

export async function render(main, {params, signal, navigate, refresh}) {
  const [id, tab = 'styles'] = params;
  const path = `/v1/images/${encodeURIComponent(id)}`;
  const {data, etag} = await api(path, {signal});
  const current = {image: data, etag, path};
  const title = h('h1', {tabindex: '-1', id: 'image-title'}, data.name || data.id);
  const badges = h('div', {class: 'badges'});
  const banner = h('div', {class: 'banner-slot', 'aria-live': 'polite'});
  const showHeader = () => {
    title.textContent = current.image.name || current.image.id;
    badges.replaceChildren(...[statusPill(current.image.status), feedBadge(current.image),
      h('span', {class: 'dim'}, current.image.width ? `${current.image.width}\u00d7${current.image.height} original` : '')].filter(Boolean));
  };
  showHeader();

  const panel = h('section', {class: 'tab-panel', id: 'tab-panel', role: 'region', 'aria-labelledby': `tab-${tab}`});
  main.replaceChildren(
    h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'}, h('a', {href: '#/'}, 'Library'), ' / ', h('span', null, data.id)),
    h('div', {class: 'page-head image-head'},
      h('div', null, title, badges),
      actions(current, {navigate, refresh})),
    banner,
    h('nav', {class: 'tabs', 'aria-label': 'Image views'},
      TABS.map(([name, label, glyph]) => h('a', {
        href: `#/images/${encodeURIComponent(id)}/${name}`, id: `tab-${name}`,
        class: name === tab ? 'active' : null, 'aria-current': name === tab ? 'page' : null,
      }, icon(glyph), label))),
    panel);

  const view = (TABS.find(([name]) => name === tab) ?? TABS[0])[3];
  const context = {
    current,
    signal,
    refresh,
    /** A tab saved: the header shows the new state. */
    changed(image, newEtag) {
      current.image = image;
      current.etag = newEtag ?? current.etag;
      showHeader();
    },
    /** Polls until a render is done; the banner says what is going on. */
    async waitForRender(what) {
      banner.replaceChildren(h('div', {class: 'banner'}, h('span', {class: 'spinner', 'aria-hidden': 'true'}),
        `${what}: rendering every style. The old files are served until the new ones are in.`));
      try {
        while (current.image.status === 'ingesting') {
          await sleep(500, signal);
          const fresh = await api(path, {signal});
          context.changed(fresh.data, fresh.etag);
        }
      } finally {
        banner.replaceChildren();
      }
      return current.image;
    },
  };
  await view.render(panel, context);
  if (current.image.status === 'ingesting' && tab !== 'crop') {
    await context.waitForRender('Still rendering');
    if (!signal.aborted) refresh();
  }
}

function actions(current, {navigate, refresh}) {
  const id = current.image.id;
  const box = h('div', {class: 'actions'});
  if (session.can(WRITE)) {
    box.append(h('button', {type: 'button', id: 'rerender', onclick: async (event) => {
      const button = event.currentTarget;
      button.disabled = true;
      try {
        await api(`${current.path}/render`, {method: 'POST'});
        notify('Re-render queued.');
        refresh();
      } catch (error) {
        notify(`Could not re-render: ${error.message}`, 'error');
        button.disabled = false;
      }
    }}, icon('refresh'), 'Re-render'));
  }
  if (session.can(DELETE)) {
    box.append(h('button', {type: 'button', class: 'danger', id: 'delete', onclick: async () => {
      const label = current.image.name || id;
      const sure = await confirmDialog({
        title: `Move \u201c${label}\u201d to the trash?`,
        body: 'Its files stop being served at once. You can restore it from the trash.',
        confirm: 'Move to trash',
      });
      if (!sure) return;
      try {
        await api(current.path, {method: 'DELETE', ifMatch: current.etag});
        notify(`Moved \u201c${label}\u201d to the trash.`);
        navigate('/');
      } catch (error) {
        box.after(problemBox(error));
      }
    }}, icon('trash'), 'Delete'));
  }
  return box;
}
