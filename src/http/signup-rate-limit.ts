/**
 * The sign-up rate limit: at most `perMinute` sign-up requests (`POST /v1/users`) from one client
 * address in each wall-clock minute, beyond which the client gets `429 SIGNUP_RATE_LIMITED` with
 * `Retry-After` (the seconds left in the minute) and no user is made. Accounts cost nothing to
 * make, so without it the per-buyer limit would be a per-script-iteration limit.
 *
 * An IPv4 address counts alone; an IPv6 address counts by its /64, the block one subscriber is
 * given (one host picks among 2^64 addresses of it at will); an IPv4-mapped IPv6 address
 * (`::ffff:192.0.2.1`) counts as its IPv4 address. The client address is the socket's, unless
 * `trustedProxyHeader` names the header a reverse proxy in front of the server writes it to: then
 * the header's LAST comma-separated entry is used, the one the proxy nearest the server appended
 * (`X-Forwarded-For: <what the client claimed>, <what the proxy saw>`). The entries before it
 * were written by whoever sent the request and prove nothing. A request without the header, or
 * whose last entry is not an address, counts under its socket address.
 *
 * @remarks Only sign-ups: purchases are limited per buyer (`rate-limit.ts`), never per address, as a
 * venue may share one; and `POST /v1/tokens` is not limited, since its credential is 256 random
 * bits (guessing is hopeless) and a venue's buyers all refresh within each token lifetime. A fixed
 * one-minute window in this process's memory: the whole map is dropped when the minute changes,
 * so it never holds more than the addresses of one minute and needs no timer. With several API
 * processes each counts its own share (counting across processes in Redis is a later step).
 * Runs as an `onRequest` hook, before the body is read.
 */
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import ipaddr from 'ipaddr.js';
import { DomainError } from '../infra/errors.js';

const MINUTE_MS = 60_000;

export interface SignupRateLimitOptions {
  /** Sign-ups per address per minute; 0: no limit (no hook at all). */
  readonly perMinute: number;
  /** Lower-case name of the header a trusted proxy writes the client address to; `undefined`: the socket's. */
  readonly trustedProxyHeader?: string | undefined;
  readonly now?: () => number;
}

/** `[v6]:port` and `v4:port`, as some proxies write an address with the port it came from. */
const WITH_PORT = /^\[([^\]]+)\](?::\d+)?$|^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/;

/**
 * The key an address is counted under: an IPv4 address as itself, an IPv6 address as its /64, an
 * IPv4-mapped IPv6 address as its IPv4 address; `undefined` when it is not an address.
 */
export function addressGroup(address: string): string | undefined {
  const bare = WITH_PORT.exec(address);
  const text = bare ? (bare[1] ?? bare[2] ?? address) : address;
  if (!ipaddr.isValid(text)) return undefined;
  const parsed = ipaddr.process(text);
  if (parsed.kind() === 'ipv4') return parsed.toString();
  const parts = (parsed as ipaddr.IPv6).parts.slice(0, 4);
  return `${parts.map((part) => part.toString(16)).join(':')}::/64`;
}

/** The address a request counts under (see the file's summary for which hop is trusted). */
export function clientGroup(request: FastifyRequest, trustedProxyHeader: string | undefined): string {
  if (trustedProxyHeader !== undefined) {
    const header = request.headers[trustedProxyHeader];
    // Repeated headers arrive joined with ", " (or as an array): the last entry is the nearest proxy's.
    const joined = Array.isArray(header) ? header.join(',') : header;
    const last = joined?.split(',').pop()?.trim();
    const group = last === undefined || last === '' ? undefined : addressGroup(last);
    if (group !== undefined) return group;
  }
  return addressGroup(request.ip) ?? request.ip;
}

export function signupRateLimit(options: SignupRateLimitOptions): onRequestHookHandler | undefined {
  const { perMinute, trustedProxyHeader } = options;
  if (perMinute <= 0) return undefined;
  const now = options.now ?? Date.now;
  let window = -1;
  const counts = new Map<string, number>();
  return (request: FastifyRequest, _reply: FastifyReply, done) => {
    const at = now();
    const minute = Math.floor(at / MINUTE_MS);
    if (minute !== window) {
      window = minute;
      counts.clear();
    }
    const group = clientGroup(request, trustedProxyHeader);
    const used = (counts.get(group) ?? 0) + 1;
    counts.set(group, used);
    if (used > perMinute) {
      const retryAfterSeconds = Math.max(1, Math.ceil(((minute + 1) * MINUTE_MS - at) / 1000));
      throw new DomainError('SIGNUP_RATE_LIMITED', `at most ${perMinute} sign-ups per minute from one address`, { limit: perMinute }, retryAfterSeconds);
    }
    done();
  };
}
