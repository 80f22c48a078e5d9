/**
 * The RabbitMQ side of the order pipeline: one connection, the queue names, and their topology.
 *
 * A durable quorum queue carries placed orders; a message the consumer cannot write after
 * `DELIVERY_LIMIT` deliveries is dead-lettered (at least once) to a queue of its own, where it
 * waits to be looked at (its depth is in `/metrics`).
 *
 * @remarks The client is rabbitmq-client: it reconnects on its own and re-declares what its
 * publishers and consumers need on every new channel, its publisher streams confirms (many
 * publishes in flight on one channel, each settled by its own ack or nack), and it has no
 * dependencies and no install script. amqplib would leave reconnection, re-declaration and
 * channel recovery to us.
 */
import type { Connection, Cmd, MethodParams } from 'rabbitmq-client';
import { openAmqp, type AmqpLog } from '../infra/amqp.js';

type QueueDeclareParams = MethodParams[Cmd.QueueDeclare];

/** Deliveries of one message before it is dead-lettered. */
export const DELIVERY_LIMIT = 5;

export interface QueueNames {
  /** Placed orders, on their way to PostgreSQL. */
  readonly placed: string;
  /** Where a message goes after `DELIVERY_LIMIT` failed deliveries. */
  readonly dead: string;
  /** The fanout exchange a rebuild asks every consumer through (`drain-barrier.ts`). */
  readonly drain: string;
}

/** Queue names under a prefix (`flashsale.` by default): tests and installs sharing a broker each use their own. */
export function queueNames(prefix = 'flashsale.'): QueueNames {
  return { placed: `${prefix}orders.placed`, dead: `${prefix}orders.dead`, drain: `${prefix}orders.drain` };
}

/** How the placed-orders queue is declared, the same by publisher, consumer and reader. */
export function placedQueue(names: QueueNames): QueueDeclareParams {
  return {
    queue: names.placed,
    durable: true,
    arguments: {
      'x-queue-type': 'quorum',
      'x-delivery-limit': DELIVERY_LIMIT,
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': names.dead,
      // At-least-once dead-lettering needs reject-publish overflow: nothing is dropped on the way.
      'x-dead-letter-strategy': 'at-least-once',
      'x-overflow': 'reject-publish',
    },
  };
}

export function deadQueue(names: QueueNames): QueueDeclareParams {
  return { queue: names.dead, durable: true, arguments: { 'x-queue-type': 'quorum' } };
}

export type BrokerLog = AmqpLog;

export class Broker {
  private constructor(
    readonly connection: Connection,
    readonly names: QueueNames,
  ) {}

  /** Connects and declares both queues (waits for the broker at most `connectTimeoutMs`). */
  static async open(url: string, names: QueueNames, log: BrokerLog, connectTimeoutMs = 10_000): Promise<Broker> {
    const connection = openAmqp(url, 'flashsale', log, connectTimeoutMs);
    try {
      await connection.queueDeclare(deadQueue(names));
      await connection.queueDeclare(placedQueue(names));
    } catch (error) {
      await connection.close();
      throw error;
    }
    return new Broker(connection, names);
  }

  get ready(): boolean {
    return this.connection.ready;
  }

  /**
   * Messages waiting in each queue (not counting those delivered and not yet acked), and the
   * consumers of the placed orders (one per process that writes them).
   */
  async depth(): Promise<{ readonly placed: number; readonly dead: number; readonly consumers: number }> {
    const [placed, dead] = await Promise.all([
      this.connection.queueDeclare({ ...placedQueue(this.names), passive: true }),
      this.connection.queueDeclare({ ...deadQueue(this.names), passive: true }),
    ]);
    return { placed: placed.messageCount, dead: dead.messageCount, consumers: placed.consumerCount };
  }

  /** Deletes both queues (tests, which use their own names). */
  async deleteQueues(): Promise<void> {
    await this.connection.queueDelete({ queue: this.names.placed });
    await this.connection.queueDelete({ queue: this.names.dead });
    await this.connection.exchangeDelete({ exchange: this.names.drain });
  }

  close(): Promise<void> {
    return this.connection.close();
  }
}
