/**
 * Kept secrets: a file too short to be a secret (empty, as a crash while creating it could leave
 * one, or short) stops start-up with one line naming the file; processes starting at once on a
 * fresh install all keep the same secret.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MODULE_NAMES } from '../src/config.js';
import { dropDatabases } from '../src/infra/database.js';
import { ADMIN_TOKEN, keptSecret, SecretError, TOKEN_SECRET } from '../src/infra/secrets.js';
import { TEST_POOL_SIZE } from './support/pg-budget.js';
import { TEST_DATABASE_URL } from './support/server.js';

const dirs: string[] = [];
async function freshDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'flashsale-secrets-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** What `keptSecret` threw, or a failure if it returned. */
async function refusal(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('the secret was accepted');
}

describe('kept secrets', () => {
  it('refuses an empty token-secret file, naming it, instead of signing tokens with an empty key', async () => {
    const dir = await freshDir();
    const file = join(dir, 'token-secret');
    await writeFile(file, '');
    const error = await refusal(keptSecret(dir, TOKEN_SECRET, undefined));
    expect(error).toBeInstanceOf(SecretError);
    expect(error.message).toContain(file);
    expect(error.message).toContain('is empty');
    expect(error.message).not.toContain('\n');
    // Nothing was written over it: the operator decides.
    expect(await readFile(file, 'utf8')).toBe('');
  });

  it('refuses a file of blanks as empty', async () => {
    const dir = await freshDir();
    await writeFile(join(dir, 'admin-token'), ' \n\n');
    expect((await refusal(keptSecret(dir, ADMIN_TOKEN, undefined))).message).toContain('is empty');
  });

  it('refuses a secret shorter than its minimum: 32 characters for the token secret, 16 for the admin token', async () => {
    const dir = await freshDir();
    await writeFile(join(dir, 'token-secret'), `${'s'.repeat(31)}\n`);
    await writeFile(join(dir, 'admin-token'), 'a'.repeat(15));
    const short = await refusal(keptSecret(dir, TOKEN_SECRET, undefined));
    expect(short).toBeInstanceOf(SecretError);
    expect(short.message).toContain(join(dir, 'token-secret'));
    expect(short.message).toContain('holds 31 characters; a token-secret needs at least 32');
    expect((await refusal(keptSecret(dir, ADMIN_TOKEN, undefined))).message).toContain('holds 15 characters');
    // One more character is enough.
    await writeFile(join(dir, 'token-secret'), `${'s'.repeat(32)}\n`);
    expect(await keptSecret(dir, TOKEN_SECRET, undefined)).toEqual({ value: 's'.repeat(32), generated: false });
  });

  it('refuses a configured secret shorter than its minimum', async () => {
    const error = await refusal(keptSecret(await freshDir(), TOKEN_SECRET, 'short'));
    expect(error).toBeInstanceOf(SecretError);
  });

  it('keeps one secret when 20 processes of a fresh install start at once', async () => {
    for (let round = 0; round < 5; round += 1) {
      const dir = join(await freshDir(), 'data');
      const kept = await Promise.all(Array.from({ length: 20 }, () => keptSecret(dir, TOKEN_SECRET, undefined)));
      const onDisk = (await readFile(join(dir, 'token-secret'), 'utf8')).trim();
      expect(onDisk.length).toBeGreaterThanOrEqual(32);
      expect(new Set(kept.map((secret) => secret.value))).toEqual(new Set([onDisk]));
      expect(kept.filter((secret) => secret.generated)).toHaveLength(1);
      // Readable by its owner only, and no temporary file left behind.
      expect((await stat(join(dir, 'token-secret'))).mode & 0o777).toBe(0o600);
      expect(await readdir(dir)).toEqual(['token-secret']);
      // A later start reads it.
      expect(await keptSecret(dir, TOKEN_SECRET, undefined)).toEqual({ value: onDisk, generated: false });
    }
  });

  it('makes `flashsale serve` exit 1 with one line naming an empty secret file', async () => {
    const dataDir = await freshDir();
    const file = join(dataDir, 'token-secret');
    await writeFile(file, '');
    const prefix = `t_${randomBytes(5).toString('hex')}_`;
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve'], {
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        DATABASE_URL: TEST_DATABASE_URL,
        DATABASE_PREFIX: prefix,
        FLASHSALE_DATA_DIR: dataDir,
        SEED_DEMO: 'false',
        PORT: '0',
        LOG_LEVEL: 'warn',
        // It opens its pools before it reads the secret: the suite's budget (pg-budget.ts).
        DB_POOL_SIZE: String(TEST_POOL_SIZE),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    // Ends when it exits, or as soon as it listens (it started on the empty secret: the test fails at once).
    const ended = new Promise<number | null | 'listening'>((resolve) => {
      child.once('exit', (exitCode) => resolve(exitCode));
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
        if (stdout.includes('listening')) resolve('listening');
      });
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    try {
      const code = await ended;
      expect({ code, stdout, stderr }).toEqual({
        code: 1,
        stdout: '',
        stderr: `${file} is empty; a token-secret needs at least 32: delete the file to generate a new one, or write a longer secret into it\n`,
      });
    } finally {
      child.kill('SIGKILL');
      await dropDatabases(TEST_DATABASE_URL, MODULE_NAMES.map((module) => `${prefix}${module}`));
    }
  });
});
