/**
 * Publishes placed orders persistent, signed (`message-signature.ts`), with publisher confirms, to the durable quorum queue: the
 * API may answer `201` only once the broker confirms. The orders placed in one event-loop turn go
 * as one message, and many messages are in flight at once on one channel (streamed confirms), so a
 * burst costs one round trip's wait and a few messages, not one of each per order.
 *
 * What a publish can end in, and what the caller does with it:
 * - `confirmed`: the broker has it durably; the order will reach PostgreSQL.
 * - `refused`: nothing was published (the broker nacked it, or the connection was down before it
 *   was sent): the caller may give the unit back.
 * - `unknown`: no confirm within the timeout, or the connection was lost with it in flight: it may
 *   still land. Not a failure: the hold stays, and the reconciler returns it only once PostgreSQL
 *   has been told to drop a late message for it.
 */
import { AMQPError, type Publisher } from 'rabbitmq-client';
import type { Broker } from './broker.js';
import { placedQueue } from './broker.js';
import { SIGNATURE_HEADER, SIGNED_CONTENT_TYPE, type MessageSigner } from './message-signature.js';
import { placedOrdersBody, type PlacedOrder } from './order-events.js';

/** Orders in one message at most (a message is written, replicated and confirmed whole). */
const MAX_ORDERS_PER_MESSAGE = 250;

export type PublishOutcome = 'confirmed' | 'refused' | 'unknown';

export interface PublisherCounts {
  /** Orders published (or waiting for this turn's message) and not yet settled. */
  readonly inFlight: number;
  /** Orders, by how their publish ended. */
  readonly confirmed: number;
  readonly refused: number;
  readonly unknown: number;
  /** Messages sent (each carries the orders of one turn). */
  readonly messages: number;
}

interface Waiting {
  readonly order: PlacedOrder;
  readonly settle: (outcome: PublishOutcome) => void;
}

export class OrderPublisher {
  private readonly publisher: Publisher;
  private counts = { inFlight: 0, confirmed: 0, refused: 0, unknown: 0, messages: 0 };
  /** Orders of this turn, sent together when it ends. */
  private waiting: Waiting[] = [];

  /**
   * @param onConfirmed runs once the broker confirmed a message and before its orders are answered
   *   `confirmed`, inside the confirm timeout (the gate takes their holds off the reconciler's list
   *   here: their orders will reach PostgreSQL). If it fails, the orders are `unknown`.
   */
  constructor(
    private readonly broker: Broker,
    private readonly signer: MessageSigner,
    private readonly confirmTimeoutMs: number,
    private readonly onConfirmed: (orders: readonly PlacedOrder[]) => Promise<void> = async () => undefined,
  ) {
    this.publisher = broker.connection.createPublisher({
      confirm: true,
      // One attempt: a retry after a lost connection could publish twice, harmless to the
      // idempotent consumer, but it would hide from the caller that the outcome was unknown.
      maxAttempts: 1,
      // Declared on every new channel, so a publish never goes to a queue that is not there.
      queues: [placedQueue(broker.names)],
    });
  }

  get stats(): PublisherCounts {
    return { ...this.counts };
  }

  /** Publishes the order (with the others of this turn) and says how it ended. */
  publish(order: PlacedOrder): Promise<PublishOutcome> {
    // Down now: a publish would wait for the connection; say at once that nothing was sent.
    if (!this.broker.ready) return Promise.resolve(this.settle('refused', 1));
    this.counts.inFlight += 1;
    return new Promise<PublishOutcome>((settle) => {
      this.waiting.push({ order, settle });
      if (this.waiting.length === 1) setImmediate(() => this.sendWaiting());
    });
  }

  private sendWaiting(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (let start = 0; start < waiting.length; start += MAX_ORDERS_PER_MESSAGE) {
      const group = waiting.slice(start, start + MAX_ORDERS_PER_MESSAGE);
      void this.send(group.map((item) => item.order)).then((outcome) => {
        this.settle(outcome, group.length);
        this.counts.inFlight -= group.length;
        for (const item of group) item.settle(outcome);
      });
    }
  }

  /** One message, and its confirm within the timeout. */
  private async send(orders: readonly PlacedOrder[]): Promise<PublishOutcome> {
    this.counts.messages += 1;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<PublishOutcome>((resolve) => {
      timer = setTimeout(() => resolve('unknown'), this.confirmTimeoutMs);
    });
    const body = placedOrdersBody(orders);
    const sent = this.publisher
      .send(
        {
          routingKey: this.broker.names.placed,
          durable: true,
          contentType: SIGNED_CONTENT_TYPE,
          headers: { [SIGNATURE_HEADER]: this.signer.sign(body) },
          timestamp: Math.floor(Date.now() / 1000),
        },
        body,
      )
      .then(
        async (): Promise<PublishOutcome> => {
          try {
            await this.onConfirmed(orders);
            return 'confirmed';
          } catch {
            // Durable, but still on the reconciler's list: it may be voided before it is written.
            return 'unknown';
          }
        },
        (error: unknown): PublishOutcome => (error instanceof AMQPError && error.code === 'NACK' ? 'refused' : 'unknown'),
      );
    try {
      return await Promise.race([sent, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits for confirms already asked for, then closes the channel. */
  close(): Promise<void> {
    return this.publisher.close();
  }

  private settle(outcome: PublishOutcome, orders: number): PublishOutcome {
    this.counts[outcome] += orders;
    return outcome;
  }
}
