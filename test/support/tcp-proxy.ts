/**
 * A loopback TCP proxy a test can cut: it forwards connections to `target` until `cut()`, which
 * destroys every connection through it and refuses new ones (the store looks unreachable), until
 * `restore()`. Written here rather than taken from a package: it is a few lines of `node:net`.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  /** The port to point a client at (on 127.0.0.1). */
  readonly port: number;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const listen = (): Promise<void> => new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const stopListening = (): Promise<void> => new Promise((resolve) => server.close(() => resolve()));
  const destroyAll = (): void => {
    for (const socket of sockets) socket.destroy();
  };
  return {
    port,
    cut: async () => {
      const closed = stopListening();
      destroyAll();
      await closed;
    },
    restore: listen,
    close: async () => {
      const closed = server.listening ? stopListening() : Promise.resolve();
      destroyAll();
      await closed;
    },
  };
}
