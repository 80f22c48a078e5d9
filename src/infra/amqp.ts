/**
 * Opens a RabbitMQ connection the way every part of flashsale wants one: it reconnects within a
 * second of the broker coming back, sends small messages without Nagle's delay, and reports a
 * failure once per outage rather than once per retry.
 */
import { Connection } from 'rabbitmq-client';

export interface AmqpLog {
  warn(object: unknown, message: string): void;
  info(object: unknown, message: string): void;
}

/**
 * A connection to `url`, connecting in the background; a publish or declare waits for it at most
 * `acquireTimeoutMs`. `name` shows in the broker's connection list.
 */
export function openAmqp(url: string, name: string, log: AmqpLog, acquireTimeoutMs = 10_000): Connection {
  const connection = new Connection({
    url,
    connectionName: name,
    // Reconnect fast: a broker back after a blip should take publishes again within a second.
    retryLow: 100,
    retryHigh: 1_000,
    acquireTimeout: acquireTimeoutMs,
    // Without it, the last part of a message larger than a TCP segment waits for the broker's
    // delayed ACK (Nagle's algorithm): 40 ms on every confirm of a storm's message, measured.
    noDelay: true,
  });
  let lastError = '';
  connection.on('error', (error) => {
    // One line per distinct failure, not one per retry.
    if (error.message !== lastError) log.warn({ err: error, connection: name }, 'RabbitMQ connection error; reconnecting');
    lastError = error.message;
  });
  connection.on('connection', () => {
    if (lastError !== '') log.info({ connection: name }, 'RabbitMQ connection re-established');
    lastError = '';
  });
  return connection;
}
