// The Studio router: one page module per path, rendered into <main id="page">.
// Each page's render(main, params) may return a cleanup function, called on leaving.

import { get } from './api.js';
import { h, report } from './dom.js';
import * as runs from './runs.js';
import * as run from './run.js';
import * as newRun from './new.js';
import * as playground from './playground.js';
import * as endpoints from './endpoints.js';
import * as data from './data.js';

const ROUTES = [
  { re: /^\/(?:runs\/?)?$/, page: runs, nav: 'runs', title: 'Runs' },
  { re: /^\/runs\/([^/]+)\/?$/, page: run, nav: 'runs', title: 'Run' },
  { re: /^\/new\/?$/, page: newRun, nav: 'new', title: 'New run' },
  { re: /^\/playground\/?$/, page: playground, nav: 'playground', title: 'Playground' },
  { re: /^\/endpoints\/?$/, page: endpoints, nav: 'endpoints', title: 'Endpoints' },
  { re: /^\/data\/?$/, page: data, nav: 'data', title: 'Data' },
];

const main = document.getElementById('page');
let cleanup = null;
let current = 0;

function notFound(el) {
  el.append(h('h1', {}, 'Page not found'),
    h('p', {}, `Studio has no page at ${location.pathname}. `, h('a', { href: '/runs' }, 'Go to Runs'), '.'));
}

async function render({ focus = false } = {}) {
  const token = ++current;
  if (cleanup) {
    try { cleanup(); } catch (err) { report(err); }
    cleanup = null;
  }
  main.replaceChildren();
  const path = location.pathname;
  const route = ROUTES.find((r) => r.re.test(path));
  for (const link of document.querySelectorAll('header nav a')) {
    if (route && link.dataset.nav === route.nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${route ? route.title : 'Not found'} · Arkor Studio`;
  if (!route) { notFound(main); return; }
  const params = { id: decodeURIComponent((path.match(route.re) || [])[1] || ''), query: new URLSearchParams(location.search) };
  let result;
  try {
    result = await route.page.render(main, params);
  } catch (err) {
    report(err);
    return;
  }
  if (token !== current) { if (typeof result === 'function') result(); return; }
  cleanup = typeof result === 'function' ? result : null;
  if (focus) main.focus({ preventScroll: true });
}

document.addEventListener('click', (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const link = ev.target instanceof Element ? ev.target.closest('a[href]') : null;
  if (!link || link.hasAttribute('download') || (link.target && link.target !== '_self')) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || /^\/(api|static)\//.test(url.pathname)) return;
  ev.preventDefault();
  if (url.pathname === location.pathname && url.search === location.search) {
    if (url.hash) location.hash = url.hash;
    return;
  }
  history.pushState(null, '', url.pathname + url.search + url.hash);
  window.scrollTo(0, 0);
  render({ focus: true });
});

addEventListener('popstate', () => render({ focus: true }));

get('/api/project').then((project) => {
  const el = document.getElementById('project');
  if (el && project) {
    el.textContent = project.name;
    el.title = `${project.root} · ${project.plane ? project.plane.description : ''}`;
  }
}).catch(report);

render();
