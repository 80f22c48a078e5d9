/**
 * Secrets that must agree across every process of one install (token secret, admin token): taken
 * from the configuration when set, else generated once and kept under the data directory. A kept
 * secret shorter than its minimum stops start-up: an empty token secret is an empty HMAC key,
 * under which anyone can sign any buyer's token.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface KeptSecret {
  readonly value: string;
  /** True when this call generated it (so `serve` can print the admin token once). */
  readonly generated: boolean;
}

/** A secret kept under the data directory: its file's name and the fewest characters it may have. */
export interface SecretSpec {
  readonly name: string;
  readonly minLength: number;
}

/** Signs buyer tokens (an HMAC-SHA256 key). */
export const TOKEN_SECRET: SecretSpec = { name: 'token-secret', minLength: 32 };
/** The bearer token of the admin routes. */
export const ADMIN_TOKEN: SecretSpec = { name: 'admin-token', minLength: 16 };
/** Signs every placed-orders message of the order pipeline (`PIPELINE_SECRET`). */
export const PIPELINE_SECRET: SecretSpec = { name: 'pipeline-secret', minLength: 32 };

/**
 * A secret that is too short to use. Its message is one line naming the file (or the setting) and
 * what to do, which the CLI prints as it is.
 */
export class SecretError extends Error {
  override readonly name = 'SecretError';
}

/** Random bytes of a generated secret (43 characters of base64url). */
const GENERATED_BYTES = 32;

/**
 * The secret `spec` names: `configured` when set, else the one kept in `<dataDir>/<name>`, created
 * now when missing. Every process of an install that starts at the same moment gets the same one.
 * Throws {@link SecretError} when the secret is shorter than `spec.minLength`.
 */
export async function keptSecret(dataDir: string, spec: SecretSpec, configured: string | undefined): Promise<KeptSecret> {
  if (configured !== undefined) {
    if (configured.length < spec.minLength) {
      throw new SecretError(`the configured ${spec.name} has ${configured.length} characters; it needs at least ${spec.minLength}`);
    }
    return { value: configured, generated: false };
  }
  const file = join(dataDir, spec.name);
  const kept = await readKept(file, spec);
  if (kept !== undefined) return { value: kept, generated: false };
  await mkdir(dataDir, { recursive: true });
  const generated = await createOnce(dataDir, spec.name, `${randomBytes(GENERATED_BYTES).toString('base64url')}\n`);
  // Whoever won the link, the file now holds a whole secret: every caller reads the same one.
  const value = await readKept(file, spec);
  if (value === undefined) throw new Error(`${file} vanished right after it was created`);
  return { value, generated };
}

/** The secret in `file`, or `undefined` when there is no file; throws when it is too short. */
async function readKept(file: string, spec: SecretSpec): Promise<string | undefined> {
  let value: string;
  try {
    value = (await readFile(file, 'utf8')).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  if (value.length < spec.minLength) {
    const held = value.length === 0 ? 'is empty' : `holds ${value.length} characters`;
    throw new SecretError(
      `${file} ${held}; a ${spec.name} needs at least ${spec.minLength}: delete the file to generate a new one, or write a longer secret into it`,
    );
  }
  return value;
}

/**
 * Creates `<dir>/<name>` holding `content`, unless it exists; true when this call created it.
 *
 * @remarks The content is written to a temporary file of this call's own and synced to disk, then
 * hard-linked to the name. `link` fails when the name exists, so the first of several processes
 * wins and the others read its file; and the name only ever points at a file already written in
 * full, so a crash at any moment leaves either no file or a whole secret, never an empty one (as
 * `open(name, 'wx')` then `write` could). Libraries that write atomically (`write-file-atomic`)
 * rename over the name, which lets the last writer win: processes starting together would keep
 * different secrets.
 */
async function createOnce(dir: string, name: string, content: string): Promise<boolean> {
  const temporary = join(dir, `.${name}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temporary, 'wx', 0o600);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(temporary, join(dir, name));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
    await syncDirectory(dir);
    return true;
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

/** Makes a new directory entry durable: without it a crash could forget a secret already handed out. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
