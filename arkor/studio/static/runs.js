// Runs: every run of the project, newest first, refreshed every 2 s in place.

import { get } from './api.js';
import { h, report, statusBadge, progress, fmtTime, fmtFull, fmtDuration, fmtNum } from './dom.js';

const POLL_MS = 2000;
const COLUMNS = ['Run', 'Status', 'Progress', 'Started', 'Duration', 'Final loss'];

function makeRow(run) {
  const link = h('a', { href: `/runs/${encodeURIComponent(run.id)}` });
  const id = h('span', { class: 'muted mono small' });
  const status = h('td', { 'data-label': COLUMNS[1] });
  const prog = progress(run.step, run.maxSteps);
  const started = h('td', { class: 'num', 'data-label': COLUMNS[3] });
  const duration = h('td', { class: 'num', 'data-label': COLUMNS[4] });
  const loss = h('td', { class: 'num', 'data-label': COLUMNS[5] });
  const tr = h('tr', { 'data-testid': 'run-row', 'data-run-id': run.id },
    h('td', { class: 'run-name' }, link, h('br'), id), status, h('td', { 'data-label': COLUMNS[2] }, prog), started, duration, loss);
  tr.update = (r) => {
    link.textContent = r.name || r.id;
    id.textContent = r.id;
    status.replaceChildren(statusBadge(r.status, { 'data-testid': 'run-status', title: r.error || '' }));
    prog.update(r.step, r.maxSteps);
    started.textContent = fmtTime(r.startedAt || r.createdAt);
    started.title = fmtFull(r.startedAt || r.createdAt);
    duration.textContent = fmtDuration(r.durationSeconds);
    loss.textContent = fmtNum(r.finalLoss);
  };
  tr.update(run);
  return tr;
}

export function render(main) {
  const ctl = new AbortController();
  let timer = null;
  const tbody = h('tbody');
  const table = h('div', { class: 'table-scroll' }, h('table', { class: 'table stack', 'data-testid': 'runs-table' },
    h('thead', {}, h('tr', {}, COLUMNS.map((c) => h('th', { scope: 'col' }, c)))),
    tbody));
  const empty = h('div', { class: 'empty-state', hidden: true },
    h('p', {}, 'No runs yet.'), h('p', {}, h('a', { class: 'btn primary', href: '/new' }, 'Start a new run')));
  const loading = h('p', { class: 'muted' }, 'Loading runs…');
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Runs'), h('a', { class: 'btn', href: '/new' }, 'New run')),
    loading, empty, table);
  table.hidden = true;
  const rows = new Map();
  let failing = false;

  async function poll() {
    try {
      const { runs } = await get('/api/runs', { signal: ctl.signal });
      failing = false;
      loading.remove();
      empty.hidden = runs.length > 0;
      table.hidden = runs.length === 0;
      const seen = new Set();
      runs.forEach((r, i) => {
        seen.add(r.id);
        let tr = rows.get(r.id);
        if (tr) tr.update(r); else { tr = makeRow(r); rows.set(r.id, tr); }
        if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
      });
      for (const [id, tr] of rows) if (!seen.has(id)) { tr.remove(); rows.delete(id); }
    } catch (err) {
      if (ctl.signal.aborted) return;
      if (!failing) report(err);
      failing = true;
    }
    if (!ctl.signal.aborted) timer = setTimeout(poll, POLL_MS);
  }
  poll();
  return () => { ctl.abort(); clearTimeout(timer); };
}
