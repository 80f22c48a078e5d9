/**
 * Bench's HTTP clients. {@link Connection}: one buyer's own TCP connection (node:http with a
 * one-socket keep-alive agent), which records when each request was fully written, its status,
 * problem code and latency. {@link AdminApi}: the admin calls that set a run up and audit it.
 *
 * @remarks node:http rather than undici for the buyers: its `finish` event says exactly when the
 * request left for the kernel, which is what fairness is measured on. The connect timeout is ours
 * (≥ 10 s) so SYN retries to a full backlog are waited out, as a browser or k6 would.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { Agent, Client, request } from 'undici';

export const CONNECT_TIMEOUT_MS = 15_000;
export const RESPONSE_TIMEOUT_MS = 120_000;

export interface Answer {
  /** 0 when no HTTP answer came (connection error). */
  readonly status: number;
  readonly code: string | undefined;
  readonly body: unknown;
  readonly retryAfterSeconds: number | undefined;
  /** ms on the run's clock. */
  readonly startedAt: number;
  /** ms on the run's clock when the request was fully handed to the kernel (NaN if never). */
  readonly writtenAt: number;
  readonly endedAt: number;
  /** The error code (`ECONNRESET`, `ECONNREFUSED`, `CONNECT_TIMEOUT`, …) when status is 0. */
  readonly error: string | undefined;
}

export interface SendOptions {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly token?: string;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

/** Milliseconds since `origin` (the barrier), sub-millisecond resolution. */
export class Clock {
  private origin = performance.now();
  reset(): void {
    this.origin = performance.now();
  }
  now(): number {
    return performance.now() - this.origin;
  }
}

/** One TCP connection of its own, reused for a buyer's retries and payment. */
export class Connection {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 });

  constructor(
    private readonly target: URL,
    private readonly clock: Clock,
  ) {}

  send(options: SendOptions): Promise<Answer> {
    const { payload, headers } = requestOf(options);
    if (payload !== undefined) headers['content-length'] = String(Buffer.byteLength(payload));
    const startedAt = this.clock.now();
    let writtenAt = Number.NaN;
    return new Promise<Answer>((resolve) => {
      let settled = false;
      const finish = (answer: Omit<Answer, 'startedAt' | 'writtenAt' | 'endedAt'>): void => {
        if (settled) return;
        settled = true;
        clearTimeout(connectTimer);
        resolve({ ...answer, startedAt, writtenAt, endedAt: this.clock.now() });
      };
      const failed = (error: unknown): void => finish(noAnswer(error));
      let connectTimer: NodeJS.Timeout | undefined;
      const req = http.request(
        {
          host: this.target.hostname,
          port: this.target.port,
          method: options.method,
          path: options.path,
          headers,
          agent: this.agent,
          timeout: RESPONSE_TIMEOUT_MS,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', failed);
          res.on('end', () => {
            finish(answerOf(res.statusCode ?? 0, res.headers['retry-after'], Buffer.concat(chunks).toString('utf8')));
          });
        },
      );
      req.on('socket', (socket) => {
        if (!socket.connecting) return;
        connectTimer = setTimeout(() => {
          const error = Object.assign(new Error('connect timeout'), { code: 'CONNECT_TIMEOUT' });
          req.destroy(error);
        }, CONNECT_TIMEOUT_MS);
        socket.once('connect', () => clearTimeout(connectTimer));
      });
      req.on('finish', () => {
        writtenAt = this.clock.now();
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('response timeout'), { code: 'RESPONSE_TIMEOUT' })));
      req.on('error', failed);
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/**
 * One kept-alive connection for the `hot` run, on undici's `Client`: it costs the load generator
 * about half the CPU of node:http per request, and on 2 cores every tick it spends is taken from
 * the server and PostgreSQL being measured. It cannot say when a request was written (`writtenAt`
 * is NaN): hot reports no fairness.
 */
export class KeptAliveConnection {
  private readonly client: Client;

  constructor(target: URL, private readonly clock: Clock) {
    this.client = new Client(target.origin, {
      connect: { timeout: CONNECT_TIMEOUT_MS },
      headersTimeout: RESPONSE_TIMEOUT_MS,
      bodyTimeout: RESPONSE_TIMEOUT_MS,
      pipelining: 1,
    });
  }

  async send(options: SendOptions): Promise<Answer> {
    const { payload, headers } = requestOf(options);
    const startedAt = this.clock.now();
    let answer: AnswerParts;
    try {
      const response = await this.client.request({ method: options.method, path: options.path, headers, body: payload });
      answer = answerOf(response.statusCode, response.headers['retry-after'], await response.body.text());
    } catch (error) {
      answer = noAnswer(error);
    }
    return { ...answer, startedAt, writtenAt: Number.NaN, endedAt: this.clock.now() };
  }

  close(): void {
    void this.client.destroy().catch(() => undefined);
  }
}

type AnswerParts = Omit<Answer, 'startedAt' | 'writtenAt' | 'endedAt'>;

/** The body as JSON text and the headers every bench request carries. */
function requestOf(options: SendOptions): { payload: string | undefined; headers: Record<string, string> } {
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers['authorization'] = `Bearer ${options.token}`;
  if (payload !== undefined) headers['content-type'] = 'application/json';
  return { payload, headers };
}

/** What an HTTP answer says: status, problem code, body, `Retry-After`. */
function answerOf(status: number, retryAfterHeader: string | string[] | undefined, text: string): AnswerParts {
  const body = parseBody(text);
  const retryAfter = Number(retryAfterHeader);
  return { status, code: problemCode(body), body, retryAfterSeconds: Number.isFinite(retryAfter) ? retryAfter : undefined, error: undefined };
}

/** No HTTP answer at all: the error's code (`ECONNRESET`, `CONNECT_TIMEOUT`, …). */
function noAnswer(error: unknown): AnswerParts {
  const code = (error as { code?: unknown }).code;
  return { status: 0, code: undefined, body: undefined, retryAfterSeconds: undefined, error: typeof code === 'string' ? code : String(error) };
}

/** JSON when it parses, else the text itself. */
function parseBody(text: string): unknown {
  if (text.length === 0) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The `code` of a problem+json body. */
function problemCode(body: unknown): string | undefined {
  return typeof body === 'object' && body !== null && typeof (body as { code?: unknown }).code === 'string'
    ? (body as { code: string }).code
    : undefined;
}

export interface Buyer {
  readonly id: string;
  readonly token: string;
}

export interface ProductInfo {
  readonly id: string;
  readonly strategy: string;
  readonly stock: number;
}

/** Admin calls over a small pool (not part of the measured storm). */
export class AdminApi {
  private readonly agent = new Agent({ connections: 8, connectTimeout: CONNECT_TIMEOUT_MS, bodyTimeout: 300_000, headersTimeout: 300_000 });

  constructor(readonly baseUrl: string, private readonly adminToken: string) {}

  async call<T>(method: 'GET' | 'POST', path: string, body?: unknown, expect: readonly number[] = [200, 201]): Promise<T> {
    const response = await request(`${this.baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.adminToken}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      dispatcher: this.agent,
    });
    const text = await response.body.text();
    if (!expect.includes(response.statusCode)) {
      throw new Error(`${method} ${path}: ${response.statusCode} ${text.slice(0, 500)}`);
    }
    return (text.length > 0 ? JSON.parse(text) : undefined) as T;
  }

  /** A GET whose answer is text, not JSON (`/metrics`, which also takes the admin token when `METRICS_TOKEN` guards it). */
  async text(path: string): Promise<string> {
    const response = await request(`${this.baseUrl}${path}`, {
      method: 'GET',
      headers: { authorization: `Bearer ${this.adminToken}` },
      dispatcher: this.agent,
    });
    const text = await response.body.text();
    if (response.statusCode !== 200) throw new Error(`GET ${path}: ${response.statusCode} ${text.slice(0, 500)}`);
    return text;
  }

  health(): Promise<{ strategy: string; strategies: string[]; inFlight?: number }> {
    return this.call('GET', '/healthz');
  }

  createProduct(fields: Record<string, unknown>): Promise<ProductInfo> {
    return this.call('POST', '/v1/admin/products', fields);
  }

  /** Creates `count` buyers, 20,000 per call at most. */
  async createBuyers(count: number, balanceCents: number, namePrefix: string): Promise<Buyer[]> {
    const buyers: Buyer[] = [];
    while (buyers.length < count) {
      const batch = Math.min(20_000, count - buyers.length);
      const answer = await this.call<{ users: Buyer[] }>('POST', '/v1/admin/users', { count: batch, balanceCents, namePrefix });
      buyers.push(...answer.users);
    }
    return buyers;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
