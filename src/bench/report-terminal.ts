/** The terminal table: one row per strategy (median run), the floor beside them, then the notes. */
import type { BenchReport, RunResult } from './bench.js';
import type { RunSeries } from './intervals.js';
import { describeDrain } from './pipeline-drain.js';
import { describeResources, formatMegabytes } from './server-resources.js';
import { describeSkipped } from './strategy-choice.js';

const na = (value: number | null | undefined, digits = 0): string =>
  value === null || value === undefined ? 'n/a' : value.toFixed(digits);

function rejectedText(rejected: RunResult['outcomes']['rejected']): string {
  const entries = Object.entries(rejected);
  return entries.length === 0 ? '0' : entries.map(([key, count]) => `${count} ${key.replace(/^\d+ /, '')}`).join(', ');
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0))).join('  ');
  return [line(header), widths.map((width) => '─'.repeat(width)).join('  '), ...rows.map(line)].join('\n');
}

export function renderTerminal(report: BenchReport): string {
  const { scenario } = report;
  const header = [
    'strategy', 'sold', 'rejected', 'shed', '5xx', 'conn err', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms',
    '×floor p99', 'cpu µs/ans', 'req/s', 'sales/s', 'oversold', 'lost', 'over limit', 'fairness', 'xacts/sale', 'rollbacks', 'lock waits',
  ];
  const rows = report.summary.map((r) => [
    r.strategy,
    // Checkout: units paid at the end (2xx reservations include resales of expired holds).
    String(r.checkout ? r.checkout.sold : r.outcomes.sold),
    rejectedText(r.outcomes.rejected),
    String(r.outcomes.shed),
    String(r.outcomes.serverErrors),
    String(r.outcomes.connectionErrors),
    r.latency.p50.toFixed(1),
    r.latency.p90.toFixed(1),
    r.latency.p99.toFixed(1),
    r.latency.max.toFixed(1),
    na(r.floorRatioP99, 2),
    na(r.serverCpuUsPerAnswer),
    r.answersPerSecond.toFixed(0),
    r.salesPerSecond.toFixed(0),
    String(r.audit.oversold),
    String(r.audit.lost),
    String(r.audit.buyersOverLimit),
    na(r.fairness, 2),
    na(r.db?.xactsPerSale, 2),
    na(r.db?.rollbacks),
    r.db ? `${r.db.lockWaitsPeak} peak` : 'n/a',
  ]);
  const floor = report.floorSummary;
  if (floor) {
    rows.push([
      'floor (node:http)', '-', `${floor.outcomes.requests - floor.outcomes.connectionErrors} answered`, String(floor.outcomes.shed),
      String(floor.outcomes.serverErrors), String(floor.outcomes.connectionErrors), floor.latency.p50.toFixed(1),
      floor.latency.p90.toFixed(1), floor.latency.p99.toFixed(1), floor.latency.max.toFixed(1), '1.00',
      na(floor.serverCpuUsPerAnswer), floor.answersPerSecond.toFixed(0), '-', '-', '-', '-', '-', '-', '-', '-',
    ]);
  }
  const lines = [
    `${scenario.summary} — ${scenario.buyers} buyers, stock ${scenario.stock}` +
      (scenario.intervalSeconds === undefined ? '' : ` — ${scenario.durationSeconds} s, every ${scenario.intervalSeconds} s`) +
      (report.runs > 1 ? ` — median of ${report.runs} runs by p99` : '') +
      (report.warmupBuyers > 0 ? ` — after unmeasured warm-up storms of ${report.warmupBuyers} buyers` : ''),
    `target ${report.target} · ${report.machine.cpus} × ${report.machine.cpuModel} · node ${report.machine.node}`,
    '',
    table(header, rows),
  ];
  if (report.runs > 1 && report.floor.length > 0) {
    // The median alone hides how far rounds on a shared machine wander; the reader should see it.
    const rounds = report.summary.map(
      (summary) =>
        `${summary.strategy} ${report.results
          .filter((result) => result.strategy === summary.strategy)
          .map((result) => na(result.floorRatioP99, 2))
          .join(', ')}`,
    );
    lines.push(`×floor p99 by round: ${rounds.join('; ')}`);
  }
  for (const r of report.summary) {
    if (r.series) lines.push('', ...seriesLines(r.strategy, r.series));
  }
  if (report.summary.some((r) => r.series)) lines.push('');
  for (const r of report.summary) {
    if (r.checkout) {
      const c = r.checkout;
      lines.push(
        `${r.strategy} checkout: paid ${c.sold}, expired ${c.expired}, resold ${c.resold}, abandoned ${c.abandoned}, ` +
          `pay answers ${JSON.stringify(c.payAnswers)}${c.payAvailable ? '' : ' (pay unavailable)'}`,
      );
    }
    if (r.pipeline) lines.push(`${r.strategy} ${describeDrain(r.pipeline)}`);
    const violations = Object.entries(r.audit.violations);
    if (violations.length > 0) lines.push(`${r.strategy} AUDIT: ${violations.map(([kind, n]) => `${n} ${kind}`).join(', ')}`);
    if (r.audit.lost > 0) lines.push(`${r.strategy} LOST: ${r.audit.lost} orders answered 2xx are not in the database`);
    if (r.outcomes.unanswered > 0) lines.push(`${r.strategy}: ${r.outcomes.unanswered} buyers got no definitive answer`);
    const errors = Object.entries(r.outcomes.connectionErrorsByCode);
    if (errors.length > 0) lines.push(`${r.strategy} connection errors: ${errors.map(([code, n]) => `${n} ${code}`).join(', ')}`);
    for (const note of new Set(r.notes)) lines.push(`${r.strategy}: ${note}`);
  }
  if (report.unavailable.length > 0) lines.push(`not available on this server (skipped): ${describeSkipped(report.unavailable)}`);
  lines.push(`original: ${scenario.original}`);
  return lines.join('\n');
}

/** A long run interval by interval, then the server's memory and descriptors at its start and end. */
function seriesLines(strategy: string, series: RunSeries): string[] {
  const header = ['interval', 'purchases/s', 'sold', 'rejected', 'shed', '5xx', 'conn err', 'server RSS MB', 'server open fds', 'bench RSS MB'];
  const rows = series.intervals.map((interval) => [
    `${interval.fromSeconds}–${interval.toSeconds} s`,
    interval.purchasesPerSecond.toFixed(0),
    String(interval.sold),
    rejectedText(interval.rejected),
    String(interval.shed),
    String(interval.serverErrors),
    String(interval.connectionErrors),
    formatMegabytes(interval.residentBytes),
    na(interval.openFds),
    formatMegabytes(interval.benchResidentBytes),
  ]);
  return [
    `${strategy}, every ${series.intervalSeconds} s (memory and descriptors read at each interval's end):`,
    table(header, rows),
    `${strategy} ${describeResources(series.resources)}`,
  ];
}
