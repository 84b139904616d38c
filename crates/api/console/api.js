// The console's only way to the server: the public API, with the key the
// person signed in with. Failures become ApiProblem, carrying the problem
// document's title and detail, so every view can say what went wrong.

const KEY = 'easel.console.key';

/** The signed-in key and what it may do; kept in this tab only. */
export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  },
  /** `GET /v1/key`: {id, name, bucket, scopes}. */
  info: null,
  can(scope) {
    return Boolean(this.info?.scopes?.includes(scope));
  },
};

/** Checks a key with `GET /v1/key`; on success it is this tab's key. */
export async function signIn(key) {
  const {data} = await api('/v1/key', {key});
  session.key = key;
  session.info = data;
}

export const READ = 'image:read';
export const WRITE = 'image:write';
export const DELETE = 'image:delete';

export class ApiProblem extends Error {
  constructor(status, doc) {
    super(doc.detail ? `${doc.title}: ${doc.detail}` : doc.title);
    this.status = status;
    this.title = doc.title;
    this.detail = doc.detail ?? '';
    this.code = doc.code ?? '';
    this.doc = doc;
  }
}

function networkProblem(method, url, error) {
  return new ApiProblem(0, {
    title: 'No answer from the server',
    detail: `${method} ${url} failed (${error?.message ?? 'network error'}). Is easel serve still running?`,
    code: 'network',
  });
}

/** The problem document of a failed response, or one made up from its status. */
async function problemOf(status, statusText, contentType, readText) {
  const text = await readText().catch(() => '');
  if (/json/.test(contentType ?? '')) {
    try {
      const doc = JSON.parse(text);
      if (doc && typeof doc.title === 'string') return new ApiProblem(status, doc);
    } catch {
      // Not JSON after all: described below.
    }
  }
  return new ApiProblem(status, {
    title: statusText || `HTTP ${status}`,
    detail: `the server answered ${status} without a problem document${text ? `: ${text.slice(0, 200)}` : ''}`,
    code: `http-${status}`,
  });
}

/**
 * Calls the API. `path` is a path or a link from a resource. Resolves to
 * {data, etag, status}; rejects with ApiProblem.
 */
export async function api(path, {method = 'GET', body, ifMatch, signal, key} = {}) {
  const headers = {Accept: 'application/json', Authorization: `Bearer ${key ?? session.key}`};
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  if (ifMatch) headers['If-Match'] = ifMatch;
  let response;
  try {
    response = await fetch(path, {method, headers, body: payload, signal, cache: 'no-store'});
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw networkProblem(method, path, error);
  }
  if (!response.ok) {
    throw await problemOf(response.status, response.statusText,
      response.headers.get('Content-Type'), () => response.text());
  }
  const data = response.status === 204 ? null : await response.json();
  return {data, etag: response.headers.get('ETag'), status: response.status};
}

/**
 * Uploads one file as multipart with real progress (fetch cannot report
 * upload progress; XMLHttpRequest can). `onProgress(sent, total)`.
 */
export function uploadFile(file, fields, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append('file', file, file.name);
    for (const [name, value] of Object.entries(fields)) {
      if (value != null && value !== '') form.append(name, value);
    }
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/v1/images');
    xhr.setRequestHeader('Authorization', `Bearer ${session.key}`);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (event) => {
      onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
    });
    xhr.addEventListener('load', async () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve({data: JSON.parse(xhr.responseText), etag: xhr.getResponseHeader('ETag'), status: xhr.status});
        } catch (error) {
          reject(new ApiProblem(xhr.status, {title: 'Unreadable answer', detail: String(error), code: 'invalid-json'}));
        }
      } else {
        reject(await problemOf(xhr.status, xhr.statusText,
          xhr.getResponseHeader('Content-Type'), async () => xhr.responseText));
      }
    });
    xhr.addEventListener('error', () => reject(networkProblem('POST', '/v1/images', null)));
    xhr.addEventListener('abort', () => reject(new DOMException('upload cancelled', 'AbortError')));
    xhr.send(form);
  });
}

// Object URLs of files fetched with the key, by URL and sha256. Fetched
// with the key (not <img src>) so private buckets show too; `no-cache`
// because a style's URL may keep its name while its bytes change (a new
// crop), and the sha256 in the cache key tells this cache the same.
const images = new Map();

/** A blob: URL for a style file the API linked to. */
export async function imageURL(url, sha256, {signal, keep = true} = {}) {
  const cacheKey = `${url}#${sha256 ?? ''}`;
  if (keep && images.has(cacheKey)) return images.get(cacheKey);
  let response;
  try {
    response = await fetch(url, {headers: {Authorization: `Bearer ${session.key}`}, cache: 'no-cache', signal});
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw networkProblem('GET', url, error);
  }
  if (!response.ok) {
    throw await problemOf(response.status, response.statusText,
      response.headers.get('Content-Type'), () => response.text());
  }
  const objectURL = URL.createObjectURL(await response.blob());
  if (keep) images.set(cacheKey, objectURL);
  return objectURL;
}

/** Forgets every fetched image (signing out). */
export function forgetImages() {
  for (const objectURL of images.values()) URL.revokeObjectURL(objectURL);
  images.clear();
}

/** Polls `GET url` until `done(data)` or the signal aborts; calls `each(data)`. */
export async function pollUntil(url, done, each, {signal, interval = 600} = {}) {
  for (;;) {
    const {data, etag} = await api(url, {signal});
    each(data, etag);
    if (done(data)) return {data, etag};
    await sleep(interval, signal);
  }
}

export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(new DOMException('stopped', 'AbortError'));
    }, {once: true});
  });
}
