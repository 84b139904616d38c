// The Easel Console end to end, in Debian's headless Chromium driven by
// puppeteer-core (which downloads no browser). Starts `easel serve` on a
// free port with a fresh data dir, makes keys with the CLI, and drives the
// page as a person would: sign in, upload, crop through the numeric
// fields, save, and checks the result through the API. Fails on any
// console error, any request that leaves 127.0.0.1 and any failed
// response the test did not provoke on purpose. Screenshots go to
// target/console-screenshots/.
//
//   EASEL_BIN=target/debug/easel node --test tests/browser/console.test.mjs
//
// Environment: EASEL_BIN (default target/debug/easel), CHROMIUM (default
// /usr/bin/chromium), SCREENSHOTS (default target/console-screenshots).

import {after, afterEach, before, test} from 'node:test';
import assert from 'node:assert/strict';
import {execFileSync, spawn} from 'node:child_process';
import {createHash} from 'node:crypto';
import {mkdtempSync, mkdirSync, readFileSync, rmSync} from 'node:fs';
import {createServer} from 'node:http';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import puppeteer from 'puppeteer-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const easel = path.resolve(root, process.env.EASEL_BIN ?? 'target/debug/easel');
const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium';
const shots = path.resolve(root, process.env.SCREENSHOTS ?? 'target/console-screenshots');
const PHOTO = path.join(root, 'fixtures/photo/olympus_e-p3_4032x3024.jpg');
const PHOTO_NAME = 'olympus_e-p3_4032x3024';
const NOT_AN_IMAGE = path.join(root, 'fixtures/SOURCES.md');
const SMALL = path.join(root, 'fixtures/jpeg/hopper_orientation_6.jpg');
const WAIT = 30_000;
// The pinned OpenSeadragon release (BSD-3-Clause, see its LICENSE.txt),
// installed by npm from package-lock.json and served from here.
const OPENSEADRAGON = path.join(root, 'tests/browser/node_modules/openseadragon/build/openseadragon/openseadragon.min.js');

let server;
let base;
let dataDir;
let profileDir;
let fullKey;
let readOnlyKey;
let browser;
let page;
let imageId;

// What the page did that a test must account for.
const consoleErrors = [];
const offsite = [];
const failedResponses = [];
// Failed responses a test provokes on purpose: [method, url pattern, status].
const expectedFailures = [];

function expectFailure(method, pattern, status) {
  expectedFailures.push([method, pattern, status]);
}

function isExpected({method, url, status}) {
  return expectedFailures.some(([m, pattern, s]) => m === method && pattern.test(url) && s === status);
}

function startServer() {
  dataDir = mkdtempSync(path.join(tmpdir(), 'easel-console-'));
  const env = {...process.env, EASEL_DATA_DIR: dataDir, EASEL_LISTEN: '127.0.0.1:0', RUST_LOG: 'warn'};
  // The embedded defaults, whatever the caller's environment says.
  delete env.EASEL_DATABASE_URL;
  delete env.EASEL_STORE_URL;
  delete env.EASEL_PUBLIC_URL;
  const key = (scopes) => execFileSync(easel, ['keys', 'create', '--bucket', 'default', '--scopes', scopes],
    {env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim();
  fullKey = key('image:read,image:write,image:delete');
  readOnlyKey = key('image:read');
  server = spawn(easel, ['serve'], {env, stdio: ['ignore', 'pipe', 'pipe']});
  let log = '';
  server.stderr.on('data', (chunk) => {
    log += chunk;
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`easel serve did not start:\n${log}`)), 30_000);
    server.stdout.on('data', (chunk) => {
      out += chunk;
      const match = /easel: listening on (http:\/\/\S+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    server.on('exit', (code) => reject(new Error(`easel serve exited (${code}):\n${log}`)));
  });
}

/** The API from outside the browser, with the full key. */
async function api(pathname, {method = 'GET', body, headers = {}} = {}) {
  const response = await fetch(`${base}${pathname}`, {
    method,
    headers: {Authorization: `Bearer ${fullKey}`, ...(body ? {'Content-Type': 'application/json'} : {}), ...headers},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return {status: response.status, headers: response.headers, body: text ? JSON.parse(text) : null};
}

async function shot(name) {
  await page.screenshot({path: path.join(shots, `${name}.png`), fullPage: true});
}

async function go(hash) {
  await page.evaluate((h) => {
    window.location.hash = h;
  }, hash);
}

/** Replaces an input's value by typing, as a person would. */
async function typeInto(selector, text) {
  await page.click(selector, {count: 3});
  await page.keyboard.press('Backspace');
  await page.type(selector, text);
}

async function textOf(selector) {
  return page.$eval(selector, (el) => el.textContent.replace(/\s+/g, ' ').trim());
}

before(async () => {
  mkdirSync(shots, {recursive: true});
  base = await startServer();
  profileDir = mkdtempSync(path.join(tmpdir(), 'easel-chromium-'));
  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    userDataDir: profileDir,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
  page = await browser.newPage();
  await page.setViewport({width: 1366, height: 900});
  page.setDefaultTimeout(WAIT);
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    consoleErrors.push({text: message.text(), url: message.location()?.url ?? ''});
  });
  page.on('pageerror', (error) => consoleErrors.push({text: `uncaught: ${error.message}`, url: ''}));
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.protocol === 'blob:' || url.protocol === 'data:') return;
    if (url.hostname !== '127.0.0.1') offsite.push(request.url());
  });
  page.on('response', (response) => {
    if (response.status() >= 400) {
      failedResponses.push({method: response.request().method(), url: response.url(), status: response.status()});
    }
  });
});

after(async () => {
  await browser?.close();
  server?.kill();
  if (dataDir) rmSync(dataDir, {recursive: true, force: true});
  if (profileDir) rmSync(profileDir, {recursive: true, force: true});
});

// Checked after every test, so a failure names the step that caused it.
afterEach(() => {
  const unexpected = failedResponses.splice(0).filter((r) => !isExpected(r));
  // Chromium also logs each failed response as a console error (which
  // names the URL and status, not the method): those the test provoked
  // are accounted for above, any other error fails.
  const errors = consoleErrors.splice(0).filter((e) => {
    const failed = /^Failed to load resource: the server responded with a status of (\d+)/.exec(e.text);
    return !(failed && expectedFailures.some(([, pattern, status]) => pattern.test(e.url) && status === Number(failed[1])));
  });
  const left = offsite.splice(0);
  expectedFailures.length = 0;
  assert.deepEqual(left, [], 'requests left 127.0.0.1');
  assert.deepEqual(unexpected, [], 'responses failed that the test did not provoke');
  assert.deepEqual(errors, [], 'the console logged errors');
});

/** A test that leaves a screenshot of the page behind when it fails. */
function step(name, body) {
  test(name, async () => {
    try {
      await body();
    } catch (error) {
      const slug = name.toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 60);
      await page?.screenshot({path: path.join(shots, `failed-${slug}.png`), fullPage: true}).catch(() => {});
      throw error;
    }
  });
}

step('the home page links to the console, served with a strict CSP and ETags', async () => {
  const response = await page.goto(`${base}/`);
  assert.equal(response.status(), 200);
  await page.click('a[href="/console/"]');
  await page.waitForSelector('#key-input');
  assert.equal(new URL(page.url()).pathname, '/console/');

  const index = await fetch(`${base}/console/`);
  const csp = index.headers.get('content-security-policy');
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self';/);
  assert.match(csp, /connect-src 'self';/);
  assert.doesNotMatch(csp, /unsafe|\*|https?:/);
  assert.equal(index.headers.get('content-type'), 'text/html; charset=utf-8');
  const etag = index.headers.get('etag');
  assert.match(etag, /^"[0-9a-f]{64}"$/);
  const again = await fetch(`${base}/console/`, {headers: {'If-None-Match': etag}});
  assert.equal(again.status, 304);
  const module = await fetch(`${base}/console/app.js`);
  assert.equal(module.headers.get('content-type'), 'text/javascript; charset=utf-8');
});

step('a wrong key is refused with the problem document\u2019s title and detail', async () => {
  expectFailure('GET', /\/v1\/key$/, 401);
  await page.type('#key-input', 'easel_0123456789abcdef_not-a-real-key');
  await page.click('#sign-in');
  await page.waitForSelector('.signin-form .problem');
  const problem = await textOf('.signin-form .problem');
  assert.match(problem, /Authentication required/);
  assert.match(problem, /unknown or revoked API key/);
});

step('signing in shows the key\u2019s bucket and scopes and keeps the key in this tab only', async () => {
  await typeInto('#key-input', fullKey);
  await page.click('#sign-in');
  await page.waitForSelector('#bucket');
  assert.equal(await textOf('#bucket'), 'default');
  const scopes = await page.$$eval('#scopes .scope', (els) => els.map((el) => el.textContent));
  assert.deepEqual(scopes.sort(), ['image:delete', 'image:read', 'image:write']);
  const stored = await page.evaluate(() => [sessionStorage.getItem('easel.console.key'), localStorage.length]);
  assert.deepEqual(stored, [fullKey, 0]);
  await page.waitForSelector('.empty');
  assert.match(await textOf('.empty'), /No images yet/);
});

step('uploading through the page shows real progress, then the status until finished or error', async () => {
  expectFailure('POST', /\/v1\/images$/, 415);
  await page.click('nav [data-nav="upload"]');
  const input = await page.waitForSelector('#file-input');
  // Record every value the progress bars take, as a person would see them.
  await page.evaluate(() => {
    window.progressSeen = [];
    new MutationObserver(() => {
      for (const row of document.querySelectorAll('.upload')) {
        window.progressSeen.push([row.querySelector('.upload-bar').value, row.querySelector('.upload-state')?.textContent]);
      }
    }).observe(document.getElementById('uploads'), {subtree: true, attributes: true, childList: true, characterData: true});
  });
  await input.uploadFile(PHOTO, NOT_AN_IMAGE);
  const row = `li.upload[data-file="${path.basename(PHOTO)}"]`;
  await page.waitForSelector(`${row}[data-status="finished"]`, {timeout: WAIT});
  assert.match(await textOf(`${row} .upload-status`), /Finished/);
  assert.equal(await page.$eval(`${row} progress`, (el) => el.value), 100);
  // The bar and its words come from the browser's upload progress events
  // (bytes sent of the file's size), not from the answer.
  const seen = await page.evaluate(() => window.progressSeen);
  assert.ok(seen.some(([value, words]) => value > 0 && /^Uploading .+ of 2\.8 MB$/.test(words)),
    `the bar followed the upload: ${JSON.stringify(seen.slice(0, 10))}`);
  imageId = await page.$eval(row, (el) => el.dataset.id);
  assert.ok(imageId);

  const refused = `li.upload[data-file="${path.basename(NOT_AN_IMAGE)}"]`;
  await page.waitForSelector(`${refused}[data-status="refused"]`);
  const problem = await textOf(`${refused} .problem`);
  assert.match(problem, /Unsupported image format/);
  assert.match(problem, /415/);

  const {body} = await api(`/v1/images/${imageId}`);
  assert.equal(body.status, 'finished');
  assert.equal(body.name, PHOTO_NAME);
  await shot('upload');
});

step('the library shows the thumb, name, status and feed badge, and filters by search', async () => {
  await go('#/');
  const card = `article.card[data-id="${imageId}"]`;
  await page.waitForSelector(`${card} .thumb-image[src^="blob:"]`);
  await page.waitForFunction((sel) => document.querySelector(sel)?.naturalWidth === 100, {}, `${card} .thumb-image`);
  const text = await textOf(card);
  assert.match(text, new RegExp(PHOTO_NAME));
  assert.match(text, /Finished/);
  assert.match(text, /Feed ready/);
  assert.match(text, /4032×3024/);
  await shot('library');

  await typeInto('input[name="search"]', 'e-p3');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => window.location.hash.includes('search=e-p3'));
  await page.waitForSelector(card);
  await typeInto('input[name="search"]', 'no such cover');
  await page.keyboard.press('Enter');
  await page.waitForSelector('.empty');
  assert.match(await textOf('.empty'), /No image matches/);
  await page.click('.filter-actions button.ghost');
  await page.waitForSelector(card);
});

step('the crop editor saves a crop typed into the numeric fields and shows the re-render', async () => {
  const before = (await api(`/v1/images/${imageId}`)).body;
  const itunesBefore = before.assets.find((a) => a.style === 'itunes');
  assert.equal(before.crop, null);

  await go(`#/images/${encodeURIComponent(imageId)}/crop`);
  await page.waitForSelector('#crop-box');
  assert.equal(await page.$eval('#crop-lock', (el) => el.checked), true, 'the aspect lock is on by default');
  // Without a crop, the editor starts at the centred square, as rendered.
  assert.deepEqual(await page.$$eval('.crop-fields input', (els) => els.map((el) => el.value)), ['504', '0', '3024', '3024']);
  await typeInto('#crop-x', '200');
  await typeInto('#crop-y', '12');
  await typeInto('#crop-width', '3000');
  assert.equal(await page.$eval('#crop-height', (el) => el.value), '3000', 'the locked height follows the width');
  // The square on the picture follows the fields.
  const box = await page.$eval('#crop-box', (el) => [el.style.left, el.style.top, el.style.width, el.style.height]);
  assert.deepEqual(box.map((v) => Number.parseFloat(v).toFixed(2)),
    [(200 / 4032) * 100, (12 / 3024) * 100, (3000 / 4032) * 100, (3000 / 3024) * 100].map((v) => v.toFixed(2)));
  assert.match(await textOf('#crop-message'), /centred 3000×3000 square/);
  // A crop past the edge is refused before it reaches the server.
  await typeInto('#crop-x', '1200');
  assert.match(await textOf('#crop-message'), /right edge .* past the image/);
  assert.equal(await page.$eval('#crop-save', (el) => el.disabled), true);
  await typeInto('#crop-x', '200');
  assert.equal(await page.$eval('#crop-save', (el) => el.disabled), false);
  // The square moves by keyboard too, and the fields follow it.
  await page.focus('#crop-box');
  for (const key of ['ArrowRight', 'ArrowRight', 'ArrowDown', 'ArrowLeft']) await page.keyboard.press(key);
  assert.deepEqual(await page.$$eval('.crop-fields input', (els) => els.map((el) => el.value)), ['201', '13', '3000', '3000']);
  await typeInto('#crop-x', '200');
  await typeInto('#crop-y', '12');
  await shot('crop-editor');

  await page.click('#crop-save');
  await page.waitForSelector('#crop-saved', {timeout: WAIT});
  assert.match(await textOf('#crop-saved'), /new files are in/);

  const after = (await api(`/v1/images/${imageId}`)).body;
  assert.deepEqual(after.crop, {x: 200, y: 12, width: 3000, height: 3000});
  assert.equal(after.status, 'finished');
  const itunesAfter = after.assets.find((a) => a.style === 'itunes');
  assert.notEqual(itunesAfter.sha256, itunesBefore.sha256, 'the itunes file changed');
  const file = await fetch(new URL(itunesAfter.url, base));
  assert.equal(file.status, 200);
  const bytes = Buffer.from(await file.arrayBuffer());
  assert.equal(createHash('sha256').update(bytes).digest('hex'), itunesAfter.sha256);
  assert.ok(after.assets.some((a) => a.style === 'square-3000'), 'a 3000 crop renders square-3000');
});

step('the styles view shows every style with its facts, the feed report and the podcast tags', async () => {
  const image = (await api(`/v1/images/${imageId}`)).body;
  await go(`#/images/${encodeURIComponent(imageId)}/styles`);
  await page.waitForSelector('#styles-grid .style-card');
  const cards = await page.$$eval('#styles-grid .style-card', (els) => els.map((el) => ({
    style: el.dataset.style,
    size: el.querySelector('[data-field="dimensions"] dd').textContent,
    upscaled: el.querySelector('[data-field="upscaled"] dd').textContent,
    copy: Boolean(el.querySelector('button[aria-label^="Copy the URL"]')),
  })));
  assert.deepEqual(cards.map((c) => c.style).sort(), image.assets.map((a) => a.style).sort());
  for (const asset of image.assets) {
    const card = cards.find((c) => c.style === asset.style);
    assert.equal(card.size, `${asset.width}×${asset.height}`);
    assert.equal(card.upscaled, asset.upscaled ? 'yes' : 'no');
    assert.ok(card.copy, `${asset.style} has a copy-URL button`);
  }
  await page.waitForSelector('#readiness');
  assert.match(await textOf('#readiness'), /Feed-ready/);
  // The panel shows the server's ready-to-paste tags, whose links are the
  // feed file's versioned URL (ending in .jpg) and fetch its bytes.
  await page.waitForSelector('#podcast[data-state="ready"], #podcast[data-state="error"]');
  assert.equal(await page.$eval('#podcast', (el) => el.dataset.state), 'ready', await textOf('#podcast'));
  const tags = await api(`/v1/images/${imageId}/podcast`);
  assert.equal(tags.status, 200);
  const href = tags.body.itunes_image.href;
  assert.match(href, /^http:\/\/127\.0\.0\.1:\d+\/v1\/images\/[^/]+\/styles\/(square-3000|itunes)\/[0-9a-f]{16}\.jpg$/);
  assert.equal(await page.$eval('#podcast-xml', (el) => el.textContent), tags.body.xml);
  assert.ok(tags.body.xml.includes(`<itunes:image href="${href}"`), tags.body.xml);
  const feedFile = await fetch(href);
  assert.equal(feedFile.status, 200);
  assert.equal(feedFile.headers.get('content-type'), 'image/jpeg');
  const feedAsset = image.assets.find((a) => href.includes(`/styles/${a.style}/`));
  assert.equal(createHash('sha256').update(Buffer.from(await feedFile.arrayBuffer())).digest('hex'), feedAsset.sha256);
  // Previews load as they scroll into view: show each and let it load.
  for (const preview of await page.$$('.style-preview')) {
    await preview.scrollIntoView();
    await page.waitForFunction((el) => el.querySelector('img')?.complete, {}, preview);
  }
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot('styles');
});

step('metadata saves with If-Match, and a conflicting edit is explained', async () => {
  expectFailure('PATCH', new RegExp(`/v1/images/${imageId}$`), 412);
  await go(`#/images/${encodeURIComponent(imageId)}/details`);
  await page.waitForSelector('#meta-form');
  await typeInto('#meta-name', 'Season two cover');
  await typeInto('#meta-facet', 'cover');
  await typeInto('#meta-tags', 'season-2, main');
  await typeInto('#meta-number1', '2');
  await page.click('#meta-save');
  await page.waitForSelector('#meta-saved');
  let image = (await api(`/v1/images/${imageId}`)).body;
  assert.equal(image.name, 'Season two cover');
  assert.equal(image.facet, 'cover');
  assert.deepEqual(image.tags, ['season-2', 'main']);
  assert.equal(image.number1, 2);
  assert.match(await textOf('#image-title'), /Season two cover/);

  // Someone else renames it; this page's save must not overwrite that.
  assert.equal((await api(`/v1/images/${imageId}`, {method: 'PATCH', body: {name: 'Renamed elsewhere'}})).status, 200);
  await typeInto('#meta-name', 'My rename');
  await page.click('#meta-save');
  await page.waitForSelector('#meta-conflict');
  const conflict = await textOf('#meta-conflict');
  assert.match(conflict, /Precondition failed/);
  assert.match(conflict, /changed since you read it/);
  assert.match(conflict, /Someone else changed this image/);
  image = (await api(`/v1/images/${imageId}`)).body;
  assert.equal(image.name, 'Renamed elsewhere');
});

step('a batch re-render starts from the page and its progress runs to complete', async () => {
  await go('#/batches');
  await page.waitForSelector('#batch-start');
  await page.click('#batch-all');
  await page.click('#batch-start');
  await page.waitForSelector('#batch-state[data-complete="true"]', {timeout: WAIT});
  const done = await page.$eval('[data-count="done"] dd', (el) => Number(el.textContent));
  assert.ok(done >= 1, `done: ${done}`);
  assert.equal(await page.$eval('#batch-bar', (el) => el.value), 100);
});

step('details show the batch that rendered the image, and edit who may see it', async () => {
  let image = (await api(`/v1/images/${imageId}`)).body;
  assert.ok(image.batch, 'the batch re-render recorded its id on the image');
  await go(`#/images/${encodeURIComponent(imageId)}/details`);
  await page.waitForSelector('#meta-form');
  const facts = () => page.$eval('.facts', (el) => el.textContent);
  assert.match(await facts(), new RegExp(`Batch${image.batch}`));
  assert.match(await facts(), /Public up tothe bucket’s setting/);
  await typeInto('#meta-max-unauthorised', '640');
  await typeInto('#meta-roles', 'https://example.org/roles/members, urn:x:staff');
  await page.click('#meta-save');
  await page.waitForSelector('#meta-saved');
  image = (await api(`/v1/images/${imageId}`)).body;
  assert.equal(image.max_unauthorised, 640);
  assert.deepEqual(image.roles, ['https://example.org/roles/members', 'urn:x:staff']);
  await page.waitForFunction(() => document.querySelector('.facts').textContent.includes('Public up to640 px'));
  assert.match(await facts(), /Roleshttps:\/\/example\.org\/roles\/members, urn:x:staff/);
  // Empty goes back to the bucket's setting.
  await typeInto('#meta-max-unauthorised', '');
  await page.click('#meta-save');
  await page.waitForFunction(() => document.querySelector('.facts').textContent.includes('Public up tothe bucket’s setting'));
  assert.equal((await api(`/v1/images/${imageId}`)).body.max_unauthorised, null);
  await shot('details-access');
});

/** A page on its own local origin that shows `info` in OpenSeadragon. */
function viewerPage() {
  const page = `<!doctype html><html><head><meta charset="utf-8"><title>viewer</title></head><body>
<div id="viewer" style="width: 800px; height: 600px"></div>
<script src="/openseadragon.min.js"></script>
<script>
  const info = new URLSearchParams(location.search).get('info');
  window.loaded = [];
  window.failed = [];
  const viewer = OpenSeadragon({id: 'viewer', tileSources: info, drawer: 'canvas', showNavigationControl: false,
    crossOriginPolicy: 'Anonymous', immediateRender: true});
  viewer.addHandler('tile-loaded', (event) => window.loaded.push(event.tile.getUrl()));
  viewer.addHandler('tile-load-failed', (event) => window.failed.push(event.message));
  viewer.addHandler('open-failed', (event) => window.failed.push(event.message));
  window.viewer = viewer;
</script></body></html>`;
  const script = readFileSync(OPENSEADRAGON);
  const server = createServer((request, response) => {
    if (request.url.startsWith('/openseadragon.min.js')) {
      response.writeHead(200, {'Content-Type': 'text/javascript'}).end(script);
    } else if (request.url.startsWith('/favicon.ico')) {
      response.writeHead(204).end();
    } else if (request.url.startsWith('/viewer.html')) {
      response.writeHead(200, {'Content-Type': 'text/html'}).end(page);
    } else {
      response.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

step('OpenSeadragon shows a restricted image at its public size without a key', async () => {
  assert.equal((await api(`/v1/images/${imageId}`, {method: 'PATCH', body: {max_unauthorised: 640}})).status, 200);
  const viewer = await viewerPage();
  // A tab of its own: the console's stays where it is.
  const tab = await browser.newPage();
  const iiifRequests = [];
  const refused = [];
  const elsewhere = [];
  tab.on('request', (request) => {
    const url = new URL(request.url());
    if (url.hostname !== '127.0.0.1' && url.protocol.startsWith('http')) elsewhere.push(request.url());
    if (url.pathname.includes('/iiif/3/')) iiifRequests.push(request.url());
  });
  tab.on('response', (response) => {
    if (response.status() >= 400) refused.push(`${response.status()} ${response.url()}`);
  });
  tab.on('pageerror', (error) => refused.push(`uncaught: ${error.message}`));
  try {
    const info = `${base}/iiif/3/${encodeURIComponent(imageId)}/info.json`;
    await tab.goto(`http://127.0.0.1:${viewer.address().port}/viewer.html?info=${encodeURIComponent(info)}`);
    await tab.waitForFunction(() => window.viewer?.world.getItemAt(0)?.getFullyLoaded(), {timeout: WAIT});
    const state = await tab.evaluate(() => {
      const source = window.viewer.world.getItemAt(0).source;
      const canvas = document.querySelector('#viewer canvas');
      const context = canvas.getContext('2d');
      const centre = context.getImageData(canvas.width / 2, canvas.height / 2, 1, 1).data;
      return {width: source.width, height: source.height, loaded: window.loaded, failed: window.failed, alpha: centre[3]};
    });
    assert.deepEqual(state.failed, []);
    assert.deepEqual(refused, [], 'nothing was refused: no size beyond the limit was asked for');
    assert.deepEqual(elsewhere, [], 'requests left 127.0.0.1');
    // The photo is 4032x3024: the public view is 640x480, the largest size listed.
    assert.deepEqual([state.width, state.height], [640, 480]);
    assert.ok(state.loaded.some((url) => url.includes('/full/640,480/')), state.loaded.join('\n'));
    assert.equal(state.alpha, 255, 'the canvas shows the image');
    // Nothing beyond the limit was asked for.
    for (const url of iiifRequests.filter((u) => u.endsWith('.jpg'))) {
      const [w, h] = new URL(url).pathname.split('/').at(-3).split(',').map(Number);
      assert.ok(Math.max(w, h) <= 640, url);
    }
    await tab.screenshot({path: path.join(shots, 'openseadragon-public-size.png')});
  } finally {
    await tab.close();
    viewer.close();
    assert.equal((await api(`/v1/images/${imageId}`, {method: 'PATCH', body: {max_unauthorised: null}})).status, 200);
  }
});

step('delete moves an image to the trash, restore brings it back, delete forever removes it', async () => {
  const uploaded = await fetch(`${base}/v1/images?wait=true&name=Trailer`, {
    method: 'POST',
    headers: {Authorization: `Bearer ${fullKey}`, 'Content-Type': 'image/jpeg'},
    body: readFileSync(SMALL),
  });
  assert.equal(uploaded.status, 201);
  const spare = (await uploaded.json()).id;

  await go(`#/images/${encodeURIComponent(spare)}/details`);
  await page.waitForSelector('#delete');
  await page.click('#delete');
  await page.waitForSelector('dialog[open]');
  await page.click('dialog[open] button.danger');
  await page.waitForFunction(() => window.location.hash === '#/');
  assert.equal((await api(`/v1/images/${spare}`)).status, 404);

  await page.click('nav [data-nav="trash"]');
  const card = `article.card[data-id="${spare}"]`;
  await page.waitForSelector(card);
  await page.click(`${card} .card-actions button:not(.danger)`);
  await page.waitForFunction((sel) => !document.querySelector(sel), {}, card);
  assert.equal((await api(`/v1/images/${spare}`)).body.deleted_at, null);

  assert.equal((await api(`/v1/images/${spare}`, {method: 'DELETE'})).status, 200);
  await go('#/library');
  await go('#/trash');
  await page.waitForSelector(card);
  await page.click(`${card} .card-actions button.danger`);
  await page.waitForSelector('dialog[open]');
  assert.match(await textOf('dialog[open]'), /cannot be undone/);
  await page.click('dialog[open] button.danger');
  await page.waitForFunction((sel) => !document.querySelector(sel), {}, card);
  const gone = await api(`/v1/images?filter[trashed]=with&filter[id]=${spare}`);
  assert.deepEqual(gone.body.data, []);
});

step('a key without image:write sees no upload control and cannot edit', async () => {
  await page.click('#sign-out');
  await page.waitForSelector('#key-input');
  assert.equal(await page.$('#bucket'), null, 'signing out forgets the key\u2019s bucket');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('easel.console.key')), null);
  await page.type('#key-input', readOnlyKey);
  await page.click('#sign-in');
  await page.waitForSelector('#bucket');
  assert.deepEqual(await page.$$eval('#scopes .scope', (els) => els.map((el) => el.textContent)), ['image:read']);
  await page.waitForSelector(`article.card[data-id="${imageId}"]`);
  assert.equal(await page.$('nav [data-nav="upload"]'), null, 'no Upload in the navigation');
  assert.equal(await page.$('#upload-link'), null, 'no Upload button in the library');
  await go('#/upload');
  await page.waitForFunction(() => /cannot upload/.test(document.querySelector('main').textContent));
  assert.equal(await page.$('input[type="file"]'), null, 'no file picker');

  await go(`#/images/${encodeURIComponent(imageId)}/crop`);
  await page.waitForSelector('#crop-box');
  assert.equal(await page.$('#crop-save'), null, 'no Save');
  assert.equal(await page.$eval('#crop-x', (el) => el.readOnly), true);
  assert.equal(await page.$('#delete'), null, 'no Delete');
  assert.equal(await page.$('#rerender'), null, 'no Re-render');
});

step('a page that loads while the address changes shows the page it changed to', async () => {
  // A reload signs in again (GET /v1/key) before it draws anything; the
  // address changing meanwhile starts the newer page's own sign-in. Here
  // the first sign-in answers last, as it may on a busy machine: it must
  // not draw its stale page over the newer one.
  let release;
  const released = new Promise((resolve) => {
    release = resolve;
  });
  const isKey = (r) => new URL(r.url()).pathname === '/v1/key';
  let held = false;
  const hold = (request) => {
    if (request.isInterceptResolutionHandled()) return;
    if (!held && isKey(request)) {
      held = true;
      released.then(() => request.continue());
    } else {
      request.continue();
    }
  };
  await page.setRequestInterception(true);
  page.on('request', hold);
  try {
    const signingIn = page.waitForRequest(isKey);
    await page.reload();
    await signingIn;
    assert.ok(held, 'the reload signed in again');
    await go('#/');
    const card = `article.card[data-id="${imageId}"] .thumb-image`;
    await page.waitForSelector(card);
    const answered = page.waitForResponse(isKey);
    release();
    await answered;
    await page.waitForNetworkIdle({idleTime: 300});
    assert.equal(await page.$('main .loading'), null, 'the first sign-in drew its stale page');
    assert.ok(await page.$(card), 'the library is still shown');
  } finally {
    release();
    page.off('request', hold);
    await page.setRequestInterception(false);
  }
});

step('every view is readable at 375 px wide', async () => {
  await page.setViewport({width: 375, height: 812, isMobile: true, hasTouch: true});
  for (const [hash, ready, name] of [
    ['#/', `article.card[data-id="${imageId}"] .thumb-image`, 'library-375'],
    [`#/images/${encodeURIComponent(imageId)}/crop`, '#crop-box', 'crop-375'],
    [`#/images/${encodeURIComponent(imageId)}/styles`, '#styles-grid .style-card', 'styles-375'],
    ['#/batches', '#batch-watch', 'batches-375'],
  ]) {
    await go(hash);
    await page.waitForSelector(ready);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${hash} scrolls sideways by ${overflow}px at 375 px`);
    // Every control has a name a screen reader can say.
    const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea, button, progress')]
      .filter((el) => !el.labels?.length && !el.getAttribute('aria-label') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
      .map((el) => el.outerHTML.slice(0, 80)));
    assert.deepEqual(unlabelled, [], `${hash} has unlabelled controls`);
    await shot(name);
  }
});
