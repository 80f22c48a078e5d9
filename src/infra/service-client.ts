/**
 * A module's client over HTTP: each method call is a `POST` to the service's internal routes
 * (`service-routes.ts`) with the arguments as JSON, the install's service token and a deadline,
 * over an undici keep-alive pool. Every outcome comes back as the in-process client would give
 * it: a value, or a `DomainError` that names a refusal (`SOLD_OUT` with what remains, `CONTENTION`
 * with its `Retry-After`, …) or a failure by the one taxonomy of `store-errors.ts`:
 *
 * - not sent (no connection), refused by the callee before it started (token, unknown method,
 *   deadline passed): `STORE_UNAVAILABLE`, nothing was done;
 * - a read that timed out or was cut: `STORE_UNAVAILABLE` (retrying it is safe);
 * - a write that timed out or was cut after it was sent, or that failed inside the callee:
 *   `OUTCOME_UNKNOWN` with its order id (it may have happened; the keyed retry resolves it);
 * - a code this process does not know (a newer service): `OUTCOME_UNKNOWN`, never a crash.
 *
 * @remarks Plain data only, both ways: the arguments are checked before they are sent (a `Date`
 * or a `Map` would arrive flattened), and the answer is the callee's JSON as it wrote it, through
 * no response schema that could drop a field.
 */
import { Pool } from 'undici';
import { DomainError, ERROR_CODES, type Refusal } from './errors.js';
import { assertPlain } from './json-hop.js';
import { DEADLINE_HEADER, assertServiceToken, methodPath, servicePath, type MethodSpec, type ServiceMethods } from './service-methods.js';
import { outcomeUnknown, storeFault, storeUnavailable } from './store-errors.js';

export interface ServiceClientOptions {
  /** The service's internal origin, e.g. `http://127.0.0.1:3101`. */
  readonly url: string;
  /** The install's `SERVICE_TOKEN`, which every process shares. */
  readonly token: string;
  /** How long one call may take, end to end: its deadline, travelling with it. */
  readonly timeoutMs: number;
  /** Keep-alive connections to the service (default 16). */
  readonly connections?: number;
}

/** What the internal routes answer (200), or a refusal before the method ran (401, 404, 504). */
type Answer = { readonly ok: true; readonly value?: unknown } | { readonly ok: false; readonly error: Refusal };

export class ServiceClient {
  private readonly pool: Pool;
  private readonly authorization: string;

  constructor(
    /** The service's name, as the buyer's `STORE_UNAVAILABLE` names it (`users`, `inventory`, `orders`). */
    readonly service: string,
    private readonly options: ServiceClientOptions,
  ) {
    assertServiceToken(options.token);
    this.authorization = `Bearer ${options.token}`;
    this.pool = new Pool(options.url, {
      connections: options.connections ?? 16,
      connect: { timeout: Math.min(options.timeoutMs, 1_000) },
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      keepAliveTimeout: 10_000,
    });
  }

  /** Calls `method` with `args`; see the file's summary for what it throws. */
  async call(method: string, args: readonly unknown[], spec: MethodSpec): Promise<unknown> {
    assertPlain(args, `${this.service}.${method}'s arguments`);
    // JSON has no `undefined` in an array (it would arrive as `null`): an optional argument left
    // out at the end is left out of the call, and one in the middle cannot be sent.
    let sent = args.length;
    while (sent > 0 && args[sent - 1] === undefined) sent -= 1;
    if (args.slice(0, sent).includes(undefined)) throw new TypeError(`${this.service}.${method}: an argument before the last is undefined, which JSON cannot carry`);
    const orderId = spec.orderId?.(args);
    let status: number;
    let text: string;
    try {
      const response = await this.pool.request({
        method: 'POST',
        path: methodPath(this.service, method),
        headers: {
          authorization: this.authorization,
          'content-type': 'application/json',
          [DEADLINE_HEADER]: String(Date.now() + this.options.timeoutMs),
        },
        body: JSON.stringify({ args: args.slice(0, sent) }),
      });
      status = response.statusCode;
      text = await response.body.text();
    } catch (error) {
      throw this.failed(error, spec, orderId);
    }
    let answer: Answer;
    try {
      answer = JSON.parse(text) as Answer;
    } catch {
      throw this.unknown(spec, orderId);
    }
    if (status === 200 && answer.ok) return answer.value;
    if (!answer.ok && status === 200) {
      // A code this build does not know was named by a newer service: what it did is unknown here.
      if (!Object.hasOwn(ERROR_CODES, answer.error.code)) throw this.unknown(spec, orderId, 'write');
      throw DomainError.of(answer.error);
    }
    // Refused before the method ran: no token, an unknown method (an older service), a deadline
    // already past when it arrived. Nothing was done.
    if (status === 401 || status === 403 || status === 404 || status === 504) throw storeUnavailable(this.service);
    throw this.unknown(spec, orderId);
  }

  /** A client whose every method of `methods` is a call to this service. */
  client<T extends object>(methods: ServiceMethods<T>): T {
    const client: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
    for (const [name, spec] of Object.entries(methods) as [string, MethodSpec][]) {
      client[name] = (...args: unknown[]) => this.call(name, args, spec);
    }
    return client as T;
  }

  /** Whether the service answers, within the call timeout (for `/readyz`). */
  async ready(): Promise<boolean> {
    try {
      const response = await this.pool.request({
        method: 'GET',
        path: servicePath(this.service),
        headers: { authorization: this.authorization },
      });
      await response.body.text();
      return response.statusCode === 200;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  /** A call that failed on its way there or back, named by the store taxonomy. */
  private failed(error: unknown, spec: MethodSpec, orderId: string | undefined): Error {
    const fault = storeFault(error);
    if (fault === 'unavailable') return storeUnavailable(this.service);
    if (fault === 'unknown') return this.unknown(spec, orderId);
    return error instanceof Error ? error : new Error(String(error));
  }

  /** A write's outcome is unknown; a read's failure only means it must be asked again. */
  private unknown(spec: MethodSpec, orderId: string | undefined, kind = spec.kind): DomainError {
    return kind === 'read' ? storeUnavailable(this.service) : outcomeUnknown(this.service, orderId);
  }
}
