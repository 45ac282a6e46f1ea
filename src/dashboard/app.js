// keypulse dashboard: fetches the bounded summary (/api/v1/summary: every figure computed
// by the service, every list cut to its first N) or one customer, and draws every chart as
// inline SVG. It never fetches an unbounded list (not the report). Hand-written, no
// dependencies. Each chart is a <figure data-chart="NAME">; once drawn with data it gets
// data-rendered="true" ("empty" when there was nothing to draw). When the service wants a
// token (401), a login form asks for it; it is kept in sessionStorage (this tab only) and
// sent as `Authorization: Bearer`.
'use strict';
(function () {
  const REFRESH_MS = 5000;
  const TOP = 12;
  const TOKEN_KEY = 'keypulse.token';
  const SVGNS = 'http://www.w3.org/2000/svg';
  const COLORS = {
    accent: '#3b6cf6', green: '#12a67a', amber: '#e8a317', red: '#e5484d',
    purple: '#8b5cf6', teal: '#0ea5a4', gray: '#98a2b3', pink: '#db2777', navy: '#1e3a8a',
  };
  const FAILURES = [
    ['expired', 'expired', COLORS.amber],
    ['domain_mismatch', 'domain mismatch', COLORS.purple],
    ['rate_limited', 'rate limited', COLORS.accent],
    ['invalid_format', 'invalid format', COLORS.gray],
    ['revoked', 'revoked', COLORS.red],
  ];
  const KINDS = [
    ['upgrade', 'upgrade', COLORS.green],
    ['renewal', 'renewal', COLORS.amber],
    ['churn_warning', 'churn warning', COLORS.red],
    ['key_sharing', 'key sharing', COLORS.purple],
    ['revoked_use', 'revoked use', COLORS.pink],
    ['expiring_soon', 'expiring soon', COLORS.teal],
  ];
  const PLAN_ORDER = ['starter', 'professional', 'business', 'enterprise'];
  const PLAN_COLORS = [COLORS.teal, COLORS.accent, COLORS.purple, COLORS.navy, COLORS.pink, COLORS.gray];
  const DEFAULT_POINTS = {
    inactive_7d: 20, inactive_30d: 30, low_domain_utilization: 15,
    validation_decline: 20, open_ticket: 10, payment_failed: 25,
  };
  const TRIGGERS = {
    domain_limit_approaching: 'domain limit', rate_limit_frequent: 'rate limits',
    feature_interest: 'locked features', team_growth: 'team growth',
  };

  // ---- small helpers -------------------------------------------------------------------
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k);
    return e;
  }
  function s(tag, attrs, ...kids) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k);
    return e;
  }
  const num = (x) => (typeof x === 'number' && isFinite(x) ? x : 0);
  const fmt = {
    int: (n) => num(n).toLocaleString('en-US'),
    pct: (x) => (x === null || x === undefined ? '–' : (x * 100).toFixed(1) + '%'),
    money: (c) => '$' + (num(c) / 100).toLocaleString('en-US', { maximumFractionDigits: 0 }),
    short: (n) => {
      n = num(n);
      if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1).replace(/\.0$/, '') + 'M';
      if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(0) + 'k';
      if (Math.abs(n) >= 1e3) return (n / 1e3).toFixed(1).replace(/\.0$/, '') + 'k';
      return String(Math.round(n * 100) / 100);
    },
    dur: (secs) => {
      if (secs === null || secs === undefined) return '–';
      if (secs < 3600) return Math.round(secs / 60) + ' min';
      if (secs < 86400) return (secs / 3600).toFixed(1) + ' h';
      return (secs / 86400).toFixed(1) + ' d';
    },
    day: (d) => (typeof d === 'string' ? d.slice(5) : ''),
    time: (t) => {
      if (!t) return '–';
      const d = new Date(t);
      return isNaN(d) ? String(t) : d.toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
    },
  };
  // The y scale of a bar chart: whole-number ticks for counts, four even ticks otherwise.
  function niceStep(x) {
    const p = Math.pow(10, Math.floor(Math.log10(x)));
    for (const k of [1, 2, 5, 10]) if (k * p >= x) return Math.max(1, Math.round(k * p));
    return Math.max(1, Math.round(10 * p));
  }
  function scale(max, integer, fixed) {
    if (fixed) return { top: max, step: max / 4 };
    if (!integer) { const top = niceMax(max); return { top, step: top / 4 }; }
    const m = Math.max(1, Math.ceil(max));
    if (m <= 4) return { top: m, step: 1 };
    const step = niceStep(m / 4);
    return { top: step * Math.ceil(m / step), step };
  }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }
  function planSort(a, b) {
    const ia = PLAN_ORDER.indexOf(a), ib = PLAN_ORDER.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || String(a).localeCompare(String(b));
  }
  function planColor(plan, i) {
    const k = PLAN_ORDER.indexOf(plan);
    return PLAN_COLORS[k >= 0 ? k : (i % PLAN_COLORS.length)];
  }
  function customerHref(id) {
    return '/customer.html?id=' + encodeURIComponent(id);
  }
  function legend(items) {
    return h('div', { class: 'legend' }, items.map(([label, color]) =>
      h('span', {}, h('i', { style: 'background:' + color }), label)));
  }

  // The drawing width (CSS px) for a chart in figure `name`: SVG units are then CSS pixels,
  // so text keeps its size on any screen. `frac` is the share of the figure when the
  // chart sits in one of two columns (a single column on narrow screens).
  function fw(name, frac) {
    const fig = document.querySelector('[data-chart="' + name + '"]');
    const full = (fig && fig.clientWidth) || 560;
    const f = frac && window.innerWidth > 820 ? frac : 1;
    return Math.max(240, Math.floor(full * f) - (f < 1 ? 18 : 0));
  }

  // Puts `node` into the figure data-chart=name and marks it rendered.
  function mount(name, hasData, ...nodes) {
    const fig = document.querySelector('[data-chart="' + name + '"]');
    if (!fig) return;
    if (!hasData) {
      fig.replaceChildren(h('div', { class: 'empty', text: 'no data yet' }));
      fig.setAttribute('data-rendered', 'empty');
      return;
    }
    fig.replaceChildren(...nodes.filter((x) => x !== null && x !== undefined));
    fig.setAttribute('data-rendered', 'true');
  }

  // ---- chart primitives ----------------------------------------------------------------
  // Vertical bars: labels along x; series [{name, color, values, colors?}], stacked or grouped.
  function vbars(opt) {
    const W = opt.width || 560, H = opt.height || 190;
    const padL = 42, padR = 8, padT = 12, padB = 26;
    const labels = opt.labels, n = Math.max(labels.length, 1), series = opt.series;
    const pw = W - padL - padR, ph = H - padT - padB;
    const totals = labels.map((_, i) => opt.stacked
      ? series.reduce((a, se) => a + num(se.values[i]), 0)
      : Math.max(0, ...series.map((se) => num(se.values[i]))));
    // Counts (no yFmt given) get whole-number ticks.
    const integer = opt.integer !== undefined ? opt.integer : !opt.yFmt;
    const sc = scale(opt.max || Math.max(...totals, 0), integer, !!opt.max);
    const top = sc.top;
    const yf = opt.yFmt || fmt.short;
    const y = (v) => padT + ph * (1 - v / top);
    const svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': opt.aria || 'bar chart' });
    for (let t = 0; t * sc.step <= top * (1 + 1e-9); t++) {
      const v = t * sc.step, yy = y(v);
      svg.append(s('line', { x1: padL, x2: W - padR, y1: yy, y2: yy, class: 'axis' }));
      svg.append(s('text', { x: padL - 6, y: yy + 3.5, 'text-anchor': 'end', 'font-size': 10, text: yf(v) }));
    }
    const band = pw / n;
    // Room for a label every ~44 px; counted from the end, so the latest day is labelled.
    const fit = Math.max(2, Math.floor(pw / 44));
    const every = Math.max(1, Math.ceil(n / Math.min(opt.maxLabels || fit, fit)));
    labels.forEach((label, i) => {
      const x0 = padL + i * band;
      if (opt.stacked) {
        const bw = Math.min(band * 0.72, 46);
        let acc = 0;
        series.forEach((se) => {
          const v = num(se.values[i]);
          if (v <= 0) return;
          const y1 = y(acc + v), y0 = y(acc);
          svg.append(s('rect', { class: 'bar', x: x0 + (band - bw) / 2, y: y1, width: bw, height: Math.max(0.5, y0 - y1), fill: se.color, rx: 1.5 },
            s('title', { text: label + ' · ' + se.name + ': ' + fmt.int(v) })));
          acc += v;
        });
        if (opt.showTotals && totals[i] > 0 && band >= 24) {
          svg.append(s('text', { x: x0 + band / 2, y: y(totals[i]) - 3, 'text-anchor': 'middle', 'font-size': 9, text: fmt.short(totals[i]) }));
        }
      } else {
        const gw = Math.min(band * 0.8, 60 * series.length), bw = gw / series.length;
        series.forEach((se, j) => {
          const v = num(se.values[i]);
          const color = (se.colors && se.colors[i]) || se.color;
          const yy = y(v);
          const x = x0 + (band - gw) / 2 + j * bw;
          svg.append(s('rect', { class: 'bar', x: x + 1, y: yy, width: Math.max(1, bw - 2), height: Math.max(0.5, padT + ph - yy), fill: color, rx: 2, opacity: opt.highlightLast && i !== labels.length - 1 ? 0.75 : 1 },
            s('title', { text: label + (series.length > 1 ? ' · ' + se.name : '') + ': ' + (opt.vFmt || fmt.int)(se.values[i]) })));
          if (opt.valueLabels) {
            svg.append(s('text', { x: x + bw / 2, y: yy - 4, 'text-anchor': 'middle', 'font-size': 10.5, class: 'value-label', text: (opt.vFmt || fmt.int)(se.values[i]) }));
          }
        });
      }
      if ((labels.length - 1 - i) % every === 0) {
        svg.append(s('text', { x: x0 + band / 2, y: H - 8, 'text-anchor': 'middle', 'font-size': 10, text: label }));
      }
    });
    return svg;
  }

  // Horizontal bars: items [{label, value, color, title}].
  function hbars(items, opt) {
    opt = opt || {};
    const W = opt.width || 560, row = opt.row || 24, labelW = opt.labelW || 120, valW = opt.valW || 64;
    const H = items.length * row + 4;
    const top = opt.max || niceMax(Math.max(0, ...items.map((i) => num(i.value))));
    const vf = opt.vFmt || fmt.int;
    const svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': opt.aria || 'bar chart' });
    const bw = W - labelW - valW;
    items.forEach((it, i) => {
      const yy = 2 + i * row;
      const w = Math.max(1, (bw * num(it.value)) / top);
      const x0 = labelW + (bw * num(it.offset)) / top;
      svg.append(s('text', { x: labelW - 8, y: yy + row / 2 + 4, 'text-anchor': 'end', 'font-size': 12, text: it.label }));
      svg.append(s('rect', { x: labelW, y: yy + 4, width: bw, height: row - 8, fill: '#f0f2f7', rx: 3 }));
      svg.append(s('rect', { class: 'bar', x: x0, y: yy + 4, width: w, height: row - 8, fill: it.color || COLORS.accent, rx: 3 },
        s('title', { text: it.title || (it.label + ': ' + vf(it.value)) })));
      svg.append(s('text', { x: x0 + w + 6, y: yy + row / 2 + 4, 'font-size': 11.5, class: 'value-label', text: it.valueText || vf(it.value) }));
    });
    return svg;
  }

  // A ring showing `value` in [0, 1].
  function donut(value, color, label, sub) {
    const R = 42, C = 2 * Math.PI * R, v = Math.max(0, Math.min(1, num(value)));
    return s('svg', { viewBox: '0 0 120 132', role: 'img', 'aria-label': label },
      s('circle', { cx: 60, cy: 56, r: R, fill: 'none', stroke: '#edf0f6', 'stroke-width': 13 }),
      s('circle', { cx: 60, cy: 56, r: R, fill: 'none', stroke: color, 'stroke-width': 13, 'stroke-linecap': 'round',
        'stroke-dasharray': (C * v) + ' ' + C, transform: 'rotate(-90 60 56)' }),
      s('text', { x: 60, y: 62, 'text-anchor': 'middle', 'font-size': 19, 'font-weight': 700, class: 'value-label', text: sub }),
      s('text', { x: 60, y: 126, 'text-anchor': 'middle', 'font-size': 11.5, text: label }));
  }

  // A thin 0–100 score bar for list rows.
  function scoreBar(score) {
    const v = Math.max(0, Math.min(100, num(score)));
    const color = v < 25 ? COLORS.red : v < 50 ? '#f07a3a' : v < 75 ? COLORS.amber : COLORS.green;
    return s('svg', { viewBox: '0 0 100 16', preserveAspectRatio: 'none', role: 'img', 'aria-label': 'score ' + v },
      s('rect', { x: 0, y: 3, width: 100, height: 10, rx: 5, fill: '#eef1f6' }),
      s('rect', { x: 0, y: 3, width: Math.max(2, v), height: 10, rx: 5, fill: color }, s('title', { text: 'health ' + v })));
  }

  // ---- the overview page ---------------------------------------------------------------
  const mrrSamples = [];

  function kpis(r) {
    const k = document.getElementById('kpis');
    if (!k) return;
    const mom = r.mrr && r.mrr.mom_change;
    const tile = (label, value, sub, cls) => h('div', { class: 'kpi' },
      h('div', { class: 'label', text: label }), h('div', { class: 'value ' + (cls || ''), text: value }),
      h('div', { class: 'sub', text: sub || '' }));
    const ev = r.events || {};
    const v = (r.validations && r.validations.today) || {};
    k.replaceChildren(
      tile('MRR', fmt.money(r.mrr && r.mrr.current_cents), mom === null || mom === undefined ? 'no month-ago figure' : (mom >= 0 ? '▲ ' : '▼ ') + fmt.pct(Math.abs(mom)) + ' vs 30 days ago', mom > 0 ? 'up' : mom < 0 ? 'down' : ''),
      tile('Active licenses', fmt.int(r.licenses && r.licenses.active), 'of ' + fmt.int(r.licenses && r.licenses.total) + ' known'),
      tile('Customers scored', fmt.int(r.health && r.health.customers), fmt.int(r.health && r.health.churn_risk && r.health.churn_risk.total) + ' at churn risk'),
      tile('At-risk licenses', fmt.int(r.at_risk_licenses), 'active, no validation in 30 days', num(r.at_risk_licenses) > 0 ? 'down' : ''),
      tile('DAV today', fmt.int(r.dav && r.dav.today), 'trend ' + ((r.dav && r.dav.trend) || '–')),
      tile('Validations today', fmt.int(v.total), fmt.pct(v.failure_rate) + ' failed'),
      tile('Events', fmt.short(ev.applied), fmt.int(ev.rejected) + ' rejected · ' + fmt.int(ev.duplicates) + ' duplicates'),
    );
  }

  function drawMrr(r) {
    const m = r.mrr || {};
    const cur = num(m.current_cents), ago = num(m.month_ago_cents);
    mrrSamples.push({ t: Date.now(), v: cur });
    if (mrrSamples.length > 120) mrrSamples.shift();
    const mom = m.mom_change;
    const head = h('div', { class: 'row-flex' },
      h('span', { class: 'big', text: fmt.money(cur) }),
      h('span', { class: mom > 0 ? 'up' : mom < 0 ? 'down' : 'muted', text: mom === null || mom === undefined ? 'no figure 30 days ago' : (mom >= 0 ? '▲ ' : '▼ ') + fmt.pct(Math.abs(mom)) + ' month over month' }));
    const chart = vbars({
      labels: ['30 days ago', 'now'],
      series: [{ name: 'MRR', color: COLORS.accent, values: [ago / 100, cur / 100], colors: ['#9db5fb', COLORS.accent] }],
      width: fw('mrr'), height: 170, yFmt: (v) => '$' + fmt.short(v), vFmt: (v) => '$' + fmt.short(v), valueLabels: true, aria: 'MRR now and 30 days ago',
    });
    const nodes = [head, chart];
    const vals = mrrSamples.map((p) => p.v), lo = Math.min(...vals), hi = Math.max(...vals);
    if (vals.length >= 3 && hi > lo) {
      const pts = vals.map((v, i) => (i / (vals.length - 1)) * 300 + ',' + (28 - ((v - lo) / ((hi - lo) || 1)) * 24)).join(' ');
      nodes.push(h('div', { class: 'muted', text: 'since this page opened' }),
        s('svg', { viewBox: '0 0 300 32', preserveAspectRatio: 'none', style: 'height:32px' },
          s('polyline', { points: pts, fill: 'none', stroke: COLORS.accent, 'stroke-width': 2 })));
    }
    mount('mrr', cur > 0 || ago > 0, ...nodes);
  }

  function activeByPlan(r) {
    // Prefer an explicit count if the service adds one; else active licenses with a limit.
    const byPlan = r.licenses && r.licenses.by_plan;
    if (byPlan && typeof byPlan === 'object') {
      return Object.entries(byPlan).map(([p, v]) => [p, typeof v === 'number' ? v : num(v && v.active)]);
    }
    return Object.entries(r.domain_utilization || {}).map(([p, u]) => [p, num(u && u.licenses)]);
  }

  function drawLicenses(r) {
    const rows = activeByPlan(r).sort((a, b) => planSort(a[0], b[0]));
    const items = rows.map(([p, n], i) => ({ label: p, value: n, color: planColor(p, i) }));
    const st = (r.licenses && r.licenses.by_status) || {};
    const statusColors = { active: COLORS.green, expired: COLORS.amber, revoked: COLORS.red, canceled: COLORS.gray };
    const total = Object.values(st).reduce((a, b) => a + num(b), 0);
    const LW = fw('licenses-by-plan');
    const bar = s('svg', { viewBox: '0 0 ' + LW + ' 26', role: 'img', 'aria-label': 'licenses by status' });
    let x = 0;
    for (const [k, c] of Object.entries(statusColors)) {
      const w = total ? (LW * num(st[k])) / total : 0;
      if (w > 0) bar.append(s('rect', { x, y: 4, width: w, height: 18, fill: c }, s('title', { text: k + ': ' + fmt.int(st[k]) })));
      x += w;
    }
    mount('licenses-by-plan', items.some((i) => i.value > 0),
      hbars(items, { width: LW, labelW: 100, aria: 'active licenses by plan' }),
      h('div', { class: 'muted', style: 'margin-top:8px', text: 'all licenses by status' }), bar,
      legend(Object.entries(statusColors).map(([k, c]) => [k + ' ' + fmt.int(st[k]), c])));
  }

  function drawActivation(r) {
    const a = r.activation || {};
    const plans = Object.keys(a.by_plan || {}).sort(planSort);
    const donuts = h('div', { class: 'donuts' },
      donut(a.rate, COLORS.accent, 'activated (all)', fmt.pct(a.rate)),
      donut(a.rate_7d, COLORS.green, 'within 7 days', fmt.pct(a.rate_7d)));
    const chart = vbars({
      labels: plans,
      series: [
        { name: 'activated', color: COLORS.accent, values: plans.map((p) => a.by_plan[p].rate) },
        { name: 'within 7 days', color: COLORS.green, values: plans.map((p) => a.by_plan[p].rate_7d) },
      ],
      width: fw('activation'), max: 1, height: 150, yFmt: (v) => Math.round(v * 100) + '%', vFmt: fmt.pct, aria: 'activation rate by plan',
    });
    mount('activation', num(a.issued) > 0,
      donuts, h('div', { class: 'muted', text: 'by plan' }), chart, legend([['activated', COLORS.accent], ['within 7 days', COLORS.green]]),
      h('div', { class: 'muted', text: fmt.int(a.activated) + ' of ' + fmt.int(a.issued) + ' issued licenses activated; ' + fmt.int(a.activated_within_7d) + ' of ' + fmt.int(a.cohort_7d) + ' within 7 days' }));
  }

  function reasonPill(reason) {
    const red = ['payment_failed', 'inactive_30d', 'validation_decline'];
    return h('span', { class: 'pill ' + (red.includes(reason) ? 'red' : 'amber'), text: String(reason).replace(/_/g, ' ') });
  }

  function drawChurnRisk(r) {
    const cr = (r.health && r.health.churn_risk) || {};
    const list = cr.items || [];
    const total = num(cr.total);
    const shown = list.slice(0, window.innerWidth < 520 ? 6 : 12);
    const ul = h('ul', { class: 'list' }, shown.map((c) => h('li', {},
      h('a', { class: 'who', href: customerHref(c.customer_id), text: c.customer_id }),
      h('span', { class: 'score', title: 'health ' + c.score }, scoreBar(c.score)),
      h('span', { class: 'reasons' }, h('b', { text: String(c.score) + ' ' }), (c.reasons || []).map(reasonPill)))));
    const more = total > shown.length ? h('div', { class: 'muted', text: '… and ' + fmt.int(total - shown.length) + ' more (/api/v1/churn-risk)' }) : null;
    mount('churn-risk', total > 0, ul, more);
  }

  function drawHealthBands(r) {
    const b = (r.health && r.health.bands) || {};
    const keys = ['0-24', '25-49', '50-74', '75-100'];
    const colors = [COLORS.red, '#f07a3a', COLORS.amber, COLORS.green];
    mount('health-bands', keys.some((k) => num(b[k]) > 0),
      vbars({ labels: keys, series: [{ name: 'customers', color: COLORS.green, values: keys.map((k) => b[k]), colors }], width: fw('health-bands'), height: 170, valueLabels: true, aria: 'customers by health band' }),
      h('div', { class: 'muted', text: fmt.int(r.health && r.health.customers) + ' customers with an active license' }));
  }

  function drawUpgrades(r) {
    const up = r.upgrade_pipeline || {};
    const pipe = (up.licenses && up.licenses.items) || [];
    const total = num(up.licenses && up.licenses.total);
    const counts = up.by_trigger || {};
    const order = Object.keys(TRIGGERS).concat(Object.keys(counts).filter((k) => !(k in TRIGGERS)));
    const items = order.filter((k) => k in counts || k in TRIGGERS).map((k, i) => ({
      label: TRIGGERS[k] || k, value: counts[k] || 0, color: [COLORS.purple, COLORS.accent, COLORS.teal, COLORS.green][i % 4],
    }));
    const multi = num(up.multi_trigger);
    const top = pipe.slice(0, window.innerWidth < 520 ? 5 : 8);
    const ul = h('ul', { class: 'list upgrades' }, top.map((e) => h('li', {},
      h('a', { class: 'who', href: customerHref(e.customer_id), text: e.customer_id }),
      h('span', { class: 'key', title: e.license_key, text: e.license_key }),
      h('span', { class: 'reasons' }, (e.triggers || []).map((t) => h('span', { class: 'pill green', text: TRIGGERS[t] || t }))))));
    mount('upgrade-pipeline', total > 0,
      h('div', { class: 'two' },
        h('div', {}, h('div', { class: 'row-flex' }, h('span', { class: 'big', text: fmt.int(total) }), h('span', { class: 'muted', text: 'licenses · ' + fmt.int(multi) + ' with 2+ triggers' })),
          hbars(items, { labelW: 110, width: fw('upgrade-pipeline', 0.43), aria: 'upgrade triggers' })),
        h('div', {}, ul, total > top.length ? h('div', { class: 'muted', text: '… and ' + fmt.int(total - top.length) + ' more (/api/v1/upgrade-pipeline)' }) : null)));
  }

  function drawCountries(r) {
    const c = r.countries || {};
    const rest = num(c.other);
    const items = (c.top || []).map((e) => ({ label: e.country, value: e.count, color: COLORS.teal }));
    if (rest > 0) items.push({ label: 'other', value: rest, color: COLORS.gray });
    mount('countries', items.length > 0, hbars(items, { width: fw('countries'), labelW: 50, row: 22, aria: 'validations by country' }));
  }


  // MRR bridge: month ago, the movements (+ up, − down), now; each step floats on the last.
  function drawBridge(r) {
    const m = (r.mrr && r.mrr.movements) || null;
    if (!m) { mount('mrr-bridge', false); return; }
    const ago = num(r.mrr.month_ago_cents), cur = num(r.mrr.current_cents);
    const counts = m.counts || {};
    const steps = [
      ['new', '+ new', num(m.new_cents), COLORS.green],
      ['expansion', '+ expansion', num(m.expansion_cents), COLORS.teal],
      ['reactivation', '+ reactivation', num(m.reactivation_cents), COLORS.accent],
      ['contraction', '− contraction', -num(m.contraction_cents), COLORS.amber],
      ['churn', '− churn', -num(m.churn_cents), COLORS.red],
    ];
    const W = fw('mrr-bridge'), H = 210, padL = 52, padR = 8, padT = 14, padB = 30;
    const cols = steps.length + 2, band = (W - padL - padR) / cols;
    let acc = ago, hi = Math.max(ago, cur), lo = Math.min(0, ago, cur);
    for (const st of steps) { acc += st[2]; hi = Math.max(hi, acc); lo = Math.min(lo, acc); }
    const sc = scale(Math.max(hi - lo, 1) / 100, false, false);
    const top = lo / 100 + sc.top, y = (v) => padT + (H - padT - padB) * (1 - (v / 100 - lo / 100) / (top - lo / 100));
    const svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'MRR bridge: month ago, movements, now' });
    for (let t = 0; t * sc.step <= sc.top * (1 + 1e-9); t++) {
      const v = lo + t * sc.step * 100, yy = y(v);
      svg.append(s('line', { x1: padL, x2: W - padR, y1: yy, y2: yy, class: 'axis' }));
      svg.append(s('text', { x: padL - 6, y: yy + 3.5, 'text-anchor': 'end', 'font-size': 10, text: '$' + fmt.short(v / 100) }));
    }
    const bw = Math.min(band * 0.7, 54);
    function bar(i, from, to, color, label, title, valueText) {
      const x = padL + i * band + (band - bw) / 2, y0 = y(Math.min(from, to)), y1 = y(Math.max(from, to));
      svg.append(s('rect', { class: 'bar', 'data-step': label, x, y: y1, width: bw, height: Math.max(0.5, y0 - y1), fill: color, rx: 2 }, s('title', { text: title })));
      svg.append(s('text', { x: x + bw / 2, y: y1 - 4, 'text-anchor': 'middle', 'font-size': 10, class: 'value-label', text: valueText }));
      svg.append(s('text', { x: padL + i * band + band / 2, y: H - 10, 'text-anchor': 'middle', 'font-size': band < 70 ? 8.5 : 10, text: label }));
    }
    bar(0, 0, ago, '#9db5fb', '30 days ago', '30 days ago: ' + fmt.money(ago), fmt.money(ago));
    acc = ago;
    steps.forEach((st, i) => {
      const next = acc + st[2];
      bar(i + 1, acc, next, st[3], st[1], st[1] + ': ' + fmt.money(Math.abs(st[2])) + ' · ' + fmt.int(counts[st[0]] || 0) + ' movements', (st[2] < 0 ? '−' : '+') + fmt.money(Math.abs(st[2])));
      acc = next;
    });
    bar(cols - 1, 0, cur, COLORS.accent, 'now', 'now: ' + fmt.money(cur), fmt.money(cur));
    const net = num(m.net_cents);
    mount('mrr-bridge', ago > 0 || cur > 0 || steps.some((st) => st[2] !== 0), svg,
      h('div', { class: 'muted', text: 'net ' + (net < 0 ? '−' : '+') + fmt.money(Math.abs(net)) + ' over 30 days = now − 30 days ago' }));
  }

  function drawSharing(r) {
    const sh = r.sharing_suspects || {};
    const list = sh.items || [], total = num(sh.total);
    const ul = h('ul', { class: 'list' }, list.map((e) => h('li', {},
      h('a', { class: 'who', href: customerHref(e.customer_id), text: e.customer_id }),
      h('span', { class: 'key', title: e.license_key, text: e.license_key }),
      h('span', { class: 'reasons' }, h('span', { class: 'pill', text: fmt.int(e.domains) + ' domains' }), h('span', { class: 'pill', text: fmt.int(e.mismatches) + ' mismatches' })))));
    mount('sharing-suspects', total > 0,
      h('div', { class: 'row-flex' }, h('span', { class: 'big', text: fmt.int(total) }), h('span', { class: 'muted', text: 'active licenses with mismatched domains over 30 days' })),
      ul, total > list.length ? h('div', { class: 'muted', text: '… and ' + fmt.int(total - list.length) + ' more (/api/v1/sharing-suspects)' }) : null);
  }

  function drawExpiring(r) {
    const ex = r.expiring_licenses || {};
    const list = ex.items || [], total = num(ex.total);
    const ul = h('ul', { class: 'list' }, list.map((e) => h('li', {},
      h('a', { class: 'who', href: customerHref(e.customer_id), text: e.customer_id }),
      h('span', { class: 'key', title: e.license_key, text: e.license_key }),
      h('span', { class: 'reasons' }, h('span', { class: 'pill', text: e.plan }), h('b', { text: ' ' + fmt.time(e.expires_at) })))));
    // None expiring is an answer too: drawn once the summary carries the list.
    mount('expiring', ex.total !== undefined,
      h('div', { class: 'row-flex' }, h('span', { class: 'big', text: fmt.int(total) }), h('span', { class: 'muted', text: total ? 'active licenses expiring within the notice window' : 'no active license expires within the notice window' })),
      ul, total > list.length ? h('div', { class: 'muted', text: '… and ' + fmt.int(total - list.length) + ' more' }) : null);
  }

  // The validation map: shapes fetched once (map.js caches them), counts from the summary.
  function drawMap(r) {
    const counts = (r.countries && r.countries.all) || {};
    if (!window.keypulseMap) { mount('country-map', false); return; }
    window.keypulseMap.fetchShapes().then((shapes) => {
      const svg = s('svg', {});
      window.keypulseMap.render(svg, shapes, counts);
      mount('country-map', Object.keys(counts).length > 0, svg);
    }).catch((e) => console.warn('keypulse: map: ' + e));
  }

  function drawErrors(r) {
    const series = (r.validations && r.validations.series) || [];
    const labels = series.map((d) => fmt.day(d.day));
    const stacks = FAILURES.map(([k, name, color]) => ({ name, color, values: series.map((d) => num(d.by_type && d.by_type[k])) }));
    const sum = (r.validations && r.validations.last_14d) || {};
    const failed = num(sum.failed), total = num(sum.total);
    const today = (r.validations && r.validations.today) || {};
    // Failure rate by day (computed by the service), on its own 0..max scale.
    const rates = series.map((d) => num(d.failure_rate));
    mount('errors', series.length > 0 && total > 0,
      h('div', { class: 'row-flex' }, h('span', { class: 'big', text: fmt.pct(today.failure_rate) }),
        h('span', { class: 'muted', text: 'failed today · ' + fmt.int(failed) + ' failures of ' + fmt.int(total) + ' validations in 14 days' })),
      vbars({ labels, series: stacks, stacked: true, showTotals: true, width: fw('errors'), height: 200, aria: 'validation failures by type and day' }),
      legend(FAILURES.map(([, name, c]) => [name, c])),
      h('div', { class: 'muted', style: 'margin-top:6px', text: 'failure rate by day' }),
      vbars({ labels, series: [{ name: 'failure rate', color: COLORS.red, values: rates }], width: fw('errors'), height: 110, yFmt: (v) => (v * 100).toFixed(0) + '%', vFmt: fmt.pct, max: niceMax(Math.max(...rates, 0.01)), aria: 'failure rate by day' }));
  }

  function drawDav(r) {
    const d = r.dav || {};
    const series = d.series || [];
    const trendCls = d.trend === 'growing' ? 'up' : d.trend === 'declining' ? 'down' : 'muted';
    mount('dav', series.some((x) => num(x.count) > 0),
      h('div', { class: 'row-flex' }, h('span', { class: 'big', text: fmt.int(d.today) }),
        h('span', { class: trendCls, text: (d.trend || 'unknown') + (d.trend_ratio ? ' ×' + d.trend_ratio.toFixed(2) : '') }),
        h('span', { class: 'muted', text: 'last 7 days ' + fmt.int(d.last_7d) + ' · previous 7 ' + fmt.int(d.prev_7d) })),
      vbars({ labels: series.map((x) => fmt.day(x.day)), series: [{ name: 'DAV', color: COLORS.accent, values: series.map((x) => x.count) }], width: fw('dav'), height: 170, highlightLast: true, maxLabels: 7, aria: 'daily active validations, 14 days' }));
  }

  function drawTtfv(r) {
    const t = r.ttfv || {};
    const keys = [['under_1h', '< 1 h', COLORS.green], ['1h_to_24h', '1–24 h', COLORS.teal], ['1d_to_7d', '1–7 d', COLORS.amber], ['over_7d', '≥ 7 d', COLORS.red], ['pending', 'pending', COLORS.gray]];
    mount('ttfv', keys.some(([k]) => num(t[k]) > 0),
      h('div', { class: 'row-flex' }, h('span', { class: 'big', text: fmt.dur(t.median_seconds) }), h('span', { class: 'muted', text: 'median time from issue to first valid validation' })),
      vbars({ labels: keys.map((k) => k[1]), series: [{ name: 'licenses', color: COLORS.teal, values: keys.map(([k]) => t[k]), colors: keys.map((k) => k[2]) }], width: fw('ttfv'), height: 160, valueLabels: true, aria: 'time to first validation buckets' }));
  }

  function drawUtilization(r) {
    const u = r.domain_utilization || {};
    const plans = Object.keys(u).sort(planSort);
    const items = plans.map((p, i) => ({
      label: p, value: num(u[p].mean), color: planColor(p, i),
      valueText: fmt.pct(u[p].mean), title: p + ': mean ' + fmt.pct(u[p].mean) + ', ' + u[p].licenses + ' licenses',
    }));
    const table = h('table', {}, h('tr', {}, h('th', { text: 'plan' }), h('th', { class: 'num', text: 'licenses' }), h('th', { class: 'num', text: '≥ 80%' }), h('th', { class: 'num', text: 'at limit' }), h('th', { class: 'num', text: '< 20%' })),
      plans.map((p) => h('tr', {}, h('td', { text: p }), h('td', { class: 'num', text: fmt.int(u[p].licenses) }), h('td', { class: 'num', text: fmt.int(u[p].near_limit) }), h('td', { class: 'num', text: fmt.int(u[p].at_limit) }), h('td', { class: 'num', text: fmt.int(u[p].over_provisioned) }))));
    mount('utilization', plans.length > 0, h('div', { class: 'two' },
      h('div', {}, h('div', { class: 'muted', text: 'mean share of the domain limit in use' }), hbars(items, { width: fw('utilization', 0.43), labelW: 100, max: 1, aria: 'mean domain utilization by plan' })),
      h('div', { class: 'table-wrap' }, table)));
  }

  function notificationList(list, withCustomer) {
    return h('ul', { class: 'list emails' }, list.map((n) => {
      const kind = KINDS.find((k) => k[0] === n.kind);
      const cls = n.kind === 'upgrade' ? 'green' : n.kind === 'renewal' ? 'amber' : 'red';
      return h('li', {},
        h('span', {}, h('span', { class: 'pill ' + cls, text: kind ? kind[1] : String(n.kind) })),
        withCustomer ? h('a', { class: 'who', href: customerHref(n.customer_id), text: n.customer_id }) : h('span', { class: 'muted', text: n.to || '' }),
        h('span', { class: 'muted', text: fmt.time(n.at) + ' · ' + (n.reasons || []).join(', ').replace(/_/g, ' ') }));
    }));
  }

  function drawEmails(r) {
    const n = r.notifications || {};
    const total = num(n.total);
    const counts = n.by_kind || {};
    const items = KINDS.map(([k, name, color]) => ({ label: name, value: counts[k] || 0, color }));
    // Per day, the last 14 days up to as_of (counted by the service).
    const days = n.by_day || [];
    const byDay = KINDS.map(([k, name, color]) => ({ name, color, values: days.map((d) => num(d.by_kind && d.by_kind[k])) }));
    const latest = (n.latest || []).slice(0, window.innerWidth < 520 ? 5 : 8);
    mount('emails', total > 0,
      h('div', { class: 'two' },
        h('div', {}, h('div', { class: 'row-flex' }, h('span', { class: 'big', text: fmt.int(total) }), h('span', { class: 'muted', text: 'emails decided' })),
          hbars(items, { labelW: 110, width: fw('emails', 0.45), aria: 'emails by kind' }),
          h('div', { class: 'muted', style: 'margin-top:6px', text: 'by day, last 14 days' }),
          vbars({ labels: days.map((d) => fmt.day(d.day)), series: byDay, stacked: true, width: fw('emails', 0.45), height: 140, maxLabels: 7, aria: 'emails by day' }),
          legend(KINDS.map(([, n, c]) => [n, c]))),
        h('div', {}, h('div', { class: 'muted', text: 'latest' }), notificationList(latest, true))));
  }

  let lastDraw = null;
  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (lastDraw) lastDraw(); }, 200);
  });

  function drawEvents(r) {
    const ev = r.events || {};
    const items = [
      { label: 'duplicates', value: ev.duplicates, color: COLORS.amber, title: 'ignored for a repeated event_id' },
      { label: 'rejected', value: ev.rejected, color: COLORS.red, title: 'not valid events (dead-letter topic)' },
    ];
    const applied = num(ev.applied), all = applied + num(ev.duplicates) + num(ev.rejected);
    mount('events', applied > 0,
      h('div', { class: 'row-flex' }, h('span', { class: 'big', text: fmt.int(applied) }), h('span', { class: 'muted', text: 'events applied · ' + fmt.pct(all ? applied / all : null) + ' of received' })),
      hbars(items, { width: fw('events'), labelW: 120, aria: 'duplicates and rejected events' }));
  }

  function drawOverview(r) {
    lastDraw = () => drawOverview(r);
    const steps = [kpis, drawMrr, drawLicenses, drawActivation, drawChurnRisk, drawHealthBands, drawUpgrades, drawCountries, drawMap, drawBridge, drawSharing, drawExpiring, drawErrors, drawDav, drawTtfv, drawUtilization, drawEmails, drawEvents];
    for (const f of steps) {
      try { f(r); } catch (e) { console.warn('keypulse: ' + f.name + ': ' + e); }
    }
  }

  // ---- the customer page ---------------------------------------------------------------
  function penaltiesOf(health) {
    const raw = health && (health.penalties || health.breakdown);
    if (Array.isArray(raw) && raw.length) {
      return raw.map((p) => Array.isArray(p) ? { reason: String(p[0]), points: num(p[1]) }
        : { reason: String(p.reason || p.name || '?'), points: num(p.points !== undefined ? p.points : p.penalty) });
    }
    return ((health && health.reasons) || []).map((r) => ({ reason: r, points: DEFAULT_POINTS[r] || 0 }));
  }

  function bandOf(score) {
    return score < 25 ? '0–24' : score < 50 ? '25–49' : score < 75 ? '50–74' : '75–100';
  }

  function drawCustomer(data, id) {
    lastDraw = () => drawCustomer(data, id);
    const c = (data && (data.customer || data)) || {};
    document.getElementById('customer-id').textContent = c.customer_id || id;
    document.title = 'keypulse — ' + (c.customer_id || id);
    const licenses = Array.isArray(c.licenses) ? c.licenses : [];
    const notes = Array.isArray(c.notifications) ? c.notifications : [];
    const health = c.health && typeof c.health === 'object' ? c.health : (typeof c.health === 'number' ? { score: c.health } : null);
    const active = licenses.filter((l) => (l.status || 'active') === 'active').length;
    const nLicenses = data && typeof data.total === 'number' ? data.total : licenses.length;
    document.getElementById('customer-sub').textContent =
      fmt.int(nLicenses) + ' license' + (nLicenses === 1 ? '' : 's') + (nLicenses > licenses.length ? ' (first ' + licenses.length + ' shown, ' : ' (') + active + ' active)' +
      (c.clock ? ' · customer clock ' + fmt.time(c.clock) : '');

    // Score ring, band, and each reason with its points.
    const pens = penaltiesOf(health);
    if (health && typeof health.score === 'number') {
      const sc = health.score;
      const color = sc < 25 ? COLORS.red : sc < 50 ? '#f07a3a' : sc < 75 ? COLORS.amber : COLORS.green;
      mount('health-score', true,
        h('div', { class: 'health-head' },
          donut(sc / 100, color, sc < 50 ? 'churn risk' : 'health', String(sc)),
          h('div', {},
            h('div', { class: 'big', text: sc + ' / 100' }),
            h('div', { class: 'muted', text: 'band ' + bandOf(sc) + (sc < 50 ? ' · churn risk (below 50)' : ' · not at risk') }))),
        pens.length
          ? h('ul', { class: 'penalties' }, pens.map((p) => h('li', {}, reasonPill(p.reason), h('b', { class: 'down', text: '−' + p.points }))))
          : h('div', { class: 'muted', text: 'no penalty: full health' }));
    } else {
      mount('health-score', false);
    }
    // Waterfall: 100, each penalty, the score.
    if (health) {
      const steps = [{ label: 'start', value: 100, color: '#c9d3e6' }];
      let left = 100;
      for (const p of pens) {
        const pts = Math.min(p.points, Math.max(0, left));
        left -= p.points;
        steps.push({ label: p.reason.replace(/_/g, ' '), value: pts, offset: Math.max(0, left), color: COLORS.red, valueText: '−' + p.points });
      }
      steps.push({ label: 'score', value: Math.max(0, num(health.score)), color: COLORS.accent });
      const svg = hbars(steps, { width: fw('health-breakdown'), max: 100, labelW: 170, aria: 'health breakdown' });
      mount('health-breakdown', true, svg, pens.length ? null : h('div', { class: 'muted', text: 'no penalty: full health' }));
    } else {
      mount('health-breakdown', false);
    }
    // Licenses: domains used of the limit, and a table.
    const items = licenses.map((l) => {
      const used = num(l.domains_used !== undefined ? l.domains_used : (Array.isArray(l.domains) ? l.domains.length : 0));
      const limit = num(l.domain_limit);
      const key = String(l.license_key || l.key || '?');
      return { label: key.length > 22 ? '…' + key.slice(-21) : key, value: limit ? Math.min(1, used / limit) : 0,
        valueText: used + ' / ' + (limit || '–'), color: (l.status || 'active') === 'active' ? COLORS.accent : COLORS.gray,
        title: (l.license_key || '') + ': ' + used + ' of ' + limit + ' domains' };
    });
    mount('license-domains', items.length > 0, hbars(items, { width: fw('license-domains'), max: 1, labelW: 170, valW: 70, aria: 'domains used per license' }));
    const cols = [['license_key', 'license'], ['plan', 'plan'], ['status', 'status'], ['mrr_cents', 'MRR'], ['triggers', 'upgrade triggers'], ['last_validation', 'last validation'], ['issued_at', 'issued'], ['expires_at', 'expires'], ['reminded_expiry', 'expiry reminded'], ['mismatched_domains', 'mismatched domains (window)']];
    document.getElementById('licenses').replaceChildren(h('table', {},
      h('tr', {}, cols.map(([, t]) => h('th', { text: t }))),
      licenses.map((l) => h('tr', {}, cols.map(([k]) => h('td', {
        class: k === 'mrr_cents' ? 'num' : null,
        text: l[k] === undefined || l[k] === null ? '–' : k === 'mrr_cents' ? fmt.money(l[k]) : k === 'triggers' ? (l[k].length ? l[k].map((t) => TRIGGERS[t] || t).join(', ') : '–') : /_at$|validation$|_expiry$/.test(k) ? fmt.time(l[k]) : k === 'mismatched_domains' ? String(l[k]) + ' · ' + fmt.int(num(l.mismatches)) + ' mismatches' : String(l[k]),
      }))))));
    // Signals: health reasons, upgrade triggers, churn signals from the emails.
    const sig = document.getElementById('signals');
    const upgrades = licenses.filter((l) => Array.isArray(l.triggers) && l.triggers.length).map((l) => ({ license_key: String(l.license_key), triggers: l.triggers }));
    const churnSignals = [...new Set(notes.filter((n) => n.kind === 'churn_warning').flatMap((n) => n.reasons || []))];
    const block = (title, pills) => h('div', { style: 'margin-bottom:10px' }, h('div', { class: 'muted', text: title }), pills.length ? pills : h('span', { class: 'muted', text: 'none' }));
    sig.replaceChildren(
      block('health penalties', pens.map((p) => reasonPill(p.reason))),
      block('churn signals (emails)', churnSignals.map((x) => h('span', { class: 'pill red', text: x.replace(/_/g, ' ') }))),
      block('upgrade triggers', upgrades.flatMap((e) => (e.triggers || []).map((t) => h('span', { class: 'pill green', title: e.license_key, text: (TRIGGERS[t] || t) + ' · ' + e.license_key.slice(-4) })))));
    const nNotes = data && typeof data.total_notifications === 'number' ? data.total_notifications : notes.length;
    document.getElementById('emails').replaceChildren(...[notes.length ? notificationList(notes.slice().reverse(), false) : h('div', { class: 'muted', text: 'no email decided for this customer' }),
      nNotes > notes.length ? h('div', { class: 'muted', text: 'the latest ' + notes.length + ' of ' + fmt.int(nNotes) }) : null].filter((x) => x));
  }

  // ---- fetching and refresh ------------------------------------------------------------
  function banner(text) {
    const b = document.getElementById('banner');
    if (!b) return;
    b.hidden = !text;
    b.textContent = text || '';
  }
  // SPEC §8.8: a group answer short of some partitions says so; so does the dashboard.
  function incomplete(r) {
    if (!r || r.complete !== false) return '';
    const parts = (r.missing_partitions || []).map((p) => p.topic + '/' + p.partition);
    return 'Incomplete: the figures leave out ' + (parts.length ? 'partitions ' + parts.join(', ') : 'some partitions') +
      ' (a member unreachable, or a partition unassigned or still restoring); retrying.';
  }
  function setStatus(ok, asOf) {
    const dot = document.getElementById('live-dot');
    if (dot) { dot.className = 'dot'; void dot.offsetWidth; dot.className = 'dot ' + (ok ? 'ok' : 'err'); }
    const a = document.getElementById('as-of');
    if (a && ok) a.textContent = asOf ? 'as of ' + fmt.time(asOf) : 'no events yet';
  }
  // ---- the token ------------------------------------------------------------------------
  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }
  function setToken(t) {
    try { if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* storage off */ }
    const out = document.getElementById('logout');
    if (out) out.hidden = !t;
  }
  let onLogin = null;
  // The login form (made on the first 401, under the banner).
  function loginForm() {
    const found = document.getElementById('login');
    if (found) return found;
    const form = h('form', { id: 'login', class: 'login', hidden: '' },
      h('label', { for: 'token', id: 'login-msg', text: 'This keypulse needs an access token.' }),
      h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', placeholder: 'access token' }),
      h('button', { type: 'submit', text: 'Sign in' }),
      h('span', { class: 'muted', text: 'kept in this tab only (sessionStorage)' }));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = document.getElementById('token');
      const t = input ? input.value.trim() : '';
      if (!t) return;
      setToken(t);
      if (input) input.value = '';
      form.hidden = true;
      if (onLogin) onLogin();
    });
    const banner = document.getElementById('banner');
    if (banner) banner.after(form); else document.body.prepend(form);
    return form;
  }
  // Shows the login form (the service answered 401); `refused` when a token was sent.
  function askToken(refused) {
    const form = loginForm();
    form.hidden = false;
    const msg = document.getElementById('login-msg');
    if (msg) msg.textContent = refused ? 'That token was refused.' : 'This keypulse needs an access token.';
    const input = document.getElementById('token');
    if (input && document.activeElement !== input) input.focus();
  }
  function wireLogout() {
    const out = document.getElementById('logout');
    if (out) {
      out.hidden = !token();
      out.addEventListener('click', (ev) => { ev.preventDefault(); setToken(''); location.reload(); });
    }
  }

  async function getJson(url) {
    const headers = { accept: 'application/json' };
    const t = token();
    if (t) headers.authorization = 'Bearer ' + t;
    const res = await fetch(url, { headers, cache: 'no-store' });
    if (res.status === 401) {
      if (t) setToken('');
      askToken(!!t);
      const e = new Error('sign-in needed'); e.status = 401; throw e;
    }
    if (!res.ok) { const e = new Error(url + ': HTTP ' + res.status); e.status = res.status; throw e; }
    return res.json();
  }

  async function refreshOverview() {
    try {
      const r = await getJson('/api/v1/summary?top=' + TOP);
      drawOverview(r);
      setStatus(true, r.as_of);
      banner(incomplete(r));
    } catch (e) {
      setStatus(false);
      banner(e.status === 401 ? '' : 'Cannot load the summary (' + e.message + '); retrying.');
    }
  }

  function customerId() {
    const q = new URLSearchParams(location.search).get('id');
    if (q) return q;
    const m = location.pathname.match(/\/customers\/([^/]+)\/?$/);
    return m ? decodeURIComponent(m[1]) : '';
  }

  async function refreshCustomer() {
    const id = customerId();
    if (!id) { banner('No customer given: open this page from the dashboard.'); return; }
    try {
      const data = await getJson('/api/v1/customers/' + encodeURIComponent(id) + '?limit=' + 50);
      drawCustomer(data, id);
      setStatus(true, data && data.as_of);
      banner('');
    } catch (e) {
      setStatus(false);
      banner(e.status === 401 ? '' : e.status === 404 ? 'Unknown customer ' + id + '.' : 'Cannot load customer ' + id + ' (' + e.message + '); retrying.');
    }
  }

  function start() {
    const page = document.body.getAttribute('data-page');
    const refresh = page === 'customer' ? refreshCustomer : refreshOverview;
    const secs = document.getElementById('refresh-secs');
    if (secs) secs.textContent = String(REFRESH_MS / 1000);
    let busy = false;
    const tick = async () => {
      if (busy || document.hidden) return;
      busy = true;
      try { await refresh(); } finally { busy = false; }
    };
    onLogin = tick;
    wireLogout();
    tick();
    setInterval(tick, REFRESH_MS);
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
