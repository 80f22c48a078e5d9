/**
 * The production path's stores, opened once per process: the Redis gate, the broker, the
 * publisher, the consumer and the reconciler, and the rebuilds of missing gate keys. Opened only
 * when both `REDIS_URL` and `AMQP_URL` are set; closed in the reverse order.
 */
import type { Config } from '../config.js';
import type { Sql } from '../infra/database.js';
import { GateRebuilds } from '../inventory/redis/rebuild.js';
import { RedisGate } from '../inventory/redis/gate.js';
import { Broker, queueNames, type BrokerLog } from './broker.js';
import { OrderConsumer } from './consumer.js';
import type { PlacedOrder } from './order-events.js';
import { OrderPublisher } from './publisher.js';

export interface PipelineLog extends BrokerLog {
  error(object: unknown, message: string): void;
}

export class Pipeline {
  private constructor(
    readonly gate: RedisGate,
    readonly broker: Broker,
    readonly publisher: OrderPublisher,
    readonly rebuilds: GateRebuilds,
    private readonly log: PipelineLog,
  ) {}

  private consumerOf: OrderConsumer | undefined;

  static async open(config: Config, inventorySql: Sql, log: PipelineLog, onRedisError?: (error: Error) => void): Promise<Pipeline | undefined> {
    if (config.redisUrl === undefined || config.amqpUrl === undefined) return undefined;
    const gate = await RedisGate.open(config.redisUrl, { keyPrefix: config.redisKeyPrefix, ...(onRedisError ? { onError: onRedisError } : {}) });
    let broker: Broker;
    try {
      broker = await Broker.open(config.amqpUrl, queueNames(config.queuePrefix), log);
    } catch (error) {
      await gate.close();
      throw error;
    }
    const publisher = new OrderPublisher(broker, config.confirmTimeoutMs, (orders) => gate.published(orders));
    // The rebuilds ask the pipeline whether it has drained; the pipeline holds the rebuilds.
    const holder: { pipeline?: Pipeline } = {};
    const rebuilds = new GateRebuilds({
      gate,
      sql: inventorySql,
      confirmTimeoutMs: config.confirmTimeoutMs,
      drained: () => holder.pipeline?.drained() ?? Promise.resolve(false),
      log: { info: (message) => log.info({}, message), warn: (message) => log.warn({}, message) },
    });
    holder.pipeline = new Pipeline(gate, broker, publisher, rebuilds, log);
    return holder.pipeline;
  }

  /** The consumer, once started (`startConsumer`). */
  get consumer(): OrderConsumer | undefined {
    return this.consumerOf;
  }

  /** Starts taking placed orders off the queue and writing them with `write`. */
  startConsumer(write: (orders: readonly PlacedOrder[]) => Promise<void>): OrderConsumer {
    this.consumerOf ??= new OrderConsumer(this.broker, { write, log: this.log });
    this.consumerOf.start();
    return this.consumerOf;
  }

  /**
   * Nothing placed is still on its way to PostgreSQL as far as this process can see: no publish of
   * its own in flight, no message ready in the queue, none being written by its consumer.
   */
  async drained(): Promise<boolean> {
    if (this.publisher.stats.inFlight > 0 || (this.consumerOf !== undefined && !this.consumerOf.idle)) return false;
    const depth = await this.broker.depth();
    return depth.placed === 0;
  }

  async close(): Promise<void> {
    await this.rebuilds.stop();
    await this.consumerOf?.stop();
    await this.publisher.close().catch(() => undefined);
    await this.broker.close().catch(() => undefined);
    await this.gate.close().catch(() => undefined);
  }
}
