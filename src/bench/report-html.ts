/**
 * The HTML report: one self-contained page (inline CSS and SVG, no script, no CDN) that opens
 * offline — outcomes per strategy, the latency distribution against the floor, and the numbers.
 */
import type { BenchReport, RunResult } from './bench.js';
import type { RunSeries } from './intervals.js';
import { describeDrain } from './pipeline-drain.js';
import { describeResources, formatMegabytes } from './server-resources.js';
import { describeSkipped } from './strategy-choice.js';

const COLORS = ['#2563eb', '#16a34a', '#d97706', '#9333ea', '#dc2626', '#0891b2', '#65a30d', '#db2777'];
const OUTCOME_COLORS = { sold: '#16a34a', rejected: '#2563eb', shed: '#d97706', '5xx': '#dc2626', 'conn errors': '#111827' } as const;

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
}

function sum(values: Readonly<Record<string, number>>): number {
  return Object.values(values).reduce((a, b) => a + b, 0);
}

/** Horizontal stacked bars: how every purchase request ended, per strategy. */
function outcomesChart(results: readonly RunResult[]): string {
  const width = 760;
  const left = 130;
  const rowHeight = 34;
  const height = results.length * rowHeight + 50;
  const rows = results.map((r, index) => {
    const parts: [keyof typeof OUTCOME_COLORS, number][] = [
      ['sold', r.outcomes.sold],
      ['rejected', sum(r.outcomes.rejected)],
      ['shed', r.outcomes.shed],
      ['5xx', r.outcomes.serverErrors],
      ['conn errors', r.outcomes.connectionErrors],
    ];
    const total = Math.max(1, parts.reduce((a, [, n]) => a + n, 0));
    let x = left;
    const y = 10 + index * rowHeight;
    const rects = parts
      .filter(([, n]) => n > 0)
      .map(([name, n]) => {
        const w = Math.max(1, ((width - left - 10) * n) / total);
        const rect = `<rect x="${x.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="24" fill="${OUTCOME_COLORS[name]}"><title>${name}: ${n}</title></rect>`;
        x += w;
        return rect;
      })
      .join('');
    return `<text x="${left - 8}" y="${y + 17}" text-anchor="end">${escape(r.strategy)}</text>${rects}`;
  });
  const legend = Object.entries(OUTCOME_COLORS)
    .map(([name, color], i) => `<rect x="${left + i * 120}" y="${height - 28}" width="12" height="12" fill="${color}"/><text x="${left + i * 120 + 16}" y="${height - 18}">${name}</text>`)
    .join('');
  return `<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="outcomes per strategy">${rows.join('')}${legend}</svg>`;
}

/** Latency by percentile (HDR-style: the tail spread out), one line per strategy and the floor. */
function latencyChart(series: readonly { name: string; curve: readonly { percentile: number; ms: number }[] }[]): string {
  const width = 760;
  const height = 340;
  const left = 60;
  const bottom = 40;
  const top = 15;
  const right = 150;
  const points = series[0]?.curve.map((point) => point.percentile) ?? [];
  const maxMs = Math.max(1, ...series.flatMap((s) => s.curve.map((point) => point.ms)));
  const xOf = (i: number): number => left + ((width - left - right) * i) / Math.max(1, points.length - 1);
  const yOf = (ms: number): number => height - bottom - ((height - bottom - top) * ms) / maxMs;
  const grid = [0, 0.25, 0.5, 0.75, 1]
    .map((f) => {
      const ms = maxMs * f;
      return `<line x1="${left}" x2="${width - right}" y1="${yOf(ms)}" y2="${yOf(ms)}" stroke="#e5e7eb"/><text x="${left - 6}" y="${yOf(ms) + 4}" text-anchor="end">${ms.toFixed(ms < 10 ? 1 : 0)}</text>`;
    })
    .join('');
  const xLabels = points.map((p, i) => `<text x="${xOf(i)}" y="${height - bottom + 16}" text-anchor="middle">p${p}</text>`).join('');
  const lines = series
    .map((s, index) => {
      const color = s.name.startsWith('floor') ? '#6b7280' : (COLORS[index % COLORS.length] ?? '#000');
      const path = s.curve.map((point, i) => `${xOf(i).toFixed(1)},${yOf(point.ms).toFixed(1)}`).join(' ');
      const dash = s.name.startsWith('floor') ? ' stroke-dasharray="6 4"' : '';
      return `<polyline points="${path}" fill="none" stroke="${color}" stroke-width="2"${dash}/>` +
        `<rect x="${width - right + 12}" y="${top + index * 18}" width="12" height="12" fill="${color}"/>` +
        `<text x="${width - right + 28}" y="${top + index * 18 + 10}">${escape(s.name)}</text>`;
    })
    .join('');
  return `<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="latency by percentile">${grid}${xLabels}` +
    `<text x="14" y="${top + 10}" transform="rotate(-90 14 ${top + 60})">ms</text>${lines}</svg>`;
}

/** The drain time, or why there is none: "not drained" must not read as a fast drain. */
function drainCell(r: RunResult): string | number | null {
  if (!r.pipeline) return null;
  return r.pipeline.drained ? r.pipeline.drainMs : `not drained (${r.pipeline.drainMs} ms)`;
}

/** The interval-by-interval section, only for runs reported that way (soak). */
function seriesHtml(report: BenchReport): string {
  const sections = report.summary.flatMap((r) => (r.series ? [seriesSection(r.strategy, r.series)] : []));
  if (sections.length === 0) return '';
  return `\n<h2>Interval by interval (memory and descriptors read at each interval's end)</h2>\n${sections.join('\n')}`;
}

function numbersTable(report: BenchReport): string {
  const shown = (value: string | number | null | undefined): string => {
    if (value === null || value === undefined) return 'n/a';
    // Milliseconds and ratios to what a reader can compare at a glance, not to the microsecond.
    if (typeof value === 'number' && !Number.isInteger(value)) return value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2);
    return String(value);
  };
  const cell = (value: string | number | null | undefined): string => `<td>${escape(shown(value))}</td>`;
  const head = ['strategy', 'sold', 'rejected', 'shed', '5xx', 'conn errors', 'p50', 'p90', 'p99', 'max', '× floor p99', 'server CPU µs/answer', 'req/s', 'sales/s',
    'oversold', 'lost', 'over limit', 'fairness', 'commits', 'rollbacks', 'xacts/sale', 'lock waits (peak)', 'pipeline drain ms', 'consumer lag s'];
  const rows = report.summary.map((r) => `<tr>${[
    r.strategy, r.outcomes.sold, Object.entries(r.outcomes.rejected).map(([k, n]) => `${n} ${k}`).join(', ') || '0', r.outcomes.shed,
    r.outcomes.serverErrors, r.outcomes.connectionErrors, r.latency.p50, r.latency.p90, r.latency.p99, r.latency.max, r.floorRatioP99,
    r.serverCpuUsPerAnswer, r.answersPerSecond, r.salesPerSecond, r.audit.oversold, r.audit.lost, r.audit.buyersOverLimit, r.fairness, r.db?.commits,
    r.db?.rollbacks, r.db?.xactsPerSale, r.db?.lockWaitsPeak, drainCell(r), r.pipeline?.lagSeconds,
  ].map(cell).join('')}</tr>`);
  const floor = report.floorSummary;
  if (floor) {
    rows.push(`<tr class="floor">${['floor (node:http)', '-', `${floor.outcomes.requests - floor.outcomes.connectionErrors} answered 409`, floor.outcomes.shed, floor.outcomes.serverErrors,
      floor.outcomes.connectionErrors, floor.latency.p50, floor.latency.p90, floor.latency.p99, floor.latency.max, 1, floor.serverCpuUsPerAnswer, floor.answersPerSecond,
      '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-'].map(cell).join('')}</tr>`);
  }
  return `<table><thead><tr>${head.map((h) => `<th>${escape(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

/** A long run interval by interval, then the server's memory and descriptors at its start and end. */
function seriesSection(strategy: string, series: RunSeries): string {
  const head = ['interval s', 'purchases/s', 'sold', 'rejected', 'shed', '5xx', 'conn errors', 'server RSS MB', 'server open fds', 'bench RSS MB'];
  const rows = series.intervals.map((interval) => `<tr>${[
    `${interval.fromSeconds}–${interval.toSeconds}`, interval.purchasesPerSecond.toFixed(0), String(interval.sold),
    Object.entries(interval.rejected).map(([k, n]) => `${n} ${k}`).join(', ') || '0', String(interval.shed), String(interval.serverErrors),
    String(interval.connectionErrors), formatMegabytes(interval.residentBytes), interval.openFds === null ? 'n/a' : String(interval.openFds),
    formatMegabytes(interval.benchResidentBytes),
  ].map((value) => `<td>${escape(value)}</td>`).join('')}</tr>`);
  return `<h3>${escape(strategy)}, every ${series.intervalSeconds} s</h3>
<table><thead><tr>${head.map((h) => `<th>${escape(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>
<p>${escape(describeResources(series.resources))}</p>`;
}

export function renderHtml(report: BenchReport): string {
  const { scenario, machine } = report;
  const series = [
    ...report.summary.map((r) => ({ name: r.strategy, curve: r.latency.curve })),
    ...(report.floorSummary ? [{ name: 'floor (node:http)', curve: report.floorSummary.latency.curve }] : []),
  ];
  const notes = report.summary.flatMap((r) => [
    ...r.notes.map((note) => `${r.strategy}: ${note}`),
    ...(r.pipeline ? [`${r.strategy}: ${describeDrain(r.pipeline)}`] : []),
    ...Object.entries(r.audit.violations).map(([kind, n]) => `${r.strategy}: AUDIT ${n} ${kind}`),
    ...(r.checkout ? [`${r.strategy} checkout: paid ${r.checkout.sold}, expired ${r.checkout.expired}, resold ${r.checkout.resold}, abandoned ${r.checkout.abandoned}`] : []),
  ]);
  if (report.unavailable.length > 0) notes.push(`not available on this server (skipped): ${describeSkipped(report.unavailable)}`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flashsale bench — ${escape(scenario.name)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#111827;padding:0 1rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}svg{font:12px system-ui,sans-serif;max-width:100%;height:auto}
table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #e5e7eb;padding:4px 6px;text-align:right}
th:first-child,td:first-child{text-align:left}tr.floor{color:#6b7280}.meta{color:#4b5563}
</style></head><body>
<h1>flashsale bench — ${escape(scenario.summary)}</h1>
<p class="meta">${scenario.buyers} buyers · stock ${scenario.stock}${scenario.intervalSeconds === undefined ? '' : ` · ${scenario.durationSeconds} s, every ${scenario.intervalSeconds} s`} · ${report.runs} run(s)${report.runs > 1 ? ' (median run by p99 shown)' : ''}${report.warmupBuyers > 0 ? ` · after warm-up storms of ${report.warmupBuyers} buyers` : ''} · started ${escape(report.startedAt)}<br>
target ${escape(report.target)} · ${machine.cpus} × ${escape(machine.cpuModel)} · ${machine.memoryGb} GB · ${escape(machine.os)} · node ${escape(machine.node)} · somaxconn ${escape(machine.somaxconn)} · tcp_max_syn_backlog ${escape(machine.tcpMaxSynBacklog)}</p>
<p class="meta">original experiment: ${escape(scenario.original)}</p>
<h2>How every purchase request ended</h2>
${outcomesChart(report.summary)}
<h2>Latency by percentile (ms), against the floor</h2>
${latencyChart(series)}
<h2>Numbers</h2>
${numbersTable(report)}${seriesHtml(report)}
${notes.length > 0 ? `<h2>Notes</h2><ul>${notes.map((n) => `<li>${escape(n)}</li>`).join('')}</ul>` : ''}
</body></html>
`;
}
