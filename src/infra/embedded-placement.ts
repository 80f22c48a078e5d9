/**
 * Where the embedded cluster and the binaries it runs live. As any user but root: where asked
 * (`<dataDir>/pg`, binaries in `node_modules`). As root the server runs as the `postgres` system
 * user, which cannot reach a project cloned into root's private home: then the cluster lives in
 * `/var/lib/flashsale/<hash of its path in the project>` and the binaries are copied once to
 * `/var/lib/flashsale/postgres-<release>`, both places that user can reach.
 *
 * @remarks A folder outside the project rather than opening root's home to the `postgres` user:
 * changing the mode of a user's private folders is not ours to do.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { copiedBinaries, packagedBinaries, type PostgresBinaries } from './postgres-binaries.js';
import { canEnter, postgresUser, whyCannotRun, type SystemUser } from './postgres-user.js';

/** Root's folder for clusters and binaries the `postgres` user must reach (FHS: state data). */
export const OUTSIDE_ROOT = '/var/lib/flashsale';

export interface Placement {
  /** The cluster's data directory. */
  readonly directory: string;
  readonly binaries: PostgresBinaries;
  /** Who runs the server; `undefined`: this process's user. */
  readonly user: SystemUser | undefined;
  /** Why the data or the binaries are not where they were asked to be (for the start-up log). */
  readonly moved: { readonly data?: string; readonly binaries?: string };
}

/** Places the cluster asked for at `directory` (an absolute path). */
export async function placeCluster(directory: string): Promise<Placement> {
  const packaged = await packagedBinaries();
  if (process.getuid?.() !== 0) return { directory, binaries: packaged, user: undefined, moved: {} };
  const user = await postgresUser();
  const moved: { data?: string; binaries?: string } = {};

  const parent = dirname(directory);
  await mkdir(parent, { recursive: true });
  const outside = outsideFolderFor(directory);
  let placed = directory;
  if (isCluster(outside)) {
    placed = outside;
    moved.data = `where an earlier start put it: the ${user.name} user, which the server runs as, could not reach ${parent}`;
  } else if (await canEnter(user, dirname(parent))) {
    await letThrough(parent);
  } else {
    placed = outside;
    moved.data = `the ${user.name} user, which the server runs as, cannot reach ${parent}`;
  }

  let binaries = packaged;
  if ((await whyCannotRun(user, packaged.postgres)) !== undefined) {
    await openFolder(OUTSIDE_ROOT);
    binaries = await copiedBinaries(packaged, OUTSIDE_ROOT);
    moved.binaries = `copied there: the ${user.name} user cannot run those in ${packaged.root}`;
    const why = await whyCannotRun(user, binaries.postgres);
    if (why !== undefined) throw new Error(`the ${user.name} user cannot run ${binaries.postgres}: ${why}`);
  }
  if (placed === outside) await openFolder(OUTSIDE_ROOT);
  return { directory: placed, binaries, user, moved };
}

/** One folder per cluster path, so a second start of the same install finds the same data. */
export function outsideFolderFor(directory: string): string {
  return join(OUTSIDE_ROOT, createHash('sha256').update(directory).digest('hex').slice(0, 16));
}

export function isCluster(directory: string): boolean {
  return existsSync(join(directory, 'PG_VERSION'));
}

/** The server's user must pass through the folder above its data (ours, so ours to open). */
async function letThrough(folder: string): Promise<void> {
  const { mode } = await stat(folder);
  if ((mode & 0o001) === 0) await chmod(folder, mode | 0o011);
}

/** Created enterable and readable by every user, whatever root's umask. */
async function openFolder(folder: string): Promise<void> {
  await mkdir(folder, { recursive: true });
  await chmod(folder, 0o755);
}
