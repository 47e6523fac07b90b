// A small SVG line chart for a training run: train and eval loss share the upper panel's
// y-axis, the learning rate has its own lower panel; the x-axis (step) is shared.
// The SVG and its paths are made once; add() only queues a redraw of their geometry.

import { h, s, fmtNum } from './dom.js';

const HEIGHT = 240;
const PAD = { left: 58, right: 14 };
const MAIN = { top: 10, bottom: 158 };
const LR = { top: 178, bottom: 214 };
const X_LABELS = 230;

/** About `count` round tick values covering [lo, hi]. */
function niceTicks(lo, hi, count) {
  const span = hi - lo;
  if (!(span > 0)) return [lo];
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm >= 5 ? 10 : norm >= 2 ? 5 : norm >= 1 ? 2 : 1) * mag;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function extent(series) {
  let lo = Infinity, hi = -Infinity;
  for (const pts of series) for (const [, y] of pts) { if (y < lo) lo = y; if (y > hi) hi = y; }
  if (lo === Infinity) return null;
  if (lo === hi) { const d = Math.abs(lo) * 0.1 || 1; return [lo - d, hi + d]; }
  const d = (hi - lo) * 0.06;
  return [lo - d, hi + d];
}

/** Keeps the first, lowest, highest and last point of each pixel column, so spikes survive. */
function downsample(pts, sx) {
  if (pts.length <= 2) return pts.map(([x, y]) => [sx(x), y]);
  const out = [];
  let col = null, group = [];
  const flush = () => {
    if (!group.length) return;
    let lo = 0, hi = 0;
    group.forEach((p, i) => { if (p[1] < group[lo][1]) lo = i; if (p[1] > group[hi][1]) hi = i; });
    const keep = [...new Set([0, lo, hi, group.length - 1])].sort((a, b) => a - b);
    for (const i of keep) out.push([col, group[i][1]]);
  };
  for (const p of pts) {
    const px = Math.round(sx(p[0]));
    if (px !== col) { flush(); col = px; group = []; }
    group.push(p);
  }
  flush();
  return out;
}

const fmtLr = (v) => (v === 0 ? '0' : v.toExponential(1).replace('.0e', 'e'));

export function createChart() {
  const data = { loss: [], eval: [], lr: [] };
  const svg = s('svg', {
    class: 'chart', 'data-testid': 'chart', 'data-points': 0, role: 'img',
    'aria-label': 'Training loss, eval loss and learning rate by step', height: HEIGHT,
  });
  const gridMain = s('g', { class: 'axis' });
  const gridLr = s('g', { class: 'axis' });
  const gridX = s('g', { class: 'axis' });
  const lossPath = s('path', { class: 'line s-loss' });
  const evalPath = s('path', { class: 'line s-eval' });
  const evalDots = s('path', { class: 'dots s-eval' });
  const lrPath = s('path', { class: 'line s-lr' });
  const head = s('circle', { class: 'head s-loss', r: 3, visibility: 'hidden' });
  const empty = s('text', { class: 'empty', 'text-anchor': 'middle' }, 'Waiting for the first logged step…');
  svg.append(gridMain, gridLr, gridX, lrPath, evalPath, evalDots, lossPath, head, empty);

  const value = () => h('span', { class: 'num' }, '—');
  const vals = { loss: value(), eval: value(), lr: value() };
  const item = (cls, label, v) => h('span', { class: 'legend-item' }, h('span', { class: `swatch ${cls}` }), label, ' ', v);
  const legend = h('div', { class: 'legend' },
    item('s-loss', 'train loss', vals.loss), item('s-eval', 'eval loss', vals.eval), item('s-lr', 'learning rate', vals.lr));
  const el = h('div', { class: 'chart-box' }, legend, svg);

  let queued = false;
  const schedule = () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; draw(); });
  };
  new ResizeObserver(schedule).observe(svg);

  function axisY(group, ticks, sy, fmt, width) {
    group.replaceChildren(...ticks.flatMap((t) => [
      s('line', { class: 'grid', x1: PAD.left, x2: width - PAD.right, y1: sy(t), y2: sy(t) }),
      s('text', { x: PAD.left - 6, y: sy(t), 'text-anchor': 'end', 'dominant-baseline': 'middle' }, fmt(t)),
    ]));
  }

  function draw() {
    const width = Math.max(200, svg.clientWidth || svg.getBoundingClientRect().width || 600);
    svg.setAttribute('viewBox', `0 0 ${width} ${HEIGHT}`);
    const all = [...data.loss, ...data.eval, ...data.lr];
    empty.setAttribute('x', width / 2);
    empty.setAttribute('y', (MAIN.top + MAIN.bottom) / 2);
    empty.setAttribute('visibility', all.length ? 'hidden' : 'visible');
    if (!all.length) {
      for (const p of [lossPath, evalPath, evalDots, lrPath]) p.setAttribute('d', '');
      head.setAttribute('visibility', 'hidden');
      for (const g of [gridMain, gridLr, gridX]) g.replaceChildren();
      return;
    }
    let x0 = Infinity, x1 = -Infinity;
    for (const [x] of all) { if (x < x0) x0 = x; if (x > x1) x1 = x; }
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    const sx = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (width - PAD.left - PAD.right);
    const yRange = (ext, box) => (y) => box.bottom - ((y - ext[0]) / (ext[1] - ext[0])) * (box.bottom - box.top);

    const mainExt = extent([data.loss, data.eval]) || [0, 1];
    const sy = yRange(mainExt, MAIN);
    const lrExt = extent([data.lr]) || [0, 1];
    const sl = yRange(lrExt, LR);

    axisY(gridMain, niceTicks(mainExt[0], mainExt[1], 5), sy, (t) => fmtNum(t, 3), width);
    const lrTicks = niceTicks(lrExt[0], lrExt[1], 2);
    axisY(gridLr, lrTicks.length > 2 ? [lrTicks[0], lrTicks[lrTicks.length - 1]] : lrTicks, sl, fmtLr, width);
    const xt = niceTicks(Math.max(0, x0), x1, Math.max(2, Math.floor(width / 90))).filter((t) => Number.isInteger(t));
    gridX.replaceChildren(...xt.flatMap((t) => [
      s('line', { class: 'grid', x1: sx(t), x2: sx(t), y1: MAIN.top, y2: LR.bottom }),
      s('text', { x: sx(t), y: X_LABELS, 'text-anchor': 'middle' }, String(t)),
    ]), s('text', { x: 4, y: X_LABELS, class: 'unit' }, 'step'));

    const line = (pts, scale) => {
      const d = downsample(pts, sx);
      if (!d.length) return ['', 0];
      const str = d.map(([x, y], i) => `${i ? 'L' : 'M'}${x.toFixed(1)},${scale(y).toFixed(1)}`).join('');
      return [d.length === 1 ? `${str}h0.01` : str, d.length];
    };
    const [lossD, drawn] = line(data.loss, sy);
    lossPath.setAttribute('d', lossD);
    svg.setAttribute('data-drawn', drawn);
    evalPath.setAttribute('d', line(data.eval, sy)[0]);
    evalDots.setAttribute('d', data.eval.length > 300 ? ''
      : data.eval.map(([x, y]) => `M${sx(x).toFixed(1)},${sy(y).toFixed(1)}h0`).join(''));
    lrPath.setAttribute('d', line(data.lr, sl)[0]);
    const last = data.loss[data.loss.length - 1];
    head.setAttribute('visibility', last ? 'visible' : 'hidden');
    if (last) { head.setAttribute('cx', sx(last[0])); head.setAttribute('cy', sy(last[1])); }
  }

  function push(p) {
    if (typeof p.step !== 'number') return;
    if (typeof p.loss === 'number' && Number.isFinite(p.loss)) { data.loss.push([p.step, p.loss]); vals.loss.textContent = fmtNum(p.loss); }
    if (typeof p.evalLoss === 'number' && Number.isFinite(p.evalLoss)) { data.eval.push([p.step, p.evalLoss]); vals.eval.textContent = fmtNum(p.evalLoss); }
    if (typeof p.learningRate === 'number' && Number.isFinite(p.learningRate)) { data.lr.push([p.step, p.learningRate]); vals.lr.textContent = fmtLr(p.learningRate); }
  }

  return {
    el,
    svg,
    /** Adds one logged point ({step, loss?, evalLoss?, learningRate?}) and queues a redraw. */
    add(p) { push(p); svg.setAttribute('data-points', data.loss.length); schedule(); },
    addMany(points) { for (const p of points) push(p); svg.setAttribute('data-points', data.loss.length); schedule(); },
  };
}
