// Run detail: status, live chart and event log (first the stored events, then the
// event stream from lastEventId on), the evaluation of the adapter against its base,
// checkpoints to chat with, artifacts to download.

import { get, post, sse, withToken } from './api.js';
import { h, report, toast, progress, fmtTime, fmtFull, fmtDuration, fmtNum, fmtBytes, busy } from './dom.js';
import { createChart } from './chart.js';
import { createEvalSection } from './evals.js';

const TYPES = ['training.started', 'training.log', 'checkpoint.saved', 'eval.completed', 'training.completed', 'training.failed', 'training.cancelled'];
const TERMINAL = new Set(['training.completed', 'training.failed', 'training.cancelled']);
const LOG_LIMIT = 2000;

function describe(ev) {
  const parts = [];
  if (typeof ev.step === 'number') parts.push(`step ${ev.step}`);
  if (ev.type === 'training.log') {
    if (typeof ev.loss === 'number') parts.push(`loss ${fmtNum(ev.loss)}`);
    if (typeof ev.evalLoss === 'number') parts.push(`eval loss ${fmtNum(ev.evalLoss)}`);
    if (typeof ev.learningRate === 'number') parts.push(`lr ${ev.learningRate.toExponential(2)}`);
    if (typeof ev.epoch === 'number') parts.push(`epoch ${fmtNum(ev.epoch, 3)}`);
    if (typeof ev.samplesPerSecond === 'number') parts.push(`${fmtNum(ev.samplesPerSecond, 3)} samples/s`);
  }
  if (ev.type === 'training.failed' && ev.error) parts.push(String(ev.error));
  if (ev.type === 'eval.completed') {
    if (ev.checkpoint !== undefined && ev.checkpoint !== null) parts.push(`checkpoint ${ev.checkpoint}`);
    if (ev.requested) parts.push('run again');
    parts.push(`${ev.rows} rows`);
    if (ev.error) parts.push(`failed: ${ev.error}`);
    for (const m of ev.metrics || []) parts.push(`${m.name} ${fmtNum(m.base)} → ${fmtNum(m.adapter)}`);
  }
  if (ev.type === 'training.completed' && ev.metrics) {
    for (const [k, v] of Object.entries(ev.metrics)) parts.push(`${k} ${typeof v === 'number' ? fmtNum(v) : String(v)}`);
  }
  return parts.join(' · ');
}

/**
 * Artifacts by folder: each checkpoint's folder (with whatever lies under it), every other
 * top-level folder, and files at the top. The final adapter comes first, checkpoints last by step.
 */
function groupArtifacts(artifacts) {
  const groups = new Map();
  for (const a of artifacts) {
    const ckpt = a.path.match(/^(.*?checkpoint-(\d+)\/)/);
    const top = a.path.includes('/') ? `${a.path.split('/')[0]}/` : '';
    const dir = ckpt ? ckpt[1] : top;
    if (!groups.has(dir)) groups.set(dir, { dir, step: ckpt ? Number(ckpt[2]) : null, files: [] });
    groups.get(dir).files.push({ ...a, name: a.path.slice(dir.length) });
  }
  const rank = (g) => (g.dir === 'adapter/' ? 0 : g.step === null ? 1 : 2);
  return [...groups.values()].sort((a, b) => rank(a) - rank(b) || (a.step ?? 0) - (b.step ?? 0) || a.dir.localeCompare(b.dir));
}

function eventItem(ev) {
  return h('li', { class: `ev ev-${ev.type.replace('.', '-')}` },
    h('time', { class: 'num muted' }, ev.timestamp ? new Date(ev.timestamp).toLocaleTimeString() : ''),
    h('span', { class: 'ev-type' }, ev.type), h('span', {}, describe(ev)));
}

export function render(main, { id }) {
  const ctl = new AbortController();
  const enc = encodeURIComponent(id);
  let source = null;
  let ticker = null;
  let summary = null;
  let lastId = 0;

  const title = h('h1', {}, id);
  const status = h('span', { 'data-testid': 'run-status', class: 'badge' });
  const model = h('span', { class: 'mono' });
  const prog = progress(null, null);
  const duration = h('span', { class: 'num' });
  const errorBox = h('p', { class: 'error-box', role: 'alert', hidden: true });
  const cancel = h('button', { type: 'button', class: 'btn danger', 'data-testid': 'cancel-run', hidden: true }, 'Cancel run');
  const deploy = h('a', { class: 'btn', href: `/endpoints?run=${enc}` }, 'Deploy');
  const chart = createChart();
  const log = h('ol', { class: 'event-log', 'data-testid': 'event-log', tabindex: 0, 'aria-label': 'Event log' });
  const checkpoints = h('ul', { class: 'list' });
  const artifacts = h('div', { class: 'artifacts', 'data-testid': 'artifacts' });
  const config = h('dl', { class: 'kv' });
  const evaluation = createEvalSection(id, ctl.signal);

  main.append(
    h('div', { class: 'page-head' }, h('div', {}, h('p', { class: 'crumb' }, h('a', { href: '/runs' }, 'Runs'), ' / ', id), title),
      h('div', { class: 'actions' }, deploy, cancel)),
    h('div', { class: 'run-meta' }, status, model, prog, duration),
    errorBox,
    h('section', { class: 'card' }, h('h2', {}, 'Training'), chart.el),
    evaluation.el,
    h('div', { class: 'grid2' },
      h('section', { class: 'card' }, h('h2', {}, 'Checkpoints'), checkpoints),
      h('section', { class: 'card' }, h('h2', {}, 'Artifacts'), artifacts)),
    h('section', { class: 'card' }, h('h2', {}, 'Events'), log),
    h('section', { class: 'card' }, h('h2', {}, 'Config'), config),
  );

  function showSummary(run) {
    summary = run;
    title.textContent = run.name || run.id;
    status.textContent = run.status;
    status.className = `badge st-${run.status}`;
    model.textContent = run.model || '';
    prog.update(run.step, run.maxSteps);
    duration.textContent = fmtDuration(run.durationSeconds);
    errorBox.hidden = !run.error;
    errorBox.textContent = run.error || '';
    const live = run.status === 'queued' || run.status === 'running';
    cancel.hidden = !live;
    clearInterval(ticker);
    if (run.status === 'running' && run.startedAt) {
      const started = Date.parse(run.startedAt);
      ticker = setInterval(() => { duration.textContent = fmtDuration((Date.now() - started) / 1000); }, 1000);
    }
    evaluation.update({ run });
  }

  const chatLink = (what, query) => h('a', { class: 'btn small', href: `/playground?${query}`, 'aria-label': `Chat with ${what}` }, 'Chat with this');
  function addCheckpoint(step, createdAt) {
    if (checkpoints.querySelector(`[data-step="${step}"]`)) return;
    const li = h('li', { 'data-testid': 'checkpoint', 'data-step': step },
      h('span', {}, `Step ${step}`), h('span', { class: 'muted small num', title: fmtFull(createdAt) }, fmtTime(createdAt)),
      chatLink(`checkpoint ${step}`, `run=${enc}&step=${step}`));
    const after = [...checkpoints.querySelectorAll('[data-testid="checkpoint"]')].find((el) => Number(el.dataset.step) > step);
    checkpoints.insertBefore(li, after || checkpoints.querySelector('.final'));
    checkpoints.querySelector('.empty')?.remove();
  }
  function showFiles(detail) {
    checkpoints.replaceChildren();
    for (const c of detail.checkpoints) addCheckpoint(c.step, c.createdAt);
    if (detail.final) {
      checkpoints.append(h('li', { class: 'final' }, h('strong', {}, 'Final adapter'), h('span'),
        chatLink('the final adapter', `run=${enc}`)));
    }
    if (!checkpoints.children.length) checkpoints.append(h('li', { class: 'empty muted' }, 'No checkpoint saved yet.'));
    const open = new Set([...artifacts.querySelectorAll('details[open]')].map((el) => el.dataset.folder));
    artifacts.replaceChildren(...groupArtifacts(detail.artifacts).map((g) => {
      const bytes = g.files.reduce((sum, a) => sum + (a.size || 0), 0);
      const head = [h('span', { class: 'mono' }, g.dir || 'Other files'),
        h('span', { class: 'muted small num' }, ` — ${g.files.length} file${g.files.length === 1 ? '' : 's'}, ${fmtBytes(bytes)}`)];
      const files = h('ul', { class: 'list files' }, g.files.map((a) => h('li', {},
        h('a', { href: withToken(`/api/runs/${enc}/artifacts/${a.path.split('/').map(encodeURIComponent).join('/')}`), download: '', title: a.path, 'aria-label': `Download ${a.path}` }, a.name),
        h('span', { class: 'muted small num' }, fmtBytes(a.size)),
        a.sha256 ? h('span', { class: 'muted small mono', title: `sha256 ${a.sha256}` }, a.sha256.slice(0, 12)) : null)));
      if (g.step === null) return h('div', { class: 'art-group', 'data-folder': g.dir }, h('h3', { class: 'art-folder' }, head), files);
      return h('details', { class: 'art-group', 'data-folder': g.dir, open: open.has(g.dir) }, h('summary', { class: 'art-folder' }, head), files);
    }));
    if (!detail.artifacts.length) artifacts.append(h('p', { class: 'muted' }, 'No artifacts yet.'));
  }

  function logEvent(ev) {
    const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 8;
    log.append(eventItem(ev));
    while (log.children.length > LOG_LIMIT) log.firstChild.remove();
    if (stick) log.scrollTop = log.scrollHeight;
  }

  function apply(ev) {
    logEvent(ev);
    evaluation.onEvent(ev);
    if (ev.type === 'training.log') {
      chart.add(ev);
      if (summary && typeof ev.step === 'number') prog.update(ev.step, summary.maxSteps);
    } else if (ev.type === 'checkpoint.saved') {
      addCheckpoint(ev.step, ev.timestamp);
    } else if (ev.type === 'training.started' && summary) {
      showSummary({ ...summary, status: 'running', startedAt: summary.startedAt || ev.timestamp });
    }
    if (TERMINAL.has(ev.type)) refresh();
  }

  async function refresh() {
    try {
      const detail = await get(`/api/runs/${enc}`, { signal: ctl.signal });
      showSummary(detail.run);
      showFiles(detail);
      evaluation.update({ run: detail.run, checkpoints: detail.checkpoints });
    } catch (err) { report(err); }
  }

  function openStream() {
    source = sse(`/api/runs/${enc}/events?after=${lastId}`);
    const onFrame = (msg) => {
      const eid = Number(msg.lastEventId);
      if (msg.lastEventId && eid <= lastId) return;
      if (msg.lastEventId) lastId = eid;
      try { apply(JSON.parse(msg.data)); } catch (err) { report(err); }
    };
    for (const type of TYPES) source.addEventListener(type, onFrame);
    source.addEventListener('end', () => { source.close(); source = null; });
    source.onerror = () => {
      if (source && source.readyState === EventSource.CLOSED) {
        toast('The event stream of this run closed; reload the page to follow it again.', 'error');
      }
    };
  }

  cancel.addEventListener('click', async () => {
    if (!confirm(`Cancel run ${summary ? summary.name || summary.id : id}? Training stops at the next step.`)) return;
    cancel.disabled = true;
    busy(cancel, true, 'Cancelling…');
    try {
      const { run } = await post(`/api/runs/${enc}/cancel`, {}, { signal: ctl.signal });
      showSummary(run);
      toast('Run cancelled.');
    } catch (err) { report(err); } finally { busy(cancel, false); cancel.disabled = false; }
  });

  (async () => {
    let detail;
    try {
      detail = await get(`/api/runs/${enc}`, { signal: ctl.signal });
    } catch (err) {
      if (ctl.signal.aborted) return;
      errorBox.hidden = false;
      errorBox.textContent = err.message;
      return;
    }
    showSummary(detail.run);
    showFiles(detail);
    evaluation.update({ run: detail.run, config: detail.config, checkpoints: detail.checkpoints });
    for (const ev of detail.events) evaluation.onEvent(ev); // an eval.completed among them loads the evals
    const frag = document.createDocumentFragment();
    const shown = detail.events.slice(-LOG_LIMIT);
    for (const ev of shown) frag.append(eventItem(ev));
    log.append(frag);
    log.scrollTop = log.scrollHeight;
    chart.addMany(detail.events.filter((ev) => ev.type === 'training.log'));
    config.replaceChildren(...Object.entries(detail.config || {}).filter(([, v]) => v !== null && typeof v !== 'object')
      .flatMap(([k, v]) => [h('dt', {}, k), h('dd', { class: 'mono' }, String(v))]));
    lastId = detail.lastEventId ?? 0;
    const over = !['queued', 'running'].includes(detail.run.status);
    if (!over || !detail.events.some((ev) => TERMINAL.has(ev.type))) openStream();
  })();

  return () => { ctl.abort(); clearInterval(ticker); if (source) source.close(); };
}
