/**
 * The order pipeline's consumer: takes placed orders off the quorum queue (a message carries the
 * orders of one turn of one publisher) and writes them to PostgreSQL in batches (`OrdersClient.recordPlaced`: the holds in inventory's database first,
 * then the orders in orders'), acking each message only after both committed. A crash between the
 * two commits is finished by the redelivery; every write is idempotent by order id.
 *
 * Nothing in a message is trusted for where it came from: it is written only once its signature
 * verifies and every field has its form (`readPlacedMessage`); an unsigned, forged or malformed
 * message is dead-lettered at once and changes nothing (no order, no key, no hold), counted by
 * why. Writing re-checks what the gate granted against PostgreSQL (`PendingHolds.record`).
 *
 * Failures: a store that is down (PostgreSQL restarting, the role refused) is waited out here,
 * with backoff, the messages unacked: an outage never uses up a message's deliveries. Any other
 * failure is retried alone (a batch that fails is split), and a message with an order that still
 * fails is nacked after a backoff and redelivered. An order that can never be written (refused by
 * a check: a `4xx` domain error), or that still fails on the message's last delivery
 * (`DELIVERY_LIMIT`), is given up: `abandon` voids it and gives its units back, so its buyer's
 * payment answers `HOLD_EXPIRED` and no unit stays held for an order that will never exist. The
 * message is then dead-lettered whole (its orders that were written stay written).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ConsumerStatus, type AsyncMessage, type Consumer } from 'rabbitmq-client';
import { DomainError } from '../infra/errors.js';
import { GroupBatches } from '../infra/group-batches.js';
import { isStoreFailure } from '../infra/store-errors.js';
import type { Broker, BrokerLog } from './broker.js';
import { DELIVERY_LIMIT, placedQueue } from './broker.js';
import { answerDrainAsks } from './drain-barrier.js';
import type { DeliveredMessage, PlacedOrder, PlacedOrders, RejectedMessage } from './order-events.js';

export interface ConsumerOptions {
  /** Reads a delivered message: its orders once its signature and fields check out, or why not. */
  readonly read: (message: DeliveredMessage) => PlacedOrders | RejectedMessage;
  /** Writes placed orders idempotently (the holds, then the orders). */
  readonly write: (orders: readonly PlacedOrder[]) => Promise<void>;
  /** Gives up orders that will never be written: voided, their units back (see the file's summary). */
  readonly abandon: (orders: readonly PlacedOrder[]) => Promise<void>;
  /** Messages handled at once (default 100); a batch is written up to 500 orders at a time. */
  readonly concurrency?: number;
  readonly log: BrokerLog & { error(object: unknown, message: string): void };
}

export interface ConsumerCounts {
  readonly written: number;
  readonly batches: number;
  readonly lastBatchSize: number;
  /** From the gate's grant to the write's commit, of the last order written (ms). */
  readonly lagMs: number;
  /** Orders not written for a failure that was not a store's (their message is redelivered). */
  readonly failed: number;
  /** Orders given up (voided, units back) and their message dead-lettered. */
  readonly abandoned: number;
  /** Messages dead-lettered unread, by why: no signature, a signature that does not verify, not placed orders. */
  readonly rejected: Readonly<Record<RejectedMessage['rejected'], number>>;
}

/** How writing one order of a message ended. */
type WriteOutcome = 'written' | 'retry' | 'give-up';

/** Backoff after the n-th failure in a row: 100 ms doubling, at most 2 s. */
const backoffMs = (failures: number): number => Math.min(100 * 2 ** Math.max(0, failures - 1), 2_000);

export class OrderConsumer {
  private consumer: Consumer | undefined;
  /** Answers a rebuild's drain asks (`drain-barrier.ts`). */
  private drainAnswers: Consumer | undefined;
  /** Messages passed to a handler so far; each is numbered in that order. */
  private handled = 0;
  /** Numbers of the messages being handled. */
  private readonly unsettled = new Set<number>();
  /** Drain asks waiting for every message up to a number to be settled. */
  private settledWaiters: { readonly upTo: number; readonly resolve: () => void }[] = [];
  private stopping = false;
  private counts = { written: 0, batches: 0, lastBatchSize: 0, lagMs: 0, failed: 0, abandoned: 0 };
  private readonly rejected = { unsigned: 0, forged: 0, malformed: 0 };
  /** Messages delivered here and not yet acked or nacked. */
  private handling = 0;
  /** Batches written through one statement pair; a failed batch is written again one by one. */
  private readonly batches = new GroupBatches<PlacedOrder, Error | undefined>((orders) => this.writeBatch(orders));

  constructor(
    private readonly broker: Broker,
    private readonly options: ConsumerOptions,
  ) {}

  get stats(): ConsumerCounts {
    return { ...this.counts, rejected: { ...this.rejected } };
  }

  get running(): boolean {
    return this.consumer !== undefined;
  }

  /** Whether no message delivered here is still being written. */
  get idle(): boolean {
    return this.handling === 0;
  }

  start(): void {
    if (this.consumer) return;
    this.stopping = false;
    const concurrency = this.options.concurrency ?? 100;
    this.consumer = this.broker.connection.createConsumer(
      {
        queue: this.broker.names.placed,
        queueOptions: placedQueue(this.broker.names),
        // Twice the handlers: the next batch is delivered while this one is written.
        qos: { prefetchCount: concurrency * 2 },
        concurrency,
        requeue: true,
      },
      async (message) => {
        this.handling += 1;
        const number = ++this.handled;
        this.unsettled.add(number);
        try {
          return await this.handle(message);
        } finally {
          this.handling -= 1;
          this.unsettled.delete(number);
          // After the client has sent this message's ack or nack (it does once the handler's
          // promise settles): a drain answer must not reach the asker before a nacked message is
          // back in the queue.
          setImmediate(() => this.wakeSettledWaiters());
        }
      },
    );
    this.consumer.on('error', (error) => this.options.log.warn({ err: error }, 'order consumer error; it recovers on its own'));
    this.drainAnswers = answerDrainAsks(this.broker.connection, this.broker.names.drain, () => this.settled());
    this.drainAnswers.on('error', (error) => this.options.log.warn({ err: error }, 'drain answers error; it recovers on its own'));
  }

  /**
   * Resolves once every message this consumer holds now is settled (acked, or given back): those
   * being handled, and those the client took from the broker and keeps until a handler is free
   * (handled next, in order). Settled here means the broker has it back or it is written.
   */
  settled(): Promise<void> {
    const upTo = this.handled + (this.consumer?.stats.prefetched ?? 0);
    return new Promise((resolve) => {
      this.settledWaiters.push({ upTo, resolve });
      this.wakeSettledWaiters();
    });
  }

  private wakeSettledWaiters(): void {
    if (this.settledWaiters.length === 0) return;
    const lowestUnsettled = this.unsettled.size === 0 ? Infinity : Math.min(...this.unsettled);
    // The client keeps no message it has not handled (handled since, or dropped with a channel that
    // closed: the broker has those back).
    const bufferGone = (this.consumer?.stats.prefetched ?? 0) === 0;
    this.settledWaiters = this.settledWaiters.filter((waiter) => {
      const done = (this.handled >= waiter.upTo || bufferGone) && lowestUnsettled > Math.min(waiter.upTo, this.handled);
      if (done) waiter.resolve();
      return !done;
    });
  }

  /** Stops taking messages and waits for those being written; unacked ones go back to the queue. */
  async stop(): Promise<void> {
    this.stopping = true;
    const consumer = this.consumer;
    this.consumer = undefined;
    // Handlers finish; messages the client kept go back to the queue: settled, for a drain ask.
    await consumer?.close();
    this.wakeSettledWaiters();
    const drainAnswers = this.drainAnswers;
    this.drainAnswers = undefined;
    await drainAnswers?.close();
  }

  private async handle(message: AsyncMessage): Promise<ConsumerStatus> {
    const placed = this.options.read(message);
    if ('rejected' in placed) {
      this.rejected[placed.rejected] += 1;
      this.options.log.error({ messageId: message.messageId, rejected: placed.rejected, why: placed.why }, 'placed-orders message refused unread; dead-lettered');
      return ConsumerStatus.DROP;
    }
    const lastDelivery = deliveryCount(message) >= DELIVERY_LIMIT;
    const outcomes = await Promise.all(placed.orders.map((order) => this.write(order, lastDelivery)));
    const givenUp = placed.orders.filter((_, index) => outcomes[index] === 'give-up');
    if (givenUp.length > 0) {
      try {
        await this.options.abandon(givenUp);
      } catch (error) {
        // Not given up yet: the message comes back, and the orders with it.
        this.options.log.error({ err: error, orders: givenUp.map((order) => order.orderId) }, 'could not give up placed orders; the message is redelivered');
        return ConsumerStatus.REQUEUE;
      }
      this.counts.abandoned += givenUp.length;
      this.options.log.error({ messageId: message.messageId, orders: givenUp.map((order) => order.orderId) }, 'placed orders given up (voided, units back); the message is dead-lettered');
    }
    // A message is acked whole: if one of its orders could not be written, it comes back (the
    // others are written already, and writing them again changes nothing).
    if (outcomes.includes('retry')) return ConsumerStatus.REQUEUE;
    return givenUp.length > 0 ? ConsumerStatus.DROP : ConsumerStatus.ACK;
  }

  /**
   * Writes one order; `lastDelivery`: the broker dead-letters its message if it comes back, so a
   * failure now gives the order up instead.
   */
  private async write(order: PlacedOrder, lastDelivery: boolean): Promise<WriteOutcome> {
    for (let failures = 1; ; failures += 1) {
      const error = await this.batches.add(order).catch((thrown: unknown) => thrown as Error);
      if (error === undefined) {
        this.counts.lagMs = Date.now() - Date.parse(order.placedAt);
        return 'written';
      }
      // A store that is down is waited out: its messages stay unacked, their deliveries unspent.
      if (isStoreFailure(error) && !this.stopping) {
        await sleep(backoffMs(failures));
        continue;
      }
      this.counts.failed += 1;
      const refused = error instanceof DomainError && error.status < 500;
      if (refused || lastDelivery) {
        this.options.log.error({ err: error, orderId: order.orderId }, 'a placed order cannot be written; it is given up');
        return 'give-up';
      }
      this.options.log.error({ err: error, orderId: order.orderId }, 'could not write a placed order; it is redelivered');
      await sleep(backoffMs(failures));
      return 'retry';
    }
  }

  private async writeBatch(orders: readonly PlacedOrder[]): Promise<(Error | undefined)[]> {
    try {
      await this.options.write(orders);
      this.counts.batches += 1;
      this.counts.lastBatchSize = orders.length;
      this.counts.written += orders.length;
      return orders.map(() => undefined);
    } catch (error) {
      if (orders.length === 1 || isStoreFailure(error)) return orders.map(() => error as Error);
      // One bad order must not hold back the rest: each goes alone, and only those that fail retry.
      return Promise.all(orders.map((order) => this.writeBatch([order]).then(([result]) => result)));
    }
  }
}

/** How many times the broker delivered this message before (quorum queues count it in `x-delivery-count`). */
function deliveryCount(message: AsyncMessage): number {
  const count = message.headers?.['x-delivery-count'];
  return typeof count === 'number' ? count : 0;
}
