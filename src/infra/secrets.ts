/**
 * Secrets that must agree across every process of one install (token secret, admin token): taken
 * from the configuration when set, else generated once and kept under the data directory.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface KeptSecret {
  readonly value: string;
  /** True when this call generated it (so `serve` can print the admin token once). */
  readonly generated: boolean;
}

export async function keptSecret(dataDir: string, name: string, configured: string | undefined): Promise<KeptSecret> {
  if (configured !== undefined) return { value: configured, generated: false };
  const file = join(dataDir, name);
  try {
    const value = (await readFile(file, 'utf8')).trim();
    if (value.length >= 16) return { value, generated: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await mkdir(dataDir, { recursive: true });
  const value = randomBytes(32).toString('base64url');
  try {
    // 'wx': if another process of this install wrote it first, use theirs.
    await writeFile(file, `${value}\n`, { mode: 0o600, flag: 'wx' });
    return { value, generated: true };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return { value: (await readFile(file, 'utf8')).trim(), generated: false };
  }
}
