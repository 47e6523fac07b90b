// New run: pick a config, add --set style overrides, then validate, build or start.
// Config errors are listed beside the config text, with their lines highlighted.

import { get, post } from './api.js';
import { h, report, toast, navigate, busy } from './dom.js';

const STATE_KEY = 'arkor-studio-new-run';

function issueText(i) {
  const where = [i.file, i.line, i.column].filter((x) => x !== null && x !== undefined).join(':');
  return `${where ? `${where} ` : ''}${i.path && !where ? `${i.path}: ` : ''}${i.message}${i.suggestion ? ` (${i.suggestion})` : ''}`;
}

export function render(main) {
  const ctl = new AbortController();
  const saved = JSON.parse(sessionStorage.getItem(STATE_KEY) || '{}');
  let configs = [];

  const select = h('select', { id: 'config', 'data-testid': 'config-select' });
  const keys = h('datalist', { id: 'override-keys' });
  const rows = h('div', { class: 'overrides' });
  const add = h('button', { type: 'button', class: 'btn small', 'data-testid': 'override-add' }, 'Add override');
  const validate = h('button', { type: 'button', class: 'btn', 'data-testid': 'validate' }, 'Validate');
  const build = h('button', { type: 'button', class: 'btn', 'data-testid': 'build' }, 'Build');
  const start = h('button', { type: 'button', class: 'btn primary', 'data-testid': 'start-run' }, 'Start run');
  const result = h('div', { class: 'result', role: 'status' });
  const code = h('pre', { class: 'code numbered', tabindex: 0, 'aria-label': 'Config text' });
  const issues = h('ol', { class: 'issues', 'data-testid': 'issues', 'aria-label': 'Config problems' });
  const issuesNote = h('p', { class: 'muted small' }, 'Validate to check the config and the overrides.');

  main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'New run')),
    h('section', { class: 'card' },
      h('div', { class: 'field' }, h('label', { for: 'config' }, 'Config'), select),
      h('fieldset', { class: 'field' }, h('legend', {}, 'Overrides'), rows, add, keys),
      h('div', { class: 'actions' }, validate, build, start),
      result),
    h('div', { class: 'config-view' },
      h('section', { class: 'card' }, h('h2', {}, 'Config text'), code),
      h('section', { class: 'card' }, h('h2', {}, 'Problems'), issuesNote, issues)),
  );

  function save() {
    sessionStorage.setItem(STATE_KEY, JSON.stringify({ config: select.value, overrides: overrideRows() }));
  }
  function overrideRows() {
    return [...rows.children].map((row) => [row.querySelector('.ov-key').value.trim(), row.querySelector('.ov-value').value]);
  }
  function overrides() {
    return overrideRows().filter(([k]) => k).map(([k, v]) => `${k}=${v}`);
  }
  function addRow(key = '', value = '') {
    const n = rows.children.length + 1;
    const row = h('div', { class: 'override-row' },
      h('input', { class: 'ov-key mono', list: 'override-keys', value: key, placeholder: 'trainer.max_steps', 'aria-label': `Override ${n} key`, oninput: save }),
      h('span', { 'aria-hidden': 'true' }, '='),
      h('input', { class: 'ov-value mono', value, placeholder: 'value', 'aria-label': `Override ${n} value`, oninput: save }),
      h('button', { type: 'button', class: 'btn small', 'aria-label': `Remove override ${n}`, onclick: () => { row.remove(); save(); } }, 'Remove'));
    rows.append(row);
    return row;
  }
  add.addEventListener('click', () => addRow().querySelector('input').focus());

  function showText() {
    const cfg = configs.find((c) => c.name === select.value);
    const lines = (cfg ? cfg.text : '').split('\n');
    code.replaceChildren(...lines.map((line, i) => h('span', { class: 'line', 'data-line': i + 1 },
      h('span', { class: 'ln', 'aria-hidden': 'true' }, String(i + 1)), h('span', { class: 'tx' }, line || ' '))));
  }

  function matches(file) {
    if (!file) return true;
    const name = select.value;
    return file === name || file.endsWith(`/${name}`) || name.endsWith(`/${file}`);
  }
  function showIssues(list) {
    for (const el of code.querySelectorAll('.line.hl')) el.classList.remove('hl');
    issuesNote.hidden = true;
    issues.replaceChildren(...list.map((i) => {
      const line = i.line && matches(i.file) ? code.querySelector(`[data-line="${i.line}"]`) : null;
      if (line) line.classList.add('hl');
      const text = issueText(i);
      return h('li', { class: 'issue' }, line
        ? h('button', { type: 'button', class: 'linkish', onclick: () => { line.scrollIntoView({ block: 'center' }); } }, text)
        : text);
    }));
    const first = code.querySelector('.line.hl');
    if (first) code.scrollTop = Math.max(0, first.offsetTop - code.clientHeight / 2);
  }
  function clearOutcome() { result.replaceChildren(); }

  async function act(button, label, fn) {
    const all = [validate, build, start];
    for (const b of all) b.disabled = true;
    busy(button, true, label);
    clearOutcome();
    try {
      await fn({ config: select.value, overrides: overrides() });
    } catch (err) {
      if (err.issues && err.issues.length) showIssues(err.issues);
      result.replaceChildren(h('p', { class: 'error-box' }, err.message));
      report(err);
    } finally {
      busy(button, false);
      for (const b of all) b.disabled = false;
    }
  }

  validate.addEventListener('click', () => act(validate, 'Validating…', async (body) => {
    const res = await post('/api/validate', body, { signal: ctl.signal });
    if (res.valid) {
      showIssues([]);
      issuesNote.hidden = false;
      issuesNote.textContent = 'No problems found.';
      result.replaceChildren(h('p', { class: 'ok-box' }, `Valid: trainer ${res.trainer.name} on ${res.trainer.model}.`));
    } else {
      showIssues(res.errors);
      result.replaceChildren(h('p', { class: 'error-box' }, `${res.errors.length} problem${res.errors.length === 1 ? '' : 's'} in the config; see the list beside it.`));
    }
  }));

  build.addEventListener('click', () => act(build, 'Building…', async (body) => {
    const res = await post('/api/build', body, { signal: ctl.signal });
    showIssues([]);
    const list = (label, xs) => (xs.length ? h('div', {}, h('strong', {}, label), h('ul', {}, xs.map((x) => h('li', { class: 'mono' }, x)))) : null);
    result.replaceChildren(h('div', { class: 'ok-box' },
      h('p', {}, 'Built ', h('span', { class: 'mono' }, res.manifest), ' (digest ', h('span', { class: 'mono' }, res.digest.slice(0, 16)), ').'),
      list('Moved', res.moved), list('Unresolved', res.unresolved)));
  }));

  start.addEventListener('click', () => act(start, 'Starting…', async (body) => {
    const res = await post('/api/runs', body, { signal: ctl.signal });
    toast(`Run ${res.run.name || res.run.id} started.`);
    navigate(`/runs/${encodeURIComponent(res.run.id)}`);
  }));

  select.addEventListener('change', () => { showText(); showIssues([]); issuesNote.hidden = false; clearOutcome(); save(); });

  (async () => {
    try {
      const res = await get('/api/configs', { signal: ctl.signal });
      configs = res.configs;
      keys.replaceChildren(...res.overrideKeys.map((k) => h('option', { value: k })));
      select.replaceChildren(...configs.map((c) => h('option', { value: c.name }, `${c.name} (${c.format})`)));
      if (!configs.length) {
        result.replaceChildren(h('p', { class: 'error-box' }, 'This project has no config file. Create arkor.toml (see `arkor init`) and reload.'));
        for (const b of [validate, build, start]) b.disabled = true;
      }
      if (saved.config && configs.some((c) => c.name === saved.config)) select.value = saved.config;
      for (const [k, v] of saved.overrides || []) addRow(k, v);
      showText();
    } catch (err) {
      result.replaceChildren(h('p', { class: 'error-box' }, err.message));
      report(err);
    }
  })();

  return () => ctl.abort();
}
