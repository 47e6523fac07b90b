// Data: the training rows as the trainer reads them, how long they are in tokens, and
// which tokens of a row the loss learns from (the rest are masked with -100).

import { get } from './api.js';
import { h, s, report, fmtNum } from './dom.js';

const LIMIT = 50;

function histogram(tok) {
  const W = 640, H = 200, L = 44, R = 12, T = 14, B = 30;
  const bins = tok.histogram;
  const x0 = bins.length ? bins[0].from : 0;
  const x1 = Math.max(bins.length ? bins[bins.length - 1].to : 1, tok.maxLength * 1.04, x0 + 1);
  const top = Math.max(1, ...bins.map((b) => b.rows));
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - (y / top) * (H - B - T);
  const svg = s('svg', { class: 'histogram', 'data-testid': 'histogram', viewBox: `0 0 ${W} ${H}`, role: 'img',
    'aria-label': `Tokens per row for ${tok.sampled} rows; maxLength ${tok.maxLength}` });
  svg.append(s('line', { class: 'grid', x1: L, x2: W - R, y1: H - B, y2: H - B }),
    s('text', { x: L - 6, y: sy(top), 'text-anchor': 'end', 'dominant-baseline': 'middle' }, String(top)),
    s('text', { x: L - 6, y: H - B, 'text-anchor': 'end', 'dominant-baseline': 'middle' }, '0'),
    s('text', { x: L, y: H - 8 }, String(x0)),
    s('text', { x: W - R, y: H - 8, 'text-anchor': 'end' }, `${Math.round(x1)} tokens`));
  for (const b of bins) {
    const x = sx(b.from), w = Math.max(1, sx(b.to) - sx(b.from) - 1);
    svg.append(s('rect', { class: b.from >= tok.maxLength ? 'bar over' : 'bar', x, width: w, y: sy(b.rows), height: Math.max(0, H - B - sy(b.rows)) },
      s('title', {}, `${b.from}–${b.to} tokens: ${b.rows} rows`)));
  }
  const mx = sx(tok.maxLength);
  svg.append(s('line', { class: 'limit', x1: mx, x2: mx, y1: T - 6, y2: H - B }),
    s('text', { class: 'limit-label', x: mx - 4, y: T, 'text-anchor': 'end' }, `maxLength ${tok.maxLength}`));
  return svg;
}

function rowCell(row, asChat) {
  if (asChat && Array.isArray(row.messages)) {
    return h('div', { class: 'turns' }, row.messages.map((m) => {
      const text = typeof m.content === 'string' ? m.content : JSON.stringify(m.content);
      return h('div', { class: `turn turn-${m.role}` }, h('span', { class: 'msg-role' }, m.role), ' ', text.length > 240 ? `${text.slice(0, 239)}…` : text);
    }));
  }
  const json = JSON.stringify(row);
  return h('code', { class: 'json' }, json.length > 400 ? `${json.slice(0, 399)}…` : json);
}

export function render(main, { query }) {
  const ctl = new AbortController();
  const opts = { signal: ctl.signal };
  let offset = 0, count = null, rows = [], selected = null, asChat = true;
  const wanted = Number.parseInt(query.get('row') || '', 10);
  if (Number.isInteger(wanted) && wanted >= 0) { selected = wanted; offset = Math.floor(wanted / LIMIT) * LIMIT; }

  const source = h('p', { class: 'muted' }, 'Loading the dataset…');
  const countEl = h('strong', { 'data-testid': 'data-count', class: 'num' });
  const measuredEl = h('span', { 'data-testid': 'rows-measured', class: 'num' }, 'measuring tokens…');
  const maskTitle = h('h2', {}, 'Masking');
  const tokBox = h('div', {}, h('p', { class: 'muted' }, 'Measuring tokens…'));
  const tbody = h('tbody');
  const view = h('select', { id: 'row-view', 'aria-label': 'Show rows as' }, h('option', { value: 'chat' }, 'Chat turns'), h('option', { value: 'json' }, 'JSON'));
  const prev = h('button', { type: 'button', class: 'btn' }, 'Previous');
  const next = h('button', { type: 'button', class: 'btn' }, 'Next');
  const pageInfo = h('span', { class: 'muted num' });
  const mask = h('div', { class: 'mask-view', 'data-testid': 'mask-view' }, h('p', { class: 'muted' }, 'Select a row to see which of its tokens are learned.'));
  const rowsBox = h('div', { class: 'rows-scroll' }, h('table', { class: 'table rows' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, '#'), h('th', { scope: 'col' }, 'Row'))), tbody));
  const maskCard = h('section', { class: 'card' }, maskTitle, mask);
  const body = h('div', { hidden: true },
    h('div', { class: 'data-top' },
      h('section', { class: 'card' }, h('h2', {}, 'Tokens per row'), tokBox),
      maskCard),
    h('section', { class: 'card' },
      h('div', { class: 'page-head' }, h('h2', {}, 'Rows'), h('div', { class: 'actions' }, view, prev, pageInfo, next)),
      rowsBox));
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Data'),
    h('p', { class: 'data-summary' }, countEl, h('span', { class: 'muted', 'aria-hidden': 'true' }, ' · '), measuredEl)), source, body);

  function drawRows() {
    tbody.replaceChildren(...rows.map(({ index, row }) => {
      const btn = h('button', { type: 'button', class: 'linkish num', 'aria-label': `Show masking of row ${index}` }, String(index));
      const tr = h('tr', { class: index === selected ? 'selected' : '', 'data-row': index }, h('td', {}, btn), h('td', {}, rowCell(row, asChat)));
      tr.addEventListener('click', () => select(index));
      return tr;
    }));
    const end = offset + rows.length;
    pageInfo.textContent = rows.length ? `${offset + 1}–${end}${count !== null ? ` of ${count}` : ''}` : 'no rows';
    prev.disabled = offset === 0;
    next.disabled = count !== null ? end >= count : rows.length < LIMIT;
  }

  function drawMask(r) {
    const note = r.learned === 0
      ? h('p', { class: 'error-box', role: 'alert' }, 'All labels are -100: this row teaches nothing. It may have no assistant turn (with trainer.train_on_responses_only on, only assistant tokens are learned), or its prompt alone fills maxLength.')
      : h('p', { class: 'num' }, h('strong', {}, `${r.learned} of ${r.total}`), ' tokens learned.');
    maskTitle.textContent = `Masking · row ${r.index}`;
    mask.replaceChildren(
      h('p', { class: 'legend', 'aria-label': 'Legend' },
        h('span', { class: 'legend-item' }, h('span', { class: 'tok learned' }, 'learned'), ' counts in the loss'),
        h('span', { class: 'legend-item' }, h('span', { class: 'tok masked' }, 'masked'), ' label -100, not learned'),
        h('span', { class: 'legend-item muted' }, 'one box per token; line breaks kept')),
      note,
      h('div', { class: 'tokens', tabindex: 0, role: 'group', 'aria-label': `Tokens of row ${r.index}` },
        r.tokens.map((t) => h('span', { class: t.learned ? 'tok learned' : 'tok masked' }, t.text))));
  }

  async function loadTokens() {
    try {
      const tok = await get(`/api/data/tokens${selected !== null ? `?row=${selected}` : ''}`, opts);
      const st = tok.stats;
      measuredEl.textContent = `${tok.sampled} of ${tok.count} rows measured${tok.sampled < tok.count ? ' (the first ones)' : ''}`;
      tokBox.replaceChildren(histogram(tok), h('div', { class: 'stats' },
        [['rows measured', `${tok.sampled} of ${tok.count}`], ['min', st.min], ['mean', fmtNum(st.mean, 4)], ['p50', st.p50],
          ['p95', st.p95], ['max', st.max], ['over maxLength', st.truncated], ['nothing learned', st.noLearned]]
          .map(([k, v]) => h('div', { class: 'stat' }, h('span', { class: 'muted small' }, k), h('strong', { class: 'num' }, String(v))))));
      if (tok.row) drawMask(tok.row);
    } catch (err) {
      if (ctl.signal.aborted) return;
      measuredEl.textContent = 'token counts unavailable';
      tokBox.replaceChildren(h('p', { class: 'error-box' }, err.message));
      mask.replaceChildren(h('p', { class: 'muted' }, 'Token counts are unavailable, so the masking view is too.'));
    }
  }

  function select(index) {
    selected = index;
    for (const tr of tbody.children) tr.classList.toggle('selected', Number(tr.dataset.row) === index);
    history.replaceState(null, '', `/data?row=${index}`);
    mask.replaceChildren(h('p', { class: 'muted' }, `Tokenizing row ${index}…`));
    maskCard.scrollIntoView({ block: 'nearest' });
    loadTokens();
  }

  async function loadPage(first) {
    try {
      const res = await get(`/api/data?offset=${offset}&limit=${LIMIT}`, opts);
      count = res.count;
      rows = res.rows;
      if (first) {
        asChat = rows.some((r) => Array.isArray(r.row.messages));
        view.value = asChat ? 'chat' : 'json';
        const fmt = res.format && res.format.type ? ` · format ${res.format.type}` : '';
        const path = res.path && !res.source.includes(res.path) ? ` · ${res.path}` : '';
        source.textContent = `${res.source}${path}${fmt}`;
        countEl.textContent = count === null ? 'row count unknown' : `${count} rows`;
        body.hidden = false;
        if (selected === null && rows.length) selected = rows[0].index;
        loadTokens();
      }
      drawRows();
      const chosen = tbody.querySelector('tr.selected');
      rowsBox.scrollTop = first && chosen ? chosen.offsetTop - rowsBox.clientHeight / 3 : 0;
    } catch (err) {
      if (ctl.signal.aborted) return;
      source.replaceChildren(h('span', { class: 'error-box', role: 'alert' }, err.message));
      if (!first) report(err);
    }
  }

  view.addEventListener('change', () => { asChat = view.value === 'chat'; drawRows(); });
  prev.addEventListener('click', () => { offset = Math.max(0, offset - LIMIT); loadPage(false); });
  next.addEventListener('click', () => { offset += LIMIT; loadPage(false); });
  loadPage(true);
  return () => ctl.abort();
}
