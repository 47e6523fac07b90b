// The Studio API client: adds the token, turns JSON error answers into thrown Errors
// that carry the server's message (and config issues), and reads event streams.

const meta = document.querySelector('meta[name="arkor-studio-token"]');
const TOKEN = meta ? meta.content : '';

export class ApiError extends Error {
  constructor(message, status, issues) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.issues = issues || [];
  }
}

async function errorFrom(res, method, url) {
  const text = await res.text().catch(() => '');
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  const err = data && data.error;
  const message = (err && err.message)
    || `${method} ${url} failed with HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}.`;
  return new ApiError(message, res.status, err && err.issues);
}

function unreachable(err, method, url) {
  if (err && err.name === 'AbortError') return err;
  return new ApiError(`Studio did not answer ${method} ${url} (${err.message}). Check that \`arkor dev\` is still running and reload the page.`, 0);
}

/** Calls a JSON route; returns the parsed answer (null for 204) or throws ApiError. */
export async function api(url, { method = 'GET', body, signal } = {}) {
  const headers = { 'X-Arkor-Studio-Token': TOKEN, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(url, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw unreachable(err, method, url);
  }
  if (!res.ok) throw await errorFrom(res, method, url);
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const get = (url, opts) => api(url, opts);
export const post = (url, body, opts) => api(url, { ...opts, method: 'POST', body });
export const patch = (url, body, opts) => api(url, { ...opts, method: 'PATCH', body });
export const del = (url, opts) => api(url, { ...opts, method: 'DELETE' });

/** Adds ?studioToken= to a URL, for EventSource and download links (they cannot send headers). */
export function withToken(url) {
  const u = new URL(url, location.origin);
  u.searchParams.set('studioToken', TOKEN);
  return u.pathname + u.search;
}

export function sse(url) {
  return new EventSource(withToken(url));
}

/** Parses one event-stream frame (the text between blank lines); null for comment-only frames. */
function parseFrame(text) {
  let event = 'message';
  let id = null;
  const data = [];
  let seen = false;
  for (const line of text.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') { event = value; seen = true; } else if (field === 'data') { data.push(value); seen = true; } else if (field === 'id') id = value;
  }
  if (!seen) return null;
  const raw = data.join('\n');
  let parsed = raw;
  try { parsed = raw ? JSON.parse(raw) : {}; } catch { parsed = raw; }
  return { event, id, data: parsed };
}

/**
 * POSTs JSON and calls onFrame({event, id, data}) for each event-stream frame of the answer,
 * reassembling frames split across network chunks. Errors before the stream begins throw ApiError.
 */
export async function postStream(url, body, onFrame, { signal } = {}) {
  let res;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'X-Arkor-Studio-Token': TOKEN, 'Content-Type': 'application/json', Accept: 'text/event-stream' },
      body: JSON.stringify(body),
      signal,
    });
  } catch (err) {
    throw unreachable(err, 'POST', url);
  }
  if (!res.ok) throw await errorFrom(res, 'POST', url);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  const drain = (final) => {
    // A trailing \r may be the first half of \r\n in the next chunk: keep it until then.
    let text = buf;
    let held = '';
    if (!final && text.endsWith('\r')) { held = '\r'; text = text.slice(0, -1); }
    text = text.replace(/\r\n?/g, '\n');
    let cut;
    while ((cut = text.indexOf('\n\n')) >= 0) {
      const frame = parseFrame(text.slice(0, cut));
      text = text.slice(cut + 2);
      if (frame) onFrame(frame);
    }
    if (final && text.trim()) {
      const frame = parseFrame(text);
      if (frame) onFrame(frame);
      text = '';
    }
    buf = text + held;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      drain(false);
    }
  } finally {
    reader.releaseLock();
  }
  buf += decoder.decode();
  drain(true);
}
