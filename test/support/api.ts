/**
 * A small HTTP client for tests: real requests over loopback with undici, each concurrent
 * request on its own connection (like separate buyers).
 */
import { Agent, request } from 'undici';

export interface Answer<T = Record<string, unknown>> {
  readonly status: number;
  readonly body: T;
  readonly headers: Record<string, string | string[] | undefined>;
}

export interface CallOptions {
  readonly token?: string;
  readonly body?: unknown;
  /** Sent as-is (for malformed-body tests). */
  readonly rawBody?: string;
  readonly headers?: Record<string, string>;
}

export class Api {
  private readonly agent = new Agent({ connections: null, pipelining: 1, connectTimeout: 30_000, keepAliveTimeout: 10_000 });

  constructor(readonly baseUrl: string, readonly adminToken: string) {}

  async call<T = Record<string, unknown>>(method: string, path: string, options: CallOptions = {}): Promise<Answer<T>> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token !== undefined) headers['authorization'] = `Bearer ${options.token}`;
    let body: string | undefined = options.rawBody;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    const response = await request(`${this.baseUrl}${path}`, {
      method: method as 'GET',
      headers,
      body,
      dispatcher: this.agent,
    });
    const text = await response.body.text();
    let parsed: unknown = text;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    return { status: response.statusCode, body: parsed as T, headers: response.headers };
  }

  admin<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<Answer<T>> {
    return this.call<T>(method, path, { token: this.adminToken, body });
  }

  async createProduct(fields: Record<string, unknown>): Promise<Product> {
    const answer = await this.admin<Product>('POST', '/v1/admin/products', { name: 'test', priceCents: 1000, ...fields });
    if (answer.status !== 201) throw new Error(`product not created: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body;
  }

  async createBuyers(count: number, balanceCents = 1_000_000): Promise<{ id: string; token: string }[]> {
    const answer = await this.admin<{ users: { id: string; token: string }[] }>('POST', '/v1/admin/users', {
      count,
      balanceCents,
    });
    if (answer.status !== 201) throw new Error(`buyers not created: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body.users;
  }

  purchase(token: string, productId: string, quantity = 1, headers: Record<string, string> = {}): Promise<Answer> {
    return this.call('POST', '/v1/purchases', { token, body: { productId, quantity }, headers });
  }

  async audit(productId: string): Promise<AuditAnswer> {
    const answer = await this.admin<AuditAnswer>('GET', `/v1/admin/audit?productId=${productId}`);
    if (answer.status !== 200) throw new Error(`audit failed: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

export interface Product {
  readonly id: string;
  readonly stock: number;
  readonly remaining: number;
  readonly strategy: string;
  readonly [key: string]: unknown;
}

export interface AuditAnswer {
  readonly ok: boolean;
  readonly products: readonly { stocked: number; held: number; paid: number; remaining: number; oversold: number }[];
  readonly violations: readonly { kind: string; detail: string }[];
}
