/**
 * The commands the README names run as written on a fresh clone: `npx flashsale <command>` builds
 * dist/ itself the first time (the package's `bin` is scripts/flashsale.mjs), then runs it. The
 * clone is of this checkout's HEAD, in a fresh folder (as root, a 0700 one under root's home, as a
 * private home folder is), with this checkout's node_modules linked in for `npm ci`. npm is kept
 * offline, so `npx` can never fetch a package of the same name. Adds one `npm run build` (about
 * 10-20 s on two cores) to the suite.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, symlink } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODULE_NAMES } from '../src/config.js';
import { dropDatabases } from '../src/infra/database.js';
import { TEST_POOL_SIZE } from './support/pg-budget.js';
import { TEST_DATABASE_URL } from './support/server.js';

const PROJECT = resolve(import.meta.dirname, '..');

let folder: string;
let clone: string;

beforeAll(async () => {
  const asRoot = process.getuid?.() === 0;
  folder = await mkdtemp(join(asRoot ? homedir() : tmpdir(), asRoot ? '.flashsale-clone-' : 'flashsale-clone-'));
  await chmod(folder, 0o700);
  clone = join(folder, 'flashsale');
  const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: PROJECT, encoding: 'utf8' }).trim();
  execFileSync('git', ['clone', '--quiet', '--no-checkout', PROJECT, clone]);
  execFileSync('git', ['checkout', '--quiet', head], { cwd: clone });
  await symlink(join(PROJECT, 'node_modules'), join(clone, 'node_modules'));
});
afterAll(async () => {
  if (folder) await rm(folder, { recursive: true, force: true });
});

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `npx flashsale <args>` in the clone, as the README says to. */
function npxFlashsale(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((done) => {
    execFile(
      'npx',
      ['flashsale', ...args],
      {
        cwd: clone,
        env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? homedir(), npm_config_offline: 'true', ...env },
        timeout: 300_000,
      },
      (error, stdout, stderr) => done({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }),
    );
  });
}

describe('a fresh clone', () => {
  it('runs `npx flashsale --help`, building dist/ first', async () => {
    const first = await npxFlashsale(['--help']);
    expect(first).toMatchObject({ code: 0, stderr: 'flashsale: building dist/ first (it is missing or older than src/)\n' });
    expect(first.stdout).toMatch(/^usage: flashsale <command> \[options\]\n/);
    for (const command of ['serve', 'worker', 'reconcile', 'migrate', 'bench']) expect(first.stdout).toContain(`\n  ${command} `);
    // Built once: the next command starts at once.
    expect(await npxFlashsale(['--help'])).toEqual({ ...first, stderr: '' });
  });

  it('runs `npx flashsale migrate` against a PostgreSQL and exits', async () => {
    const prefix = `t_${randomBytes(5).toString('hex')}_`;
    try {
      const migrate = await npxFlashsale(['migrate'], { DATABASE_URL: TEST_DATABASE_URL, DATABASE_PREFIX: prefix, DB_POOL_SIZE: String(TEST_POOL_SIZE) });
      // Run alone, this test is the first command of the clone: it builds too.
      expect(migrate).toMatchObject({ code: 0, stderr: expect.stringMatching(/^(flashsale: building dist\/ first .*\n)?$/) as unknown });
      expect(migrate.stdout).toMatch(/^migrations applied:\n( {2}(users|inventory|orders)\/\d{3}_[a-z0-9_]+\.sql\n)+$/);
      for (const module of MODULE_NAMES) expect(migrate.stdout).toContain(`  ${module}/001_`);
      const again = await npxFlashsale(['migrate'], { DATABASE_URL: TEST_DATABASE_URL, DATABASE_PREFIX: prefix, DB_POOL_SIZE: String(TEST_POOL_SIZE) });
      expect(again).toEqual({ code: 0, stdout: 'migrations: up to date\n', stderr: '' });
    } finally {
      await dropDatabases(TEST_DATABASE_URL, MODULE_NAMES.map((module) => `${prefix}${module}`));
    }
  });
});
