/**
 * The relay: publishes the outbox's order events to RabbitMQ, at least once. It takes the
 * unrelayed events in `seq` order, a batch at a time, locked with `for update skip locked` (so
 * several processes can relay side by side without taking the same event); publishes them to a
 * durable topic exchange, persistent, with publisher confirms, a message per run of consecutive
 * events of one kind (up to `EVENTS_PER_MESSAGE`); and stamps `relayed_at` on the events of the
 * confirmed messages, in the transaction that locked them. An event
 * whose publish failed or was not confirmed in time stays unrelayed and goes again (a consumer
 * may see it twice, and deduplicates on its id); the broker away, the relay waits for it, backing
 * off, and skips nothing.
 *
 * @remarks It looks for new events every `POLL_MS` rather than being woken by `LISTEN/NOTIFY`: a
 * `NOTIFY` in the purchase's statement would make every commit that writes an event take
 * PostgreSQL's one notification-queue lock, serialising the hot path's commits, while a poll is
 * one probe of a small partial index five times a second.
 *
 * @remarks Several events to a message, not one: the client encodes, writes (a system call) and
 * tracks the confirm of every message on its own, and at a hot product's rate (one `held` event per
 * purchase) a message per event took a third of the server's CPU per purchase (65 of 197 µs).
 * A run of one kind keeps the routing key per kind, and runs in `seq` order keep an order's events
 * in their order.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Connection, Publisher } from 'rabbitmq-client';
import { openAmqp, type AmqpLog } from '../infra/amqp.js';
import { transaction, type Sql } from '../infra/database.js';
import { toOrderEvent, type OrderEventRow } from './outbox.js';

/** How often the relay looks for new events when it has caught up. */
const POLL_MS = 200;
/** Events locked and published per transaction at most. */
const BATCH = 500;
/** Events carried by one message at most. */
export const EVENTS_PER_MESSAGE = 100;
/** The wait after a failure, doubled each failure in a row up to `BACKOFF_MAX_MS`, with full jitter. */
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 10_000;

/** The exchange order events are published to, under the install's `QUEUE_PREFIX`. */
export function orderEventsExchange(queuePrefix: string): string {
  return `${queuePrefix}order-events`;
}

export interface RelayLog extends AmqpLog {
  error(object: unknown, message: string): void;
}

export interface RelayOptions {
  readonly sql: Sql;
  readonly exchange: string;
  /** How long a publish waits for the broker's confirm before it counts as failed (and goes again). */
  readonly confirmTimeoutMs: number;
  readonly log: RelayLog;
}

export interface RelayCounts {
  /** Events published, confirmed and stamped relayed by this process. */
  readonly relayed: number;
  /** Publishes that failed or were not confirmed in time (each event goes again). */
  readonly failed: number;
}

export class OutboxRelay {
  private readonly publisher: Publisher;
  private counts = { relayed: 0, failed: 0 };
  private running: Promise<void> | undefined;
  private stopping = false;
  /** Ends the current pause early (to stop, or when the broker is back). */
  private wake: (() => void) | undefined;

  private constructor(
    private readonly connection: Connection,
    private readonly options: RelayOptions,
  ) {
    this.publisher = connection.createPublisher({
      confirm: true,
      // One attempt: a failed publish goes again with the next batch, from the table.
      maxAttempts: 1,
      // Declared on every new channel, so a publish never goes to an exchange that is not there.
      exchanges: [{ exchange: options.exchange, type: 'topic', durable: true }],
    });
    connection.on('connection', () => this.wake?.());
  }

  /**
   * Opens the relay's own broker connection, in the background: the relay starts whether or not
   * the broker is up, and the events wait in the table until it is.
   */
  static open(url: string, options: RelayOptions): OutboxRelay {
    return new OutboxRelay(openAmqp(url, 'flashsale:outbox', options.log), options);
  }

  get stats(): RelayCounts {
    return { ...this.counts };
  }

  start(): void {
    this.stopping = false;
    this.running ??= this.loop();
  }

  /** Stops after the batch in hand (its confirmed events are stamped). */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.running;
    this.running = undefined;
  }

  async close(): Promise<void> {
    await this.stop();
    await this.publisher.close().catch(() => undefined);
    await this.connection.close().catch(() => undefined);
  }

  /**
   * Relays one batch: how many events it stamped relayed, and how many publishes of it failed or
   * were not confirmed in time (those stay unrelayed). Throws when the database fails: the stamps
   * do not commit, and the whole batch goes again (published twice, deduplicated by its ids).
   */
  private async relayBatch(): Promise<{ readonly relayed: number; readonly failed: number }> {
    // Caught up is the usual case: one probe of the partial index, without a transaction's round trips.
    const [waiting] = await this.options.sql`select 1 from order_events where relayed_at is null limit 1`;
    if (!waiting) return { relayed: 0, failed: 0 };
    const outcome = await transaction(this.options.sql, async (tx) => {
      const rows = await tx<OrderEventRow[]>`
        select e.id, e.seq, e.kind, e.order_id, e.created_at, o.buyer_id, o.product_id, o.quantity, o.amount_cents,
               o.expires_at, o.created_at as order_created_at
          from order_events e join orders o on o.id = e.order_id
         where e.relayed_at is null order by e.seq limit ${BATCH} for update of e skip locked`;
      if (rows.length === 0) return { relayed: 0, failed: 0 };
      // All in flight at once on one channel, each settled by its own confirm.
      const messages = intoMessages(rows);
      const confirmed = await Promise.all(messages.map((events) => this.publish(events)));
      const ids = messages.flatMap((events, i) => (confirmed[i] === true ? events.map((row) => row.id) : []));
      if (ids.length > 0) await tx`update order_events set relayed_at = now() where id = any(${tx.array(ids)}::uuid[])`;
      return { relayed: ids.length, failed: rows.length - ids.length };
    });
    // Counted once committed: stamps that did not commit are events that go again.
    this.counts.relayed += outcome.relayed;
    this.counts.failed += outcome.failed;
    return outcome;
  }

  private async loop(): Promise<void> {
    const { log } = this.options;
    let failures = 0;
    while (!this.stopping) {
      if (!this.connection.ready) {
        // Nothing to try until the broker is back: its 'connection' event ends the pause.
        await this.pause(BACKOFF_MAX_MS);
        continue;
      }
      let outcome: { readonly relayed: number; readonly failed: number };
      try {
        outcome = await this.relayBatch();
      } catch (error) {
        // One line per outage, not one per retry.
        if (failures === 0) log.error({ err: error }, 'order events relay: the database failed; the events wait and the relay retries');
        failures += 1;
        await this.pause(backoff(failures));
        continue;
      }
      if (outcome.failed > 0) {
        if (failures === 0) log.warn({ unconfirmed: outcome.failed }, 'order events relay: publishes not confirmed; those events wait and go again');
        failures += 1;
        await this.pause(backoff(failures));
        continue;
      }
      if (failures > 0) log.info({}, 'order events relay: relaying again');
      failures = 0;
      // A full batch means more are waiting: go again at once.
      if (outcome.relayed < BATCH) await this.pause(POLL_MS);
    }
  }

  /** Publishes one message of events of one kind; `true` once the broker confirmed it within the timeout. */
  private async publish(rows: readonly OrderEventRow[]): Promise<boolean> {
    const events = rows.map(toOrderEvent);
    const [first] = events;
    if (!first) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.options.confirmTimeoutMs);
    });
    const sent = this.publisher
      .send(
        {
          exchange: this.options.exchange,
          routingKey: `order.${first.kind}`,
          durable: true,
          type: `order.${first.kind}`,
          contentType: 'application/json',
          timestamp: Math.floor((rows[0]?.created_at.getTime() ?? Date.now()) / 1000),
          headers: { 'x-events': events.length, 'x-first-seq': first.seq, 'x-last-seq': events.at(-1)?.seq ?? first.seq },
        },
        { events },
      )
      // A nack, a lost connection: the event goes again.
      .then(
        () => true,
        () => false,
      );
    try {
      return await Promise.race([sent, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async pause(ms: number): Promise<void> {
    if (this.stopping) return;
    const controller = new AbortController();
    this.wake = () => controller.abort();
    try {
      await sleep(ms, undefined, { signal: controller.signal });
    } catch {
      // Woken early.
    } finally {
      this.wake = undefined;
    }
  }
}

/**
 * A batch (in `seq` order) cut into messages: runs of consecutive events of one kind, at most
 * `EVENTS_PER_MESSAGE` each, in the batch's order.
 */
export function intoMessages(rows: readonly OrderEventRow[]): OrderEventRow[][] {
  const messages: OrderEventRow[][] = [];
  let current: OrderEventRow[] = [];
  for (const row of rows) {
    if (current.length === EVENTS_PER_MESSAGE || (current.length > 0 && current[0]?.kind !== row.kind)) {
      messages.push(current);
      current = [];
    }
    current.push(row);
  }
  if (current.length > 0) messages.push(current);
  return messages;
}

/** The pause after `failures` failures in a row: exponential, capped, with full jitter. */
function backoff(failures: number): number {
  return Math.random() * Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** failures);
}
