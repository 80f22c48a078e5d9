/**
 * Redis key and RabbitMQ queue and exchange names of one bench invocation's child server. The
 * child shares the Redis and the broker of `REDIS_URL` / `AMQP_URL` with whatever else uses them
 * (a server on the default `fs:` / `flashsale.`, another bench, the tests): its own prefixes keep
 * its gate keys, queues and order events exchange apart, and bench removes them when it is done.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Connection } from 'rabbitmq-client';
import { orderEventsExchange } from '../orders/outbox-relay.js';
import { queueNames } from '../pipeline/broker.js';

export interface PipelineNamespace {
  /** `REDIS_KEY_PREFIX` of the child: `bench:<random>:`. */
  readonly redisKeyPrefix: string;
  /** `QUEUE_PREFIX` of the child: `bench.<random>.`. */
  readonly queuePrefix: string;
}


/** Long enough for a local store that is up; a store that is down must not hold bench's exit for long. */
const CONNECT_TIMEOUT_MS = 5_000;

export function newPipelineNamespace(): PipelineNamespace {
  const tag = randomBytes(4).toString('hex');
  return { redisKeyPrefix: `bench:${tag}:`, queuePrefix: `bench.${tag}.` };
}

/** The queues a server declares under the namespace's prefix (`src/pipeline/broker.ts`). */
export function queuesOf(namespace: PipelineNamespace): string[] {
  const names = queueNames(namespace.queuePrefix);
  return [names.placed, names.dead];
}

/** The exchanges it declares: the order events', and the pipeline's drain asks'. */
function exchangesOf(namespace: PipelineNamespace): string[] {
  return [orderEventsExchange(namespace.queuePrefix), queueNames(namespace.queuePrefix).drain];
}

/**
 * Deletes every key under the namespace's prefix, its two queues and its two exchanges.
 * Call after the child server has stopped, or it may write them again. Each store is cleaned on its own: one that is down
 * does not keep the other's names.
 */
export async function removePipelineNamespace(
  namespace: PipelineNamespace,
  stores: { readonly redisUrl: string | undefined; readonly amqpUrl: string | undefined },
  log: (line: string) => void,
): Promise<void> {
  if (stores.redisUrl !== undefined) {
    await removeKeys(stores.redisUrl, namespace.redisKeyPrefix).catch((error: unknown) => {
      log(`bench: could not remove the Redis keys ${namespace.redisKeyPrefix}*: ${String(error)}`);
    });
  }
  if (stores.amqpUrl !== undefined) {
    const exchanges = exchangesOf(namespace);
    await removeQueues(stores.amqpUrl, queuesOf(namespace), exchanges).catch((error: unknown) => {
      log(`bench: could not delete the queues ${queuesOf(namespace).join(', ')} and the exchanges ${exchanges.join(', ')}: ${String(error)}`);
    });
  }
}

async function removeKeys(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, connectTimeout: CONNECT_TIMEOUT_MS, maxRetriesPerRequest: 1, retryStrategy: () => null });
  try {
    await redis.connect();
    let cursor = '0';
    do {
      // The prefix is ours (letters, digits, `:`): nothing in it is a SCAN pattern character.
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length > 0) await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

async function removeQueues(url: string, queues: readonly string[], exchanges: readonly string[]): Promise<void> {
  const rabbit = new Connection({ url, connectionName: 'flashsale-bench', connectionTimeout: CONNECT_TIMEOUT_MS, acquireTimeout: CONNECT_TIMEOUT_MS });
  // Without a listener the client reports a broker that is down as an unhandled 'error'.
  rabbit.on('error', () => undefined);
  try {
    // Deleting a queue that was never declared is not an error for RabbitMQ.
    for (const queue of queues) await rabbit.queueDelete({ queue });
    for (const exchange of exchanges) await rabbit.exchangeDelete({ exchange });
  } finally {
    await rabbit.close();
  }
}
