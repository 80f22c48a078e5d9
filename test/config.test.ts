import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

describe('configuration', () => {
  it('has working defaults with nothing set', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ port: 3000, host: '127.0.0.1', strategy: 'atomic', databaseUrl: undefined });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('names every bad variable at once', () => {
    let error: unknown;
    try {
      loadConfig({ PORT: 'eighty', STRATEGY: 'yolo', DATABASE_URL: 'mysql://x', ADMIN_TOKEN: 'short', HOLD_SECONDS: '0' });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    for (const name of ['PORT', 'STRATEGY', 'DATABASE_URL', 'ADMIN_TOKEN', 'HOLD_SECONDS']) expect(message).toContain(name);
  });

  it('splits users off only with a service token of 32 characters or more, a DATABASE_URL, and a call timeout inside the deadlines', () => {
    const token = 'a'.repeat(32);
    const db = 'postgres://postgres@127.0.0.1:5432/postgres';
    expect(loadConfig({ SERVICE: 'users', SERVICE_TOKEN: token, DATABASE_URL: db })).toMatchObject({ service: 'users', internalPort: 3_100, internalHost: '127.0.0.1' });
    expect(() => loadConfig({ SERVICE: 'users', DATABASE_URL: db })).toThrow(/SERVICE_TOKEN/);
    expect(() => loadConfig({ SERVICE: 'users', SERVICE_TOKEN: 'short', DATABASE_URL: db })).toThrow(/SERVICE_TOKEN must be at least 32/);
    expect(() => loadConfig({ USERS_URL: 'http://127.0.0.1:3101', SERVICE_TOKEN: token })).toThrow(/DATABASE_URL/);
    expect(() => loadConfig({ SERVICE: 'inventory', SERVICE_TOKEN: token, DATABASE_URL: db })).toThrow(/SERVICE/);
    expect(() => loadConfig({ USERS_URL: 'http://127.0.0.1:3101', SERVICE_TOKEN: token, DATABASE_URL: db, SERVICE_CALL_TIMEOUT_MS: '4000' })).toThrow(
      /SERVICE_CALL_TIMEOUT_MS .* above QUEUE_WAIT_MS/,
    );
    expect(() => loadConfig({ USERS_URL: 'ftp://x', SERVICE_TOKEN: token, DATABASE_URL: db })).toThrow(/USERS_URL/);
  });

  it('bounds how long a connection may take to send a request or sit idle', () => {
    expect(loadConfig({})).toMatchObject({ headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, keepAliveTimeoutMs: 5_000 });
    expect(() => loadConfig({ HEADERS_TIMEOUT_MS: '20000', REQUEST_TIMEOUT_MS: '10000' })).toThrow(/REQUEST_TIMEOUT_MS .* at least HEADERS_TIMEOUT_MS/);
    expect(() => loadConfig({ KEEP_ALIVE_TIMEOUT_MS: '0' })).toThrow(/KEEP_ALIVE_TIMEOUT_MS/);
  });
});
