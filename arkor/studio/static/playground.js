// Playground: chat with the base model, a run's final adapter or checkpoint, or an
// endpoint; the answer streams in token by token. Compare sends the same turn to two
// targets side by side, each side keeping its own history.

import { get, postStream } from './api.js';
import { h, report } from './dom.js';

function targetOptions(t) {
  const groups = [];
  if (t.baseModel) {
    groups.push(h('optgroup', { label: 'Base model' },
      h('option', { value: JSON.stringify({ kind: 'base', model: t.baseModel }) }, `Base model · ${t.baseModel}`)));
  }
  for (const run of t.runs) {
    const opts = [];
    if (run.final) opts.push(h('option', { value: JSON.stringify({ kind: 'final', run: run.id }) }, `${run.name} · final adapter`));
    for (const step of [...run.checkpoints].sort((a, b) => b - a)) {
      opts.push(h('option', { value: JSON.stringify({ kind: 'checkpoint', run: run.id, step }) }, `${run.name} · checkpoint ${step}`));
    }
    groups.push(h('optgroup', { label: `Run ${run.name} (${run.status})` }, opts));
  }
  if (t.endpoints.length) {
    groups.push(h('optgroup', { label: 'Endpoints' }, t.endpoints.map((e) =>
      h('option', { value: JSON.stringify({ kind: 'endpoint', slug: e.slug }) }, `Endpoint · ${e.slug}`))));
  }
  return groups;
}

function makeColumn(side) {
  const select = h('select', { 'data-testid': 'target-select', 'data-side': side, 'aria-label': side === 'a' ? 'Target' : 'Second target' });
  const list = h('div', { class: 'messages', 'aria-live': 'polite', 'data-empty': 'No messages yet: write one below and press Enter.' });
  const el = h('section', { class: 'chat-column card', 'data-testid': 'chat-column', 'data-side': side },
    h('div', { class: 'field' }, h('label', {}, side === 'a' ? 'Target' : 'Compare with', select)), list);
  const col = { side, select, list, el, history: [] };
  col.add = (role, text) => {
    const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 16;
    const body = h('div', { class: 'msg-text' }, text);
    const meta = h('div', { class: 'msg-meta muted small' });
    const msg = h('div', { class: `msg msg-${role}` }, h('div', { class: 'msg-role' }, role), body, meta);
    if (role === 'assistant') {
      for (const old of list.querySelectorAll('[data-testid="answer"]')) old.removeAttribute('data-testid');
      body.setAttribute('data-testid', 'answer');
    }
    list.append(msg);
    if (stick) list.scrollTop = list.scrollHeight;
    return { msg, body, meta, scroll: () => { if (list.scrollHeight - list.scrollTop - list.clientHeight < 48) list.scrollTop = list.scrollHeight; } };
  };
  col.target = () => (select.value ? JSON.parse(select.value) : null);
  return col;
}

export function render(main, { query }) {
  const ctl = new AbortController();
  let inflight = [];
  let edited = false;
  let promptRun;

  const cols = [makeColumn('a'), makeColumn('b')];
  cols[1].el.hidden = true;
  const compare = h('input', { type: 'checkbox', id: 'compare', 'data-testid': 'compare-toggle' });
  const system = h('textarea', { id: 'system', rows: 3, 'data-testid': 'system-prompt', placeholder: 'No system prompt' });
  const temperature = h('input', { id: 'temperature', type: 'number', min: 0, max: 2, step: 0.1, value: '0.7', class: 'num' });
  const maxTokens = h('input', { id: 'max-tokens', type: 'number', min: 1, step: 1, value: '256', class: 'num' });
  const input = h('textarea', { id: 'chat-input', rows: 3, 'data-testid': 'chat-input', placeholder: 'Message (Enter sends, Shift+Enter for a new line)' });
  const send = h('button', { type: 'button', class: 'btn primary', 'data-testid': 'send' }, 'Send');
  const stop = h('button', { type: 'button', class: 'btn', 'data-testid': 'stop', disabled: true }, 'Stop');
  const reset = h('button', { type: 'button', class: 'btn', 'data-testid': 'reset' }, 'Reset');
  const notice = h('p', { class: 'muted', hidden: true });
  const columns = h('div', { class: 'chat-columns' }, cols[0].el, cols[1].el);

  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Playground'),
      h('label', { class: 'check' }, compare, ' Compare two targets')),
    notice,
    h('section', { class: 'card settings' },
      h('div', { class: 'field grow' }, h('label', { for: 'system' }, 'System prompt'), system),
      h('div', { class: 'field' }, h('label', { for: 'temperature' }, 'Temperature'), temperature),
      h('div', { class: 'field' }, h('label', { for: 'max-tokens' }, 'Max tokens'), maxTokens)),
    columns,
    h('section', { class: 'card composer', 'aria-label': 'Message' }, h('label', { for: 'chat-input', class: 'visually-hidden' }, 'Message'), input,
      h('div', { class: 'actions' }, send, stop, reset)),
  );

  system.addEventListener('input', () => { edited = system.value !== ''; });

  async function prefill() {
    const target = cols[0].target();
    if (!target || target.kind === 'endpoint') return;
    const run = target.run || '';
    if (run === promptRun) return;
    promptRun = run;
    try {
      const res = await get(`/api/system-prompt${run ? `?run=${encodeURIComponent(run)}` : ''}`, { signal: ctl.signal });
      if (!edited && promptRun === run) system.value = res.systemPrompt || '';
    } catch (err) { report(err); }
  }
  cols[0].select.addEventListener('change', prefill);

  compare.addEventListener('change', () => {
    cols[1].el.hidden = !compare.checked;
    columns.classList.toggle('compare', compare.checked);
    const b = cols[1].select;
    if (compare.checked && b.value === cols[0].select.value) {
      const other = [...b.options].find((o) => o.value !== cols[0].select.value);
      if (other) b.value = other.value;
    }
  });

  function setSending(on) {
    send.disabled = on;
    stop.disabled = !on;
    send.classList.toggle('busy', on);
    if (on) send.setAttribute('aria-busy', 'true'); else send.removeAttribute('aria-busy');
  }

  function numberOf(el, parse) {
    const v = parse(el.value);
    return Number.isFinite(v) ? v : undefined;
  }

  async function ask(col, text) {
    const target = col.target();
    col.history.push({ role: 'user', content: text });
    const userMsg = col.add('user', text);
    const reply = col.add('assistant', '');
    reply.msg.classList.add('streaming');
    const messages = [...(system.value.trim() ? [{ role: 'system', content: system.value }] : []), ...col.history];
    const abort = new AbortController();
    inflight.push(abort);
    let content = '';
    let failure = null;
    try {
      await postStream('/api/chat', {
        target, messages, temperature: numberOf(temperature, parseFloat), maxTokens: numberOf(maxTokens, (v) => parseInt(v, 10)),
      }, (frame) => {
        if (frame.event === 'message' && frame.data && typeof frame.data.delta === 'string') {
          content += frame.data.delta;
          reply.body.textContent = content;
          reply.scroll();
        } else if (frame.event === 'done') {
          const d = frame.data || {};
          const usage = d.usage ? `${d.usage.promptTokens} prompt + ${d.usage.completionTokens} completion tokens` : null;
          reply.meta.textContent = [d.model, d.finishReason && `finish: ${d.finishReason}`, usage].filter(Boolean).join(' · ');
        } else if (frame.event === 'error') {
          failure = new Error((frame.data && frame.data.message) || 'The answer stopped with an error.');
        }
      }, { signal: abort.signal });
    } catch (err) {
      failure = err;
    } finally {
      inflight = inflight.filter((c) => c !== abort);
      reply.msg.classList.remove('streaming');
    }
    if (failure && failure.name === 'AbortError') {
      reply.meta.textContent = 'Stopped.';
    } else if (failure) {
      reply.msg.classList.add('failed');
      reply.meta.textContent = failure.message;
      if (!ctl.signal.aborted) report(failure);
    }
    if (content) col.history.push({ role: 'assistant', content });
    else {
      col.history.pop();
      userMsg.meta.textContent = 'Not answered; this message is left out of the history.';
    }
  }

  async function submit() {
    const text = input.value.trim();
    if (!text || send.disabled) return;
    const active = compare.checked ? cols : [cols[0]];
    if (active.some((c) => !c.target())) { report(new Error('Choose a target to chat with first.')); return; }
    input.value = '';
    setSending(true);
    await Promise.all(active.map((c) => ask(c, text)));
    setSending(false);
    if (!ctl.signal.aborted) input.focus();
  }

  send.addEventListener('click', submit);
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); submit(); }
  });
  stop.addEventListener('click', () => { for (const c of inflight) c.abort(); });
  reset.addEventListener('click', () => {
    for (const c of inflight) c.abort();
    for (const col of cols) { col.history = []; col.list.replaceChildren(); }
    input.focus();
  });

  (async () => {
    let targets;
    try {
      targets = await get('/api/targets', { signal: ctl.signal });
    } catch (err) {
      notice.hidden = false;
      notice.textContent = err.message;
      report(err);
      return;
    }
    for (const col of cols) col.select.replaceChildren(...targetOptions(targets));
    if (!cols[0].select.options.length) {
      notice.hidden = false;
      notice.textContent = 'Nothing to chat with yet: the project has no trainer.model, no run with an adapter and no endpoint.';
      send.disabled = true;
      return;
    }
    const run = query.get('run');
    if (run) {
      const step = query.get('step');
      const want = step !== null ? { kind: 'checkpoint', run, step: Number(step) } : { kind: 'final', run };
      const match = [...cols[0].select.options].find((o) => o.value === JSON.stringify(want))
        || [...cols[0].select.options].find((o) => JSON.parse(o.value).run === run);
      if (match) cols[0].select.value = match.value;
      else report(new Error(`Run ${run} has no adapter to chat with yet (no final adapter${step !== null ? ` and no checkpoint at step ${step}` : ''}).`));
    }
    prefill();
  })();

  return () => { ctl.abort(); for (const c of inflight) c.abort(); };
}
