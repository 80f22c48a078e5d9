/**
 * The JSON hop the test servers wire the modules through: it must fail loudly on anything an HTTP
 * hop would lose, or the suites that pass through it would prove nothing about the contracts.
 */
import { describe, expect, it } from 'vitest';
import { DomainError } from '../src/infra/errors.js';
import { overJson } from '../src/infra/json-hop.js';

class Client {
  readonly seen: unknown[] = [];
  async echo(value: unknown): Promise<unknown> {
    this.seen.push(value);
    return value;
  }
  async found(): Promise<Set<string>> {
    return new Set(['a']);
  }
  async refuse(): Promise<never> {
    throw new DomainError('SOLD_OUT', 'sold out', { remaining: 0 }, 2);
  }
  async fail(): Promise<never> {
    throw new TypeError('boom');
  }
}

describe('the JSON hop', () => {
  it('hands the callee a copy of plain data, and the caller a copy of the result', async () => {
    const client = new Client();
    const hopped = overJson(client, 'client');
    const sent = { a: [1, 'two', null, { b: true }] };
    const got = await hopped.echo(sent);
    expect(got).toEqual(sent);
    expect(client.seen[0]).toEqual(sent);
    expect(client.seen[0]).not.toBe(sent);
    expect(got).not.toBe(sent);
  });

  it('refuses what JSON would drop or flatten: a function, a Date, a Set', async () => {
    const hopped = overJson(new Client(), 'client');
    await expect(hopped.echo({ along: () => true })).rejects.toThrow(/client\.echo argument 0\.along is a function/);
    await expect(hopped.echo(new Date())).rejects.toThrow(/is a Date/);
    await expect(hopped.found()).rejects.toThrow(/client\.found's result is a Set/);
  });

  it('carries a DomainError with its code, extras and Retry-After, and any other error as its message', async () => {
    const hopped = overJson(new Client(), 'client');
    const refused = await hopped.refuse().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(DomainError);
    expect(refused).toMatchObject({ code: 'SOLD_OUT', status: 409, message: 'sold out', extras: { remaining: 0 }, retryAfterSeconds: 2 });
    const failed = await hopped.fail().catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(Error);
    expect(failed).not.toBeInstanceOf(DomainError);
    expect((failed as Error).message).toBe('boom');
  });
});
