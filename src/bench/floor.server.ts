/**
 * The floor: a bare node:http endpoint that answers every request with the same small JSON, with
 * the same listen backlog as the real server. Run as its own process by `floor.ts`; prints
 * `{"port":N}` once listening and exits on SIGTERM.
 */
import http from 'node:http';
import { listenBacklog } from '../server.js';

const BODY = JSON.stringify({ type: 'urn:flashsale:problem:sold-out', status: 409, code: 'SOLD_OUT', remaining: 0 });

const server = http.createServer((request, response) => {
  request.resume();
  request.on('end', () => {
    response.writeHead(409, { 'content-type': 'application/problem+json', 'content-length': Buffer.byteLength(BODY) });
    response.end(BODY);
  });
});
server.keepAliveTimeout = 10_000;
server.listen({ port: 0, host: '127.0.0.1', backlog: listenBacklog() }, () => {
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});
process.once('SIGTERM', () => server.close(() => process.exit(0)));
