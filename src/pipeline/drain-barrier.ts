/**
 * The drain barrier: how a process learns that no placed order is still on its way to PostgreSQL
 * in any process, before it rebuilds a product's gate keys from PostgreSQL.
 *
 * The queue's depth counts only the messages waiting (`ready`); a message delivered to a consumer
 * and not yet acked is invisible to it, and so to every process but the one writing it. A rebuild
 * that trusted the depth alone while another process (a `flashsale worker`) held a batch would load
 * `remaining` without that batch's units and sell them again. So, once nothing is waiting, the
 * rebuilding process asks every consumer (a fanout exchange, `<QUEUE_PREFIX>orders.drain`) to
 * answer once the messages it held when asked are settled, and counts the answers against the
 * queue's consumer count. A consumer that cannot settle (its database away) does not answer; the
 * ask times out and the rebuild waits and asks again.
 *
 * @remarks AMQP has no count of unacked messages (the management plugin's HTTP API does, but is
 * not part of every broker), hence the ask. A consumer answers on the connection it consumes on,
 * so a delivery the broker sent it before the ask is read before the ask.
 */
import { randomUUID } from 'node:crypto';
import type { Connection, Consumer, Publisher } from 'rabbitmq-client';

/** What a consumer answers: the ask it answers, and that everything it held then is settled. */
interface DrainAnswer {
  readonly settled: true;
}

/** The fanout exchange asks go to; declared the same by both sides. */
function drainExchange(exchange: string): { exchange: string; type: 'fanout'; durable: true } {
  return { exchange, type: 'fanout', durable: true };
}

/**
 * The consumer's side: answers every ask once `settled` resolves (it resolves when the messages
 * the consumer held at the ask are acked or given back).
 */
export function answerDrainAsks(connection: Connection, exchange: string, settled: () => Promise<void>): Consumer {
  return connection.createConsumer(
    {
      // A queue of this consumer's own, named by the broker, gone with its connection.
      queue: '',
      queueOptions: { exclusive: true, autoDelete: true },
      exchanges: [drainExchange(exchange)],
      queueBindings: [{ exchange, routingKey: '' }],
      noAck: true,
    },
    async (_ask, reply) => {
      await settled();
      const answer: DrainAnswer = { settled: true };
      await reply(answer);
    },
  );
}

/** The asking side: one reply queue per process, made on the first ask. */
export class DrainAsks {
  private replies: Consumer | undefined;
  private publisher: Publisher | undefined;
  /** Answers so far, by the ask's correlation id. */
  private readonly answers = new Map<string, { count: number; wake: () => void }>();

  constructor(
    private readonly connection: Connection,
    private readonly exchange: string,
  ) {}

  /**
   * Asks every consumer, and resolves `true` once `consumers` have answered, or `false` after
   * `timeoutMs` (one of them cannot settle yet, or the count changed meanwhile).
   */
  async ask(consumers: number, timeoutMs: number): Promise<boolean> {
    const replyTo = await this.replyQueue();
    const id = randomUUID();
    let timer: NodeJS.Timeout | undefined;
    try {
      return await new Promise<boolean>((resolve, reject) => {
        const entry = { count: 0, wake: () => (entry.count >= consumers ? resolve(true) : undefined) };
        this.answers.set(id, entry);
        timer = setTimeout(() => resolve(false), timeoutMs);
        this.publisher ??= this.connection.createPublisher({ exchanges: [drainExchange(this.exchange)] });
        this.publisher.send({ exchange: this.exchange, routingKey: '', replyTo, correlationId: id, expiration: String(timeoutMs) }, {}).catch(reject);
      });
    } finally {
      clearTimeout(timer);
      this.answers.delete(id);
    }
  }

  async close(): Promise<void> {
    await this.replies?.close();
    await this.publisher?.close();
  }

  private async replyQueue(): Promise<string> {
    if (!this.replies) {
      this.replies = this.connection.createConsumer({ queue: '', queueOptions: { exclusive: true, autoDelete: true }, noAck: true }, (message) => {
        const entry = message.correlationId ? this.answers.get(message.correlationId) : undefined;
        if (!entry) return;
        entry.count += 1;
        entry.wake();
      });
    }
    const replies = this.replies;
    for (let waited = 0; replies.queue === ''; waited += 10) {
      if (waited > 5_000) throw new Error('the drain reply queue was not declared');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return replies.queue;
  }
}
