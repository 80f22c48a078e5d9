/**
 * The server closes connections that hold a socket without finishing a request, or sit idle
 * between requests, so they cannot pile up to the file-descriptor limit. Real sockets (node:net)
 * against a real server with short configured timeouts.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/server.js';

const HEADERS_MS = 500;
const REQUEST_MS = 1000;
const KEEP_ALIVE_MS = 300;
/** Far beyond every bound above: a socket still open by then was never going to be closed. */
const GIVE_UP_MS = 10_000;

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer({ headersTimeoutMs: HEADERS_MS, requestTimeoutMs: REQUEST_MS, keepAliveTimeoutMs: KEEP_ALIVE_MS });
});
afterAll(async () => {
  await t?.stop();
});

interface Peer {
  readonly socket: Socket;
  /** Everything the server sent so far. */
  received(): string;
  /** Resolves true when the server closes the connection, false if it is still open after `GIVE_UP_MS`. */
  closedByServer(): Promise<boolean>;
  /** Resolves with what the server sent once it holds `count` complete responses. */
  responses(count: number): Promise<string>;
}

async function open(): Promise<Peer> {
  const { port } = new URL(t.server.url);
  const socket = connect(Number(port), '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let text = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (text += chunk));
  socket.on('error', () => undefined);
  const closed = new Promise<true>((resolve) => socket.once('close', () => resolve(true)));
  return {
    socket,
    received: () => text,
    closedByServer: async () => {
      let timer: NodeJS.Timeout | undefined;
      const stillOpen = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), GIVE_UP_MS)));
      const answer = await Promise.race([closed, stillOpen]);
      clearTimeout(timer);
      socket.destroy();
      return answer;
    },
    responses: async (count) => {
      while (completeResponses(text) < count) {
        if (socket.destroyed) throw new Error(`connection closed after ${completeResponses(text)} responses:\n${text}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return text;
    },
  };
}

/** Counts responses whose body (by content-length) has fully arrived. */
function completeResponses(text: string): number {
  let count = 0;
  let rest = text;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) return count;
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(rest.slice(0, end))?.[1] ?? 0);
    if (rest.length < end + 4 + length) return count;
    count += 1;
    rest = rest.slice(end + 4 + length);
  }
}

const HEALTH = 'GET /healthz HTTP/1.1\r\nHost: flashsale\r\nConnection: keep-alive\r\n\r\n';

describe('connection timeouts', () => {
  it('closes a connection that sends half its request headers and then nothing', async () => {
    const peer = await open();
    peer.socket.write('POST /v1/purchases HTTP/1.1\r\nHost: flashsale\r\nContent-Ty');
    expect(await peer.closedByServer()).toBe(true);
  });

  it('closes a half-sent request within 1.2 times its deadline while other clients keep connections busy', async () => {
    // One client keeps its connection alive with a request every 50 ms; others open, ask and close.
    const busy = await open();
    const keepAlive = setInterval(() => busy.socket.write(HEALTH), 50);
    let battering = true;
    const battery = (async () => {
      while (battering) {
        const peers = await Promise.all([open(), open(), open()]);
        for (const peer of peers) peer.socket.write('GET /healthz HTTP/1.1\r\nHost: flashsale\r\nConnection: close\r\n\r\n');
        await Promise.all(peers.map((peer) => peer.closedByServer()));
      }
    })();
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const half = await open();
      const sentAt = Date.now();
      half.socket.write('POST /v1/purchases HTTP/1.1\r\nHost: flashsale\r\n');
      expect(await half.closedByServer()).toBe(true);
      // 1.2 times the deadline, plus a second for timers on a loaded two-core machine: Node's
      // default check every 30 s would leave it open for many deadlines.
      expect(Date.now() - sentAt).toBeLessThan(1.2 * HEADERS_MS + 1000);
      expect(half.received()).toMatch(/^HTTP\/1\.1 408 /);
      // The busy connection was served throughout.
      expect(completeResponses(busy.received())).toBeGreaterThan(5);
    } finally {
      clearInterval(keepAlive);
      battering = false;
      await battery;
      busy.socket.destroy();
    }
  });

  it('closes a connection that never sends a byte', async () => {
    const peer = await open();
    expect(await peer.closedByServer()).toBe(true);
  });

  it('closes a connection that sends its headers but only part of the body it announced', async () => {
    const peer = await open();
    peer.socket.write('POST /v1/users HTTP/1.1\r\nHost: flashsale\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name":');
    expect(await peer.closedByServer()).toBe(true);
  });

  it('keeps a connection alive for the next request, and closes it once it sits idle', async () => {
    const peer = await open();
    peer.socket.write(HEALTH);
    await peer.responses(1);
    // Straight after the answer: well inside the keep-alive timeout, the same socket is served.
    peer.socket.write(HEALTH);
    const both = await peer.responses(2);
    expect(both.match(/HTTP\/1\.1 200 /g)).toHaveLength(2);
    expect(both).toMatch(/\r\nconnection: keep-alive\r\n/i);
    expect(await peer.closedByServer()).toBe(true);
  });
});
