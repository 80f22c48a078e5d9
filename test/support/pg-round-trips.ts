/**
 * A loopback proxy in front of a PostgreSQL server that counts the queries its clients send: each
 * extended-protocol `Sync` and each simple `Query` message is one round trip. A test points one
 * module's database URL at it to count what a request costs that database, read from the wire
 * rather than from the code under test (PostgreSQL's own counters reach `pg_stat_database` up to
 * 10 s late).
 *
 * @remarks It reads only what the client sends: the startup packet (and an `SSLRequest` before
 * it), then typed messages of `type byte + int32 length`. It forwards every byte as it comes.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface CountingPgProxy {
  /** The port to point a database URL at (on 127.0.0.1). */
  readonly port: number;
  /** Round trips (`Sync` or `Query` messages) sent through the proxy since it started. */
  roundTrips(): number;
  close(): Promise<void>;
}

const SSL_REQUEST = 80877103;
const GSS_REQUEST = 80877104;

/** Parses one client's stream and counts its round trips. */
class FrontendCounter {
  private buffer: Buffer = Buffer.alloc(0);
  private startup = true;

  constructor(private readonly counted: () => void) {}

  feed(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      if (this.startup) {
        if (this.buffer.length < 8) return;
        const length = this.buffer.readInt32BE(0);
        if (this.buffer.length < length) return;
        const code = this.buffer.readInt32BE(4);
        // An SSL or GSS request comes before the startup packet proper.
        if (code !== SSL_REQUEST && code !== GSS_REQUEST) this.startup = false;
        this.buffer = this.buffer.subarray(length);
        continue;
      }
      if (this.buffer.length < 5) return;
      const length = this.buffer.readInt32BE(1);
      if (this.buffer.length < 1 + length) return;
      const type = String.fromCharCode(this.buffer[0] ?? 0);
      if (type === 'S' || type === 'Q') this.counted();
      this.buffer = this.buffer.subarray(1 + length);
    }
  }
}

export async function startCountingPgProxy(target: { host: string; port: number }): Promise<CountingPgProxy> {
  const sockets = new Set<Socket>();
  let roundTrips = 0;
  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    const counter = new FrontendCounter(() => (roundTrips += 1));
    client.on('data', (chunk: Buffer) => counter.feed(chunk));
    client.pipe(upstream).pipe(client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    roundTrips: () => roundTrips,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
