/**
 * This process's view of the sessions that were ended: what the buyer guard asks on every
 * request, without a database round trip. It asks the users module (through `UsersClient`, so it
 * works over any hop) for the revocations newer than its cursor every `REVOCATION_REFRESH_MS`, so a
 * session ended through any process of the install is refused by this one within that time (and
 * the few milliseconds the poll itself takes); one ended through this process is refused here at
 * once (`add`).
 *
 * @remarks Memory is bounded by the revocations still worth refusing: a session is forgotten once
 * every access token issued from it has expired (its `accessUntil`, compared with this process's
 * clock, the clock expiry is checked against), so at most those of the last `TOKEN_TTL_SECONDS`.
 * While users' database cannot be reached the view keeps what it knows and tokens keep passing
 * until they expire: a users outage must not stop purchases, and refusing every buyer would. The
 * first poll runs before the server accepts a request (`start`).
 */
import type { RevokedSession, UsersClient } from './users.client.js';

export interface RevokedSessionsOptions {
  /** How often to ask for new revocations (`REVOCATION_REFRESH_MS`). */
  readonly intervalMs: number;
  /** Told of a failed poll, once per distinct message (not once per poll while users is down). */
  readonly warn: (message: string) => void;
  readonly now?: () => number;
}

export class RevokedSessions {
  /** Session id → ms since the epoch after which none of its tokens can pass its expiry. */
  private readonly until = new Map<string, number>();
  private cursor: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private lastFailure = '';
  /** Polls begun so far, and who waits for one begun after a given count to succeed. */
  private begun = 0;
  private waiting: { readonly after: number; readonly resolve: () => void }[] = [];
  private readonly now: () => number;

  constructor(
    private readonly users: Pick<UsersClient, 'revokedSessions'>,
    private readonly options: RevokedSessionsOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  /** Whether the session was ended (as far as this process has heard). */
  has(sessionId: string): boolean {
    return this.until.has(sessionId);
  }

  /** How many ended sessions this process remembers. */
  get size(): number {
    return this.until.size;
  }

  /** Remembers sessions this process ended itself, before any poll would bring them. */
  add(sessions: readonly RevokedSession[]): void {
    const now = this.now();
    for (const session of sessions) {
      const until = Date.parse(session.accessUntil);
      if (until > now) this.until.set(session.sessionId, Math.max(until, this.until.get(session.sessionId) ?? 0));
    }
  }

  /** Loads every revocation still worth refusing, then polls every `intervalMs` until `stop`. */
  async start(): Promise<void> {
    await this.poll();
    // A poll still running when the next is due is not doubled: the next tick asks again.
    this.timer ??= setInterval(() => {
      if (this.polling === undefined) void this.refresh();
    }, this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * One poll: resolves once a poll that started at or after this call has finished (a poll
   * already running when it is called may have read the store before the caller's revocation).
   * A failed poll is reported through `warn`, not thrown.
   */
  async refresh(): Promise<void> {
    await this.polling?.catch(() => undefined);
    try {
      await this.poll();
      this.lastFailure = '';
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (message !== this.lastFailure) this.options.warn(`revoked sessions not refreshed (${message}); keeping the ones known`);
      this.lastFailure = message;
    }
  }

  /**
   * Resolves once a poll that began after this call has succeeded, whoever began it (the timer,
   * `refresh`): from then on, every session ended before the call is refused here.
   */
  nextPoll(): Promise<void> {
    return new Promise((resolve) => this.waiting.push({ after: this.begun, resolve }));
  }

  private poll(): Promise<void> {
    const number = ++this.begun;
    const running = (async () => {
      const page = await this.users.revokedSessions(this.cursor);
      this.add(page.sessions);
      this.cursor = page.next;
      this.forgetExpired();
      const served = this.waiting.filter((waiter) => waiter.after < number);
      this.waiting = this.waiting.filter((waiter) => waiter.after >= number);
      for (const waiter of served) waiter.resolve();
    })();
    this.polling = running;
    return running.finally(() => {
      if (this.polling === running) this.polling = undefined;
    });
  }

  private forgetExpired(): void {
    const now = this.now();
    for (const [sessionId, until] of this.until) if (until <= now) this.until.delete(sessionId);
  }
}
