// Element helpers: every piece of data reaches the page through textContent or
// attributes, never through innerHTML, so run names or dataset rows cannot inject markup.

const SVG_NS = 'http://www.w3.org/2000/svg';
const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'hidden', 'readOnly', 'indeterminate']);

function build(el, attrs, children) {
  for (const [key, val] of Object.entries(attrs || {})) {
    if (val === null || val === undefined || val === false) continue;
    if (key.startsWith('on') && typeof val === 'function') el.addEventListener(key.slice(2), val);
    else if (key === 'style') Object.assign(el.style, val);
    else if (PROPS.has(key)) el[key] = val;
    else el.setAttribute(key, val === true ? '' : String(val));
  }
  append(el, children);
  return el;
}

/** Appends children: strings and numbers become text nodes, null/false are skipped, arrays flatten. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h('a', {href: '/runs', class: 'x'}, 'text', otherNode). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element (same calling convention as h). */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Goes to an in-app URL; the router listens to popstate. */
export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  dispatchEvent(new PopStateEvent('popstate'));
}

/** Shows a transient message; errors stay longer and are announced assertively. */
export function toast(message, kind = 'ok') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss' });
  const item = h('div', {
    class: `toast toast-${kind}`, 'data-testid': 'toast', role: kind === 'error' ? 'alert' : 'status',
  }, h('span', {}, message), close);
  const remove = () => item.remove();
  close.addEventListener('click', remove);
  box.append(item);
  setTimeout(remove, kind === 'error' ? 12000 : 5000);
}

/** Reports a failed action in a toast; aborted requests (page left, Stop) are not failures. */
export function report(err) {
  if (err && err.name === 'AbortError') return;
  toast((err && err.message) || String(err), 'error');
}

/** Copies text, falling back to a hidden textarea where the Clipboard API is unavailable. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = h('textarea', { class: 'offscreen', readOnly: true, value: text });
    document.body.append(area);
    area.select();
    document.execCommand('copy');
    area.remove();
  }
  toast('Copied to the clipboard.');
}

export function copyButton(getText, attrs = {}) {
  return h('button', { type: 'button', class: 'btn small', ...attrs, onclick: () => copyText(getText()) }, 'Copy');
}

export function statusBadge(status, attrs = {}) {
  return h('span', { class: `badge st-${status}`, ...attrs }, status);
}

/**
 * A progress bar for step/maxSteps; width is set through the CSSOM (the CSP forbids style attributes).
 * Only a live step forward animates: the first value drawn, and any jump back, show at once, so a
 * freshly opened page (or a screenshot of it) never shows a bar still catching up.
 */
export function progress(step, maxSteps) {
  const bar = h('span', { class: 'bar' });
  const box = h('span', { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-label': 'Training progress' }, bar);
  const label = h('span', { class: 'num' });
  const wrap = h('span', { class: 'progress-wrap' }, box, label);
  let shown = null;
  wrap.update = (st, max) => {
    const pct = max ? Math.min(100, (100 * (st || 0)) / max) : 0;
    bar.classList.toggle('animate', shown !== null && pct > shown);
    bar.style.width = `${pct}%`;
    shown = max ? pct : null;
    if (max) box.setAttribute('aria-valuemax', max); else box.removeAttribute('aria-valuemax');
    box.setAttribute('aria-valuenow', st || 0);
    label.textContent = max ? `${st ?? 0} / ${max}` : (st === null || st === undefined ? '—' : String(st));
  };
  wrap.update(step, maxSteps);
  return wrap;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const t = Math.max(0, Math.round(seconds));
  const hrs = Math.floor(t / 3600), min = Math.floor((t % 3600) / 60), sec = t % 60;
  if (hrs) return `${hrs}h ${String(min).padStart(2, '0')}m`;
  if (min) return `${min}m ${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}

/** A time of today ("5:08:12 PM"), or with its date on any other day ("Nov 29, 5:08 PM"; the year when not this one). */
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return d.toLocaleTimeString([], { hour: 'numeric', minute: '2-digit', second: '2-digit' });
  return d.toLocaleString([], {
    month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit',
    ...(d.getFullYear() === now.getFullYear() ? {} : { year: 'numeric' }),
  });
}

/** The full local date and time, for a title attribute beside a short fmtTime. */
export function fmtFull(iso) {
  const d = iso ? new Date(iso) : null;
  return d && !Number.isNaN(d.getTime()) ? d.toLocaleString([], { dateStyle: 'full', timeStyle: 'medium' }) : '';
}

export function fmtNum(x, digits = 4) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e6)) return x.toExponential(2);
  return String(Number(x.toPrecision(digits)));
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

/** Sets a button's busy state: disabled, aria-busy, and a label saying what it is doing. */
export function busy(button, on, label) {
  if (on) {
    button.dataset.label = button.textContent;
    button.textContent = label || 'Working…';
    button.setAttribute('aria-busy', 'true');
    button.classList.add('busy');
  } else {
    if (button.dataset.label !== undefined) button.textContent = button.dataset.label;
    button.removeAttribute('aria-busy');
    button.classList.remove('busy');
  }
}
