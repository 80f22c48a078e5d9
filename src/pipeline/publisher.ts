/**
 * Publishes placed orders persistent, with publisher confirms, to the durable quorum queue: the
 * API may answer `201` only once the broker confirms. Many publishes are in flight at once on one
 * channel (streamed confirms), so a burst costs one round trip's wait, not one per order.
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
import type { PlacedOrder } from './order-events.js';

export type PublishOutcome = 'confirmed' | 'refused' | 'unknown';

export interface PublisherCounts {
  /** Publishes sent and not yet settled. */
  readonly inFlight: number;
  readonly confirmed: number;
  readonly refused: number;
  readonly unknown: number;
}

export class OrderPublisher {
  private readonly publisher: Publisher;
  private counts = { inFlight: 0, confirmed: 0, refused: 0, unknown: 0 };

  constructor(
    private readonly broker: Broker,
    private readonly confirmTimeoutMs: number,
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

  async publish(order: PlacedOrder): Promise<PublishOutcome> {
    // Down now: a publish would wait for the connection; say at once that nothing was sent.
    if (!this.broker.ready) return this.settle('refused');
    this.counts.inFlight += 1;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<PublishOutcome>((resolve) => {
      timer = setTimeout(() => resolve('unknown'), this.confirmTimeoutMs);
    });
    const sent = this.publisher
      .send(
        {
          routingKey: this.broker.names.placed,
          durable: true,
          messageId: order.orderId,
          contentType: 'application/json',
          timestamp: Math.floor(Date.now() / 1000),
        },
        order,
      )
      .then(
        (): PublishOutcome => 'confirmed',
        (error: unknown): PublishOutcome => (error instanceof AMQPError && error.code === 'NACK' ? 'refused' : 'unknown'),
      );
    try {
      return this.settle(await Promise.race([sent, timeout]));
    } finally {
      clearTimeout(timer);
      this.counts.inFlight -= 1;
    }
  }

  /** Waits for confirms already asked for, then closes the channel. */
  close(): Promise<void> {
    return this.publisher.close();
  }

  private settle(outcome: PublishOutcome): PublishOutcome {
    this.counts[outcome] += 1;
    return outcome;
  }
}
