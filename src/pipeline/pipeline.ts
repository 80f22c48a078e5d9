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
import { DrainAsks } from './drain-barrier.js';
import type { MessageSigner } from './message-signature.js';
import { readPlacedMessage, type DeliveredMessage, type PlacedOrder, type PlacedOrders, type RejectedMessage } from './order-events.js';
import { OrderPublisher } from './publisher.js';
import { reconcilerHorizonMs } from './reconciler.js';

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
    private readonly confirmTimeoutMs: number,
    private readonly signer: MessageSigner,
    private readonly acceptUnsigned: boolean,
  ) {
    this.drainAsks = new DrainAsks(broker.connection, broker.names.drain);
  }

  private consumerOf: OrderConsumer | undefined;
  private readonly drainAsks: DrainAsks;

  /** `signer` signs what this process publishes and checks what its consumer reads (`PIPELINE_SECRET`). */
  static async open(
    config: Config,
    inventorySql: Sql,
    signer: MessageSigner,
    log: PipelineLog,
    onRedisError?: (error: Error) => void,
  ): Promise<Pipeline | undefined> {
    if (config.redisUrl === undefined || config.amqpUrl === undefined) return undefined;
    const gate = await RedisGate.open(config.redisUrl, {
      keyPrefix: config.redisKeyPrefix,
      endedHoldsKeptMs: reconcilerHorizonMs(config.confirmTimeoutMs),
      ...(onRedisError ? { onError: onRedisError } : {}),
    });
    let broker: Broker;
    try {
      broker = await Broker.open(config.amqpUrl, queueNames(config.queuePrefix), log);
    } catch (error) {
      await gate.close();
      throw error;
    }
    const publisher = new OrderPublisher(broker, signer, config.confirmTimeoutMs, (orders) => gate.published(orders));
    // The rebuilds ask the pipeline whether it has drained; the pipeline holds the rebuilds.
    const holder: { pipeline?: Pipeline } = {};
    const rebuilds = new GateRebuilds({
      gate,
      sql: inventorySql,
      confirmTimeoutMs: config.confirmTimeoutMs,
      drained: () => holder.pipeline?.drained() ?? Promise.resolve(false),
      log: { info: (message) => log.info({}, message), warn: (message) => log.warn({}, message) },
    });
    holder.pipeline = new Pipeline(gate, broker, publisher, rebuilds, log, config.confirmTimeoutMs, signer, config.pipelineAcceptUnsigned);
    return holder.pipeline;
  }

  /** The consumer, once started (`startConsumer`). */
  get consumer(): OrderConsumer | undefined {
    return this.consumerOf;
  }

  /**
   * Starts taking placed orders off the queue (those this install signed) and writing them with
   * `write`; `abandon` gives up those that can never be written (see `OrderConsumer`).
   */
  startConsumer(
    write: (orders: readonly PlacedOrder[]) => Promise<void>,
    abandon: (orders: readonly PlacedOrder[]) => Promise<void>,
  ): OrderConsumer {
    this.consumerOf ??= new OrderConsumer(this.broker, { read: (message) => this.read(message), write, abandon, log: this.log });
    this.consumerOf.start();
    return this.consumerOf;
  }

  /** A delivered message's orders, once it is signed by this install and well formed; or why not. */
  read(message: DeliveredMessage): PlacedOrders | RejectedMessage {
    return readPlacedMessage(message, this.signer, this.acceptUnsigned);
  }

  /**
   * Nothing placed is still on its way to PostgreSQL, in any process: no publish of this
   * process's in flight, no message waiting in the queue, and every consumer (this process's and
   * others') has settled what it held (`drain-barrier.ts`).
   */
  async drained(): Promise<boolean> {
    if (this.publisher.stats.inFlight > 0 || (this.consumerOf !== undefined && !this.consumerOf.idle)) return false;
    const before = await this.broker.depth();
    if (before.placed > 0) return false;
    if (before.consumers === 0) return true;
    if (!(await this.drainAsks.ask(before.consumers, this.confirmTimeoutMs))) return false;
    // A consumer that gave messages back (a failed write) put them in the queue again.
    return (await this.broker.depth()).placed === 0;
  }

  async close(): Promise<void> {
    await this.rebuilds.stop();
    await this.consumerOf?.stop();
    await this.drainAsks.close().catch(() => undefined);
    await this.publisher.close().catch(() => undefined);
    await this.broker.close().catch(() => undefined);
    await this.gate.close().catch(() => undefined);
  }
}
