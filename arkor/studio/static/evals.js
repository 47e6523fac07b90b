// The run page's Evaluation section: the base-vs-adapter table of an eval.completed event
// and the held-out rows where base and adapter answered differently, side by side.
// Answers are the models' untrusted text: they reach the page through textContent only.

import { get, postStream } from './api.js';
import { h, report, toast, busy, fmtTime, fmtNum } from './dom.js';

const PAGE = 50;

/** What an eval evaluated: "Final adapter (step 6)", "Checkpoint 3". */
function evaluated(ev) {
  if (ev.checkpoint !== undefined && ev.checkpoint !== null) return `Checkpoint ${ev.checkpoint}`;
  return `Final adapter${typeof ev.step === 'number' ? ` (step ${ev.step})` : ''}`;
}

/** An eval in the selector: what it evaluated, and when for one run again later. */
export function evalLabel(ev) {
  return `${evaluated(ev)}${ev.requested ? ` · run again ${fmtTime(ev.timestamp)}` : ''}`;
}

/** The text of the prompt's last user message (a list of parts joins their text). */
function question(prompt) {
  const turn = [...(prompt || [])].reverse().find((m) => m && m.role === 'user');
  if (!turn) return '';
  const { content } = turn;
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((part) => (part && typeof part.text === 'string' ? part.text : '')).join('');
  return JSON.stringify(content);
}

/** A metric's name, breakable after `.` and `:` and before `[` so a narrow table stays narrow. */
function metricName(name) {
  return name.split(/(?<=[.:])|(?=\[)/).flatMap((part, i) => (i ? [h('wbr'), part] : [part]));
}

/** A change ("+12.5 pts (few rows)"): the figure, and the note on a line of its own when narrow. */
function changeCell(text) {
  const cut = text.indexOf(' (');
  const figure = cut < 0 ? text : text.slice(0, cut);
  return h('td', { class: `${changeClass(text)} change` }, h('span', { class: 'figure' }, figure),
    cut < 0 ? null : [' ', h('span', { class: 'muted small' }, text.slice(cut + 1))]);
}

function changeClass(text) {
  if (/^\+0\.0 /.test(text) || /^-0\.0 /.test(text)) return 'num';
  if (text.startsWith('+')) return 'num up';
  if (/^-\d/.test(text)) return 'num down';
  return 'num';
}

function scoreList(scores, side) {
  const items = Object.entries(scores || {}).filter(([, v]) => v && typeof v[side] === 'number');
  if (!items.length) return null;
  return h('ul', { class: 'scores' }, items.map(([name, v]) => h('li', {},
    h('span', { class: 'muted' }, name), ' ', h('span', { class: 'num' }, fmtNum(v[side], 3)))));
}

function answerBox(label, text, scores, side, cls) {
  return h('div', { class: `answer ${cls}` },
    h('span', { class: 'answer-label' }, label),
    text === null || text === undefined ? h('p', { class: 'text muted' }, 'Not evaluated.') : h('p', { class: 'text' }, text),
    side ? scoreList(scores, side) : null);
}

function sampleItem(sample, differs) {
  return h('li', { class: 'eval-sample', 'data-testid': 'eval-sample', 'data-row': sample.number, 'data-differs': differs ? 'true' : 'false' },
    h('div', { class: 'sample-head' },
      h('span', { class: 'sample-row' }, `Row ${sample.number}`),
      h('span', { class: `badge ${differs ? 'st-running' : 'st-queued'}` }, differs ? 'answers differ' : 'same answer')),
    h('div', { class: 'sample-question' }, h('span', { class: 'answer-label' }, 'Question'),
      h('p', { class: 'text', 'data-testid': 'eval-question' }, question(sample.prompt))),
    h('div', { class: 'sample-answers' },
      answerBox('Reference', sample.reference, null, null, 'reference'),
      answerBox('Base', sample.base, sample.scores, 'base', 'base'),
      answerBox('Adapter', sample.adapter, sample.scores, 'adapter', 'adapter')));
}

/**
 * The section for run `runId`. `update({ run, config, checkpoints })` follows the run's
 * summary, `onEvent(ev)` each streamed event; the section shows only for runs with an eval block.
 */
export function createEvalSection(runId, signal) {
  const enc = encodeURIComponent(runId);
  let evals = [];
  let chosen = null; // an index the user picked, kept across refreshes
  let spec = null;
  let run = null;
  let lastStep = null;
  let heldOut = null; // how many rows the run held out, once training.started says
  let pendingCheckpoints = new Set();
  let finalSeen = false; // the end-of-training eval arrived (its details may still be loading)
  let running = false; // a run-again in progress
  let loading = null;
  let shown = PAGE;

  const select = h('select', { 'data-testid': 'eval-select', 'aria-label': 'Evaluation to show' });
  const selectWrap = h('label', { class: 'eval-choice', hidden: true }, h('span', { class: 'muted small' }, 'Show'), select);
  const status = h('p', { class: 'eval-status', role: 'status', 'data-testid': 'eval-status' });
  const meta = h('p', { class: 'muted small eval-meta', 'data-testid': 'eval-meta' });
  const errorBox = h('p', { class: 'error-box', hidden: true, 'data-testid': 'eval-error' });
  const warnings = h('div', { class: 'eval-warnings' });
  const tbody = h('tbody');
  const table = h('div', { class: 'table-scroll', hidden: true },
    h('table', { class: 'table eval-table', 'data-testid': 'eval-table' },
      h('caption', { class: 'visually-hidden' }, 'Metrics of the base model and the adapter on the same held-out rows'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Metric'), h('th', { scope: 'col', class: 'num' }, 'Base'),
        h('th', { scope: 'col', class: 'num' }, 'Adapter'), h('th', { scope: 'col', class: 'num' }, 'Change'))),
      tbody));
  const rowsHead = h('h3', { 'data-testid': 'eval-rows-head' });
  const allToggle = h('input', { type: 'checkbox', 'data-testid': 'eval-all-rows' });
  const samples = h('ol', { class: 'eval-samples', 'data-testid': 'eval-samples' });
  const more = h('button', { type: 'button', class: 'btn small', hidden: true }, 'Show more rows');
  const rowsPart = h('div', { class: 'eval-rows', hidden: true },
    h('div', { class: 'eval-rows-head' }, rowsHead, h('label', { class: 'check' }, allToggle, ' Show all rows')),
    samples, more);

  const target = h('select', { 'data-testid': 'eval-target', 'aria-label': 'What to evaluate' });
  const rowsInput = h('input', { type: 'number', min: 1, max: 1000, step: 1, class: 'eval-rows-input', 'aria-label': 'Rows to evaluate', 'data-testid': 'eval-rows-input' });
  const again = h('button', { type: 'button', class: 'btn', 'data-testid': 'eval-run' }, 'Evaluate');
  const againForm = h('div', { class: 'inline-form eval-again', hidden: true },
    h('span', { class: 'muted small' }, 'Run again:'), target, rowsInput, again);

  const el = h('section', { class: 'card eval', 'data-testid': 'eval-section', hidden: true, 'aria-labelledby': 'eval-heading' },
    h('div', { class: 'page-head' }, h('h2', { id: 'eval-heading' }, 'Evaluation'), selectWrap),
    status, meta, errorBox, warnings, table, rowsPart, againForm);

  function defaultIndex() {
    for (let i = evals.length - 1; i >= 0; i -= 1) if (evals[i].final && !evals[i].requested) return i;
    return evals.length - 1;
  }
  const current = () => (chosen !== null && chosen < evals.length ? evals[chosen] : evals[defaultIndex()]);

  function evaluating() {
    if (running) return running;
    if (!spec || !run || run.status !== 'running') return null;
    const pending = [...pendingCheckpoints].sort((a, b) => a - b);
    if (pending.length) return `Evaluating checkpoint ${pending[0]} against the base model…`;
    const done = typeof run.maxSteps === 'number' && typeof lastStep === 'number' && lastStep >= run.maxSteps;
    if (done && !finalSeen) return 'Evaluating… the base model and the adapter answer the held-out rows.';
    return null;
  }

  function waiting() {
    const state = run ? run.status : 'queued';
    if (state === 'completed') return 'No evaluation was recorded for this run.';
    if (state === 'failed' || state === 'cancelled') return 'The run ended before its eval ran.';
    const rows = typeof heldOut === 'number' ? `${Math.min(heldOut, spec.rows || heldOut)} ` : '';
    return `When training ends, the base model and the adapter answer the same ${rows}held-out rows, and the comparison shows here.`;
  }

  function drawStatus() {
    const text = evaluating();
    status.classList.toggle('busy-note', Boolean(text));
    if (text) status.textContent = text;
    else if (!evals.length && spec && !finalSeen) status.textContent = waiting();
    else status.textContent = '';
    status.hidden = !status.textContent;
    const canAgain = Boolean(spec) && run && run.status === 'completed';
    againForm.hidden = !canAgain;
    again.disabled = Boolean(running);
  }

  function drawSamples(ev) {
    const differing = new Set(ev.differing || []);
    const all = allToggle.checked;
    const list = (ev.samples || []).map((s, i) => [s, i]).filter(([, i]) => all || differing.has(i));
    const count = (ev.samples || []).length;
    rowsHead.textContent = all
      ? `All ${count} evaluated row${count === 1 ? '' : 's'} (${differing.size} with different answers)`
      : `Rows where base and adapter differ: ${differing.size} of ${count}`;
    samples.replaceChildren(...list.slice(0, shown).map(([s, i]) => sampleItem(s, differing.has(i))));
    if (!list.length) {
      samples.append(h('li', { class: 'muted empty' }, count
        ? `Base and adapter gave the same answer on all ${count} rows.`
        : 'This eval kept no rows.'));
    }
    more.hidden = list.length <= shown;
    more.textContent = `Show ${Math.min(PAGE, list.length - shown)} more of ${list.length - shown}`;
  }

  function draw() {
    el.hidden = !spec && !evals.length;
    drawStatus();
    selectWrap.hidden = evals.length < 2;
    const picked = chosen !== null && chosen < evals.length ? chosen : defaultIndex();
    select.replaceChildren(...evals.map((ev, i) => h('option', { value: i, selected: i === picked }, evalLabel(ev))));
    const ev = current();
    table.hidden = rowsPart.hidden = true;
    errorBox.hidden = true;
    warnings.replaceChildren();
    meta.textContent = '';
    delete meta.dataset.rows;
    if (!ev) return;
    const rows = `${ev.rows} of ${ev.heldOutRows} held-out row${ev.heldOutRows === 1 ? '' : 's'}`;
    const secs = typeof ev.seconds === 'number' ? ` · ${fmtNum(ev.seconds, 3)} s` : '';
    const when = ev.requested ? ` · run again ${fmtTime(ev.timestamp)}` : '';
    meta.textContent = `${evaluated(ev)} against the base model, on ${rows}${secs}${when}`;
    meta.dataset.rows = ev.rows;
    if (ev.error) {
      errorBox.hidden = false;
      errorBox.textContent = `The eval failed: ${ev.error}`;
      return;
    }
    for (const text of [...(ev.warnings || []), ...(ev.notes || [])]) {
      warnings.append(h('p', { class: 'note', 'data-testid': 'eval-warning' }, text));
    }
    tbody.replaceChildren(...(ev.table || []).map((row) => h('tr', { 'data-testid': 'eval-metric', 'data-metric': row.metric },
      h('th', { scope: 'row', class: 'mono' }, metricName(row.metric)),
      h('td', { class: 'num' }, row.base), h('td', { class: 'num' }, row.adapter),
      changeCell(row.change))));
    table.hidden = false;
    rowsPart.hidden = false;
    drawSamples(ev);
  }

  function fillTargets(checkpoints) {
    const keep = target.value;
    target.replaceChildren(h('option', { value: '' }, 'Final adapter'),
      ...(checkpoints || []).map((c) => h('option', { value: c.step }, `Checkpoint ${c.step}`)));
    if ([...target.options].some((o) => o.value === keep)) target.value = keep;
  }

  async function load() {
    if (loading) return loading;
    loading = (async () => {
      try {
        const answer = await get(`/api/runs/${enc}/evals`, { signal });
        evals = answer.evals || [];
        finalSeen = finalSeen || evals.some((ev) => ev.final && !ev.requested);
        if (answer.metricsNote) for (const ev of evals) ev.notes = [...(ev.notes || []), answer.metricsNote];
        pendingCheckpoints = new Set([...pendingCheckpoints].filter((step) => !evals.some((ev) => ev.checkpoint === step)));
        draw();
      } catch (err) { report(err); } finally { loading = null; }
    })();
    return loading;
  }

  select.addEventListener('change', () => { chosen = Number(select.value); shown = PAGE; draw(); });
  allToggle.addEventListener('change', () => { shown = PAGE; const ev = current(); if (ev && !ev.error) drawSamples(ev); });
  more.addEventListener('click', () => { shown += PAGE; const ev = current(); if (ev) drawSamples(ev); });
  again.addEventListener('click', async () => {
    const body = {};
    if (target.value !== '') body.checkpoint = Number(target.value);
    if (rowsInput.value) body.rows = Number(rowsInput.value);
    running = 'Evaluating… the base model and the adapter answer the held-out rows.';
    busy(again, true, 'Evaluating…');
    drawStatus();
    let result = null;
    try {
      await postStream(`/api/runs/${enc}/evals`, body, (frame) => {
        if (frame.event === 'progress') {
          running = `Evaluating… ${frame.data.done} of ${frame.data.total} answers`;
          drawStatus();
        } else if (frame.event === 'eval') result = frame.data;
        else if (frame.event === 'error') throw new Error(frame.data.message);
      }, { signal });
    } catch (err) { report(err); }
    running = false;
    busy(again, false);
    if (result) {
      evals.push(result);
      chosen = evals.length - 1;
      shown = PAGE;
      toast(`${evaluated(result)} evaluated again on ${result.rows} rows.`);
    }
    draw();
  });

  return {
    el,
    /** The run's summary, its config (its `eval` block) and its checkpoints. */
    update({ run: summary, config, checkpoints }) {
      run = summary;
      if (typeof summary.step === 'number') lastStep = Math.max(lastStep ?? 0, summary.step);
      if (config !== undefined) {
        spec = config && config.eval ? config.eval : null;
        rowsInput.placeholder = spec && spec.rows ? `${spec.rows} rows` : 'rows';
      }
      if (checkpoints) fillTargets(checkpoints);
      draw();
    },
    /** An event of the run: steps and checkpoints say when an eval runs; an eval.completed reloads. */
    onEvent(ev) {
      if (ev.type === 'training.log' && typeof ev.step === 'number') lastStep = Math.max(lastStep ?? 0, ev.step);
      else if (ev.type === 'training.started' && ev.metadata && typeof ev.metadata.heldOutRows === 'number') heldOut = ev.metadata.heldOutRows;
      else if (ev.type === 'checkpoint.saved' && spec && spec.atCheckpoints) pendingCheckpoints.add(ev.step);
      else if (ev.type === 'eval.completed') {
        if (ev.checkpoint !== undefined && ev.checkpoint !== null) pendingCheckpoints.delete(ev.checkpoint);
        if (ev.final && !ev.requested) finalSeen = true;
        load();
      }
      drawStatus();
    },
    load,
    hasEvals: () => evals.length > 0,
  };
}
