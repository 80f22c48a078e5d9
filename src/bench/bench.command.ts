/**
 * `flashsale bench`: parses its flags, starts the server under test as a child process unless
 * `--target` is given, runs the engine with the floor, prints the table, writes JSON and HTML,
 * and stops what it started (by PID).
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.js';
import { runBench, type BenchReport, type TargetInfo } from './bench.js';
import { startFloor } from './floor.js';
import { renderHtml } from './report-html.js';
import { renderTerminal } from './report-terminal.js';
import { isScenarioName, scenarioFor, SCENARIO_NAMES, SCENARIOS, type ScenarioOverrides } from './scenarios.js';
import { startChildServer, type BenchTarget } from './target.js';

export const BENCH_USAGE = `usage: flashsale bench --scenario NAME [--strategy NAME|all] [options]

scenarios: ${SCENARIO_NAMES.join(', ')}

options:
  --scenario NAME     herd (1,000/1), drop (2,000/100), stampede (10,000/1,000), checkout, hot,
                      soak (hot for 600 s, reported every 60 s)
  --strategy NAME     a strategy, a comma-separated list, or all (default: all the server has)
  --target URL        drive a running server (default: start one as a child process)
  --admin-token T     admin token of --target (default: ADMIN_TOKEN, or <data dir>/admin-token)
  --db-url URL        with --target: the PostgreSQL server of its module databases, for DB work
  --db-prefix P       with --target: their prefix (default: DATABASE_PREFIX or flashsale_)
  --cpu-from URLS     with --target: the /metrics of the target's other processes (a split
                      install's services), comma-separated; the CPU per answer sums them with
                      the target's own /metrics
  --runs N            rounds (floor + every strategy); the median run by p99 is reported
  --buyers N          override the scenario's buyers (small CI sizes)
  --stock N           override its stock
  --duration S        hot, soak: seconds to run; checkout: seconds losers keep retrying
  --connections C     hot, soak: concurrent connections (default 64)
  --interval S        hot, soak: report purchases/s, errors and the server's memory and open
                      descriptors every S seconds (soak: 60); such a run has no floor
  --no-floor          skip the bare node:http floor
  --warmup N          buyers of each unmeasured warm-up storm before measuring (default 2000; 0: none)
  --json FILE         write the report as JSON
  --html FILE         write the self-contained HTML report
  -h, --help          this text`;

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Buyers of each warm-up storm unless `--warmup` says otherwise. After storms of 500 the server
 * still gets faster run after run (herd, 5 runs: 440, 320, 270, 220, 210 µs of server CPU per
 * answer), and after storms of 1,000 too (210 → 140); after storms of 2,000 the runs do not
 * trend, they only scatter.
 */
const DEFAULT_WARMUP_BUYERS = 2000;

function positiveInteger(name: string, raw: string | undefined, problems: string[]): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < 1) {
    problems.push(`--${name} must be a whole number ≥ 1, got "${raw}"`);
    return undefined;
  }
  return value;
}

export async function benchCommand(argv: readonly string[], env: Env): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    allowPositionals: false,
    options: {
      scenario: { type: 'string' },
      strategy: { type: 'string' },
      target: { type: 'string' },
      'admin-token': { type: 'string' },
      'db-url': { type: 'string' },
      'cpu-from': { type: 'string' },
      'db-prefix': { type: 'string' },
      runs: { type: 'string' },
      buyers: { type: 'string' },
      stock: { type: 'string' },
      duration: { type: 'string' },
      connections: { type: 'string' },
      interval: { type: 'string' },
      'no-floor': { type: 'boolean' },
      warmup: { type: 'string' },
      json: { type: 'string' },
      html: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(BENCH_USAGE);
    return 0;
  }
  const problems: string[] = [];
  if (!isScenarioName(values.scenario)) problems.push(`--scenario must be one of ${SCENARIO_NAMES.join(', ')}, got "${values.scenario ?? ''}"`);
  const overrides: ScenarioOverrides = {
    buyers: positiveInteger('buyers', values.buyers, problems),
    stock: positiveInteger('stock', values.stock, problems),
    durationSeconds: positiveInteger('duration', values.duration, problems),
    connections: positiveInteger('connections', values.connections, problems),
    intervalSeconds: positiveInteger('interval', values.interval, problems),
  };
  if (values.interval !== undefined && isScenarioName(values.scenario) && SCENARIOS[values.scenario].kind !== 'hot') {
    problems.push(`--interval applies to a run of fixed length (hot, soak), not to ${values.scenario}`);
  }
  const runs = positiveInteger('runs', values.runs, problems) ?? 1;
  const warmupBuyers = values.warmup === '0' ? 0 : (positiveInteger('warmup', values.warmup, problems) ?? DEFAULT_WARMUP_BUYERS);
  if (values.target !== undefined && !/^https?:\/\//.test(values.target)) problems.push('--target must be an http:// URL');
  const config = loadConfig(env);
  if (problems.length > 0 || !isScenarioName(values.scenario)) throw new ConfigError(problems);
  const scenario = scenarioFor(values.scenario, overrides);
  const strategyArg = values.strategy ?? 'all';
  const strategies = strategyArg === 'all' ? 'all' : strategyArg.split(',').map((name) => name.trim()).filter(Boolean);

  const log = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  let child: BenchTarget | undefined;
  let target: TargetInfo;
  if (values.target !== undefined) {
    const adminToken = values['admin-token'] ?? config.adminToken ?? readKeptToken(config.dataDir);
    if (adminToken === undefined) throw new ConfigError(['--target needs the admin token: --admin-token, ADMIN_TOKEN, or <data dir>/admin-token']);
    const dbUrl = values['db-url'] ?? config.databaseUrl;
    const url = values.target.replace(/\/$/, '');
    const others = (values['cpu-from'] ?? '').split(',').map((item) => item.trim()).filter(Boolean);
    target = {
      url,
      cpuFrom: [`${url}/metrics`, ...others],
      adminToken,
      db: dbUrl === undefined ? undefined : { baseUrl: dbUrl, prefix: values['db-prefix'] ?? config.databasePrefix },
    };
  } else {
    child = await startChildServer({
      env,
      databaseUrl: config.databaseUrl,
      redisUrl: config.redisUrl,
      amqpUrl: config.amqpUrl,
      paymentDelayMs: scenario.paymentDelayMs,
      log,
    });
    target = child;
  }

  const stop = (): void => {
    // Ctrl-C: stop the child server (by its PID) before leaving.
    void (child?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  let report: BenchReport;
  try {
    report = await runBench({
      scenario,
      strategies,
      target,
      runs,
      // A run reported interval by interval is about what holds over time; a floor run as long
      // would double it and its latency ratio says nothing about that.
      floor: values['no-floor'] || scenario.intervalSeconds !== undefined ? undefined : startFloor,
      warmupBuyers,
      progress: progressPrinter(),
    });
  } finally {
    process.removeListener('SIGINT', stop);
    await child?.stop();
  }

  console.log(renderTerminal(report));
  if (values.json !== undefined) await writeOut(values.json, `${JSON.stringify(report, null, 2)}\n`, log);
  if (values.html !== undefined) await writeOut(values.html, renderHtml(report), log);
  // The naive strategy oversells on purpose; any other strategy failing its audit in any run
  // (not only the median one the table shows) fails the command.
  const failed = report.results.filter((result) => result.strategy !== 'naive' && !result.audit.ok);
  for (const result of failed) {
    log(`AUDIT FAILED for ${result.strategy}, run ${result.run}: ${JSON.stringify(result.audit.violations)}`);
  }
  return failed.length > 0 ? 1 : 0;
}

function readKeptToken(dataDir: string): string | undefined {
  const file = join(dataDir, 'admin-token');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
}

async function writeOut(file: string, text: string, log: (line: string) => void): Promise<void> {
  const path = resolve(file);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
  log(`bench: wrote ${path}`);
}

/** On a terminal, one line rewritten in place; elsewhere (CI logs) only each run's last line. */
function progressPrinter(): (line: string, final: boolean) => void {
  const tty = process.stderr.isTTY;
  return (line, final) => {
    if (tty) process.stderr.write(`\r\x1b[2K${line}${final ? '\n' : ''}`);
    else if (final) process.stderr.write(`${line}\n`);
  };
}
