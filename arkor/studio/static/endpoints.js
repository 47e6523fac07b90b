// Endpoints: OpenAI-compatible deployments of a run's adapter (or the base model),
// with their API keys, recent requests and ready-to-paste client snippets.

import { get, post, patch, del } from './api.js';
import { h, report, toast, copyButton, fmtTime, busy } from './dom.js';

const BASE = '__base__';

function slugify(text) {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40);
}

/** A run select plus a final/checkpoint select; value() is the body part that names the target. */
function adapterPicker(targets, { run, idPrefix }) {
  const runSel = h('select', { id: `${idPrefix}-run` });
  const stepSel = h('select', { id: `${idPrefix}-step`, 'aria-label': 'Adapter' });
  if (targets.baseModel) runSel.append(h('option', { value: BASE }, `Base model · ${targets.baseModel}`));
  for (const r of targets.runs) runSel.append(h('option', { value: r.id }, `${r.name} (${r.status})`));
  const fillSteps = () => {
    const r = targets.runs.find((x) => x.id === runSel.value);
    stepSel.replaceChildren(...(r ? [
      r.final ? h('option', { value: '' }, 'Final adapter') : null,
      ...[...r.checkpoints].sort((a, b) => b - a).map((st) => h('option', { value: st }, `Checkpoint ${st}`)),
    ] : [h('option', { value: '' }, '—')]));
    stepSel.disabled = !r;
  };
  if (run && targets.runs.some((r) => r.id === run)) runSel.value = run;
  else if (targets.runs.length) runSel.value = targets.runs[0].id;
  runSel.addEventListener('change', fillSteps);
  fillSteps();
  return {
    runSel, stepSel,
    empty: () => !runSel.options.length,
    value() {
      if (runSel.value === BASE) return { target: { kind: 'base_model', baseModel: targets.baseModel } };
      return stepSel.value === '' ? { run: runSel.value } : { run: runSel.value, step: Number(stepSel.value) };
    },
    runName: () => (targets.runs.find((r) => r.id === runSel.value) || {}).name || '',
  };
}

function describeTarget(t, runs) {
  if (!t) return 'unknown target';
  if (t.kind === 'base_model') return `base model ${t.baseModel}`;
  const a = t.adapter || {};
  const run = runs.find((r) => r.id === a.jobId);
  const name = run ? run.name : a.jobId;
  return a.kind === 'checkpoint' ? `checkpoint ${a.step} of run ${name}` : `final adapter of run ${name}`;
}

function snippets(d) {
  const url = d.url.replace(/\/+$/, '');
  const body = JSON.stringify({ model: d.model, messages: [{ role: 'user', content: 'Hello!' }] });
  const curl = `curl ${url}/chat/completions \\\n  -H "Authorization: Bearer $ARKOR_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d '${body.replace(/'/g, "'\\''")}'`;
  const python = `import os\n\nfrom openai import OpenAI\n\nclient = OpenAI(base_url=${JSON.stringify(url)}, api_key=os.environ["ARKOR_KEY"])\nreply = client.chat.completions.create(\n    model=${JSON.stringify(d.model)},\n    messages=[{"role": "user", "content": "Hello!"}],\n)\nprint(reply.choices[0].message.content)`;
  return { curl, python };
}

function table(head, rows, empty) {
  return h('div', { class: 'table-scroll' }, h('table', { class: 'table compact' },
    h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: head.length, class: 'muted' }, empty)))));
}

function firstUser(messages) {
  const m = (messages || []).find((x) => x.role === 'user');
  const text = m ? (typeof m.content === 'string' ? m.content : JSON.stringify(m.content)) : '';
  return text.length > 80 ? `${text.slice(0, 79)}…` : text;
}

export function render(main, { query }) {
  const ctl = new AbortController();
  const opts = { signal: ctl.signal };
  const list = h('div', { class: 'endpoint-list' });
  const formBox = h('section', { class: 'card' }, h('h2', {}, 'New endpoint'), h('p', { class: 'muted' }, 'Loading runs…'));
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Endpoints')), formBox, list);
  let targets = { baseModel: null, runs: [], endpoints: [] };

  function makeCard(d) {
    const ref = encodeURIComponent(d.slug);
    const { curl, python } = snippets(d);
    const enabled = h('input', { type: 'checkbox', checked: d.enabled, 'data-testid': 'endpoint-enabled' });
    const keysBody = h('div');
    const plain = h('div', { class: 'secret-box', hidden: true });
    const label = h('input', { placeholder: 'Label (optional)', 'aria-label': `Label for a new key of ${d.slug}` });
    const newKey = h('button', { type: 'button', class: 'btn', 'data-testid': 'new-key' }, 'New key');
    const reqBody = h('div');
    const refresh = h('button', { type: 'button', class: 'btn small' }, 'Refresh');
    const picker = adapterPicker(targets, { run: d.target.adapter ? d.target.adapter.jobId : null, idPrefix: `retarget-${d.slug}` });
    const retarget = h('button', { type: 'button', class: 'btn' }, 'Retarget');
    const remove = h('button', { type: 'button', class: 'btn danger' }, 'Delete');
    const card = h('section', { class: 'card endpoint', 'data-testid': 'endpoint', 'data-slug': d.slug },
      h('div', { class: 'page-head' }, h('div', {},
        h('h2', { class: 'mono' }, d.slug),
        h('p', { class: 'muted' }, `Serves the ${describeTarget(d.target, targets.runs)} · auth: ${d.authMode === 'none' ? 'none' : 'API key'}`)),
      h('div', { class: 'actions' }, h('label', { class: 'check' }, enabled, ' Enabled'), remove)),
      h('dl', { class: 'kv' },
        h('dt', {}, 'URL'), h('dd', {}, h('code', { 'data-testid': 'endpoint-url' }, d.url), ' ', copyButton(() => d.url, { 'aria-label': 'Copy URL' })),
        h('dt', {}, 'Model'), h('dd', {}, h('code', {}, d.model), ' ', copyButton(() => d.model, { 'aria-label': 'Copy model name' }))),
      h('h3', {}, 'API keys'), keysBody,
      h('div', { class: 'inline-form' }, label, newKey), plain,
      h('h3', {}, 'Use it'),
      h('div', { class: 'snippet' }, h('div', { class: 'snippet-head' }, h('span', {}, 'curl'), copyButton(() => curl, { 'aria-label': 'Copy curl snippet' })),
        h('pre', { class: 'code', 'data-testid': 'snippet-curl' }, curl)),
      h('div', { class: 'snippet' }, h('div', { class: 'snippet-head' }, h('span', {}, 'Python (openai)'), copyButton(() => python, { 'aria-label': 'Copy Python snippet' })),
        h('pre', { class: 'code', 'data-testid': 'snippet-python' }, python)),
      h('div', { class: 'snippet-head' }, h('h3', {}, 'Recent requests'), refresh), reqBody,
      h('h3', {}, 'Retarget'),
      h('div', { class: 'inline-form' }, h('label', { for: picker.runSel.id, class: 'visually-hidden' }, 'Run'), picker.runSel, picker.stepSel, retarget));

    async function loadKeys() {
      try {
        const { keys } = await get(`/api/endpoints/${ref}/keys`, opts);
        keysBody.replaceChildren(table(['Prefix', 'Label', 'Created', 'Last used', ''], keys.map((k) => h('tr', {},
          h('td', { class: 'mono' }, `${k.prefix}…`), h('td', {}, k.label || '—'), h('td', { class: 'num' }, fmtTime(k.createdAt)),
          h('td', { class: 'num' }, k.lastUsedAt ? fmtTime(k.lastUsedAt) : 'never'),
          h('td', {}, h('button', { type: 'button', class: 'btn small danger', onclick: () => revoke(k) }, 'Revoke')))), 'No keys yet.'));
      } catch (err) { report(err); }
    }
    async function revoke(k) {
      if (!confirm(`Revoke key ${k.prefix}… of ${d.slug}? Clients using it get 401 from now on.`)) return;
      try { await del(`/api/endpoints/${ref}/keys/${encodeURIComponent(k.id)}`, opts); toast('Key revoked.'); loadKeys(); } catch (err) { report(err); }
    }
    async function loadRequests() {
      try {
        const { runs } = await get(`/api/endpoints/${ref}/requests`, opts);
        reqBody.replaceChildren(table(['Time', 'Status', 'Latency', 'Tokens in / out', 'First user message'], runs.map((r) => h('tr', { title: r.error || '' },
          h('td', { class: 'num' }, fmtTime(r.createdAt)),
          h('td', {}, h('span', { class: `badge ${r.status === 'ok' ? 'st-completed' : 'st-failed'}` }, `${r.status} ${r.httpStatus ?? ''}`)),
          h('td', { class: 'num' }, r.latencyMs === null || r.latencyMs === undefined ? '—' : `${Math.round(r.latencyMs)} ms`),
          h('td', { class: 'num' }, `${r.promptTokens ?? '—'} / ${r.completionTokens ?? '—'}`),
          h('td', { class: 'clip' }, firstUser(r.messages)))), 'No requests yet.'));
      } catch (err) { report(err); }
    }

    newKey.addEventListener('click', async () => {
      newKey.disabled = true;
      busy(newKey, true, 'Creating…');
      try {
        const body = label.value.trim() ? { label: label.value.trim() } : {};
        const { key } = await post(`/api/endpoints/${ref}/keys`, body, opts);
        label.value = '';
        plain.hidden = false;
        plain.replaceChildren(
          h('p', {}, h('strong', {}, 'New key: '), 'copy it now; it will not be shown again.'),
          h('div', { class: 'inline-form' }, h('code', { class: 'secret', 'data-testid': 'key-plaintext' }, key.plaintext),
            copyButton(() => key.plaintext, { 'data-testid': 'copy-key', 'aria-label': 'Copy the new key' })),
          h('button', { type: 'button', class: 'btn small', onclick: () => { plain.hidden = true; plain.replaceChildren(); } }, 'Done, hide it'));
        loadKeys();
      } catch (err) { report(err); } finally { busy(newKey, false); newKey.disabled = false; }
    });
    enabled.addEventListener('change', async () => {
      enabled.disabled = true;
      try {
        const res = await patch(`/api/endpoints/${ref}`, { enabled: enabled.checked }, opts);
        enabled.checked = res.deployment.enabled;
        toast(`${d.slug} ${res.deployment.enabled ? 'enabled' : 'disabled'}.`);
      } catch (err) { enabled.checked = !enabled.checked; report(err); } finally { enabled.disabled = false; }
    });
    retarget.addEventListener('click', async () => {
      retarget.disabled = true;
      busy(retarget, true, 'Retargeting…');
      try {
        const res = await patch(`/api/endpoints/${ref}`, picker.value(), opts);
        toast(`${d.slug} now serves the ${describeTarget(res.deployment.target, targets.runs)}.`);
        card.replaceWith(makeCard(res.deployment));
      } catch (err) { report(err); } finally { busy(retarget, false); retarget.disabled = false; }
    });
    remove.addEventListener('click', async () => {
      if (!confirm(`Delete endpoint ${d.slug}? Its URL stops answering and its keys are revoked.`)) return;
      try { await del(`/api/endpoints/${ref}`, opts); card.remove(); toast(`${d.slug} deleted.`); showEmpty(); } catch (err) { report(err); }
    });
    refresh.addEventListener('click', loadRequests);
    if (picker.empty()) retarget.disabled = true;
    loadKeys();
    loadRequests();
    return card;
  }

  function showEmpty() {
    if (!list.querySelector('[data-testid="endpoint"]')) list.replaceChildren(h('p', { class: 'empty-state' }, 'No endpoints yet. Deploy a run with the form above.'));
  }

  function buildForm() {
    const slug = h('input', { id: 'endpoint-slug', 'data-testid': 'endpoint-slug', required: true, placeholder: 'my-model', autocomplete: 'off' });
    const picker = adapterPicker(targets, { run: query.get('run'), idPrefix: 'endpoint' });
    picker.runSel.setAttribute('data-testid', 'endpoint-run');
    const create = h('button', { type: 'submit', class: 'btn primary', 'data-testid': 'create-endpoint' }, 'Create endpoint');
    let slugTouched = false;
    const suggest = () => { if (!slugTouched) slug.value = slugify(picker.runName() || (targets.baseModel || '').split('/').pop() || ''); };
    slug.addEventListener('input', () => { slugTouched = slug.value !== ''; });
    picker.runSel.addEventListener('change', suggest);
    suggest();
    const form = h('form', { class: 'endpoint-form', 'data-testid': 'endpoint-form' },
      h('div', { class: 'field' }, h('label', { for: 'endpoint-slug' }, 'Slug'), slug),
      h('div', { class: 'field' }, h('label', { for: 'endpoint-run' }, 'Serves'), h('div', { class: 'inline-form' }, picker.runSel, picker.stepSel)),
      h('div', { class: 'actions' }, create));
    if (picker.empty()) {
      create.disabled = true;
      form.append(h('p', { class: 'muted' }, 'No run has an adapter yet and the project has no trainer.model. ', h('a', { href: '/new' }, 'Start a run'), ' first.'));
    }
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      create.disabled = true;
      busy(create, true, 'Creating…');
      try {
        const { deployment } = await post('/api/endpoints', { slug: slug.value.trim(), ...picker.value() }, opts);
        toast(`Endpoint ${deployment.slug} created.`);
        list.querySelector('.empty-state')?.remove();
        list.prepend(makeCard(deployment));
        slug.value = '';
        slugTouched = false;
      } catch (err) { report(err); } finally { busy(create, false); create.disabled = false; }
    });
    formBox.replaceChildren(h('h2', {}, 'New endpoint'), form);
    if (query.get('run')) slug.focus();
  }

  (async () => {
    try {
      const [t, { deployments }] = await Promise.all([get('/api/targets', opts), get('/api/endpoints', opts)]);
      targets = t;
      buildForm();
      list.replaceChildren(...deployments.map(makeCard));
      showEmpty();
    } catch (err) {
      if (ctl.signal.aborted) return;
      formBox.replaceChildren(h('p', { class: 'error-box' }, err.message));
      report(err);
    }
  })();

  return () => ctl.abort();
}
