/**
 * A module client seen through a JSON hop: every call's arguments, its result and a thrown error
 * cross `JSON.stringify`/`JSON.parse`, as they would over HTTP. Wired in (`MODULE_HOP=json`), it
 * proves the module contracts carry plain data only: a function, a `Set`, a `Date` or any other
 * object that JSON would silently drop or flatten fails the call loudly instead.
 *
 * @remarks A `DomainError` crosses with its code, detail, extras and `Retry-After` intact (as the
 * split mode's HTTP clients will carry it); any other error arrives as a plain `Error` with its
 * message, as a 500 from another process would.
 */
import { DomainError } from './errors.js';

/** Copies `value` through JSON, refusing what JSON cannot carry faithfully. */
function overJsonValue(value: unknown, where: string): unknown {
  assertPlain(value, where);
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

/** Throws when `value` holds what JSON would drop or flatten (a function, a `Date`, a `Map`, `NaN`, …). */
export function assertPlain(value: unknown, path: string): void {
  if (value === null) return;
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`${path} is ${value}, which JSON cannot carry`);
      return;
    case 'object': {
      const prototype = Object.getPrototypeOf(value) as unknown;
      if (Array.isArray(value)) {
        value.forEach((item, index) => assertPlain(item, `${path}[${index}]`));
        return;
      }
      if (prototype !== Object.prototype && prototype !== null) {
        throw new TypeError(`${path} is a ${(value as object).constructor.name}, which JSON cannot carry`);
      }
      for (const [name, member] of Object.entries(value)) assertPlain(member, `${path}.${name}`);
      return;
    }
    case 'undefined':
      return;
    case 'bigint':
    case 'function':
    case 'symbol':
      throw new TypeError(`${path} is a ${typeof value}, which JSON cannot carry`);
  }
}

function errorOverJson(error: unknown): Error {
  if (error instanceof DomainError) {
    const carried = JSON.parse(JSON.stringify(error.toRefusal())) as ReturnType<DomainError['toRefusal']>;
    return DomainError.of(carried);
  }
  return new Error(error instanceof Error ? error.message : String(error));
}

/** `client` with every method call carried through JSON (see the file's summary). */
export function overJson<T extends object>(client: T, name: string): T {
  return new Proxy(client, {
    get(target, property, receiver) {
      const member: unknown = Reflect.get(target, property, receiver);
      if (typeof member !== 'function' || typeof property !== 'string') return member;
      const method = `${name}.${property}`;
      return async (...args: unknown[]) => {
        const sent = args.map((arg, index) => overJsonValue(arg, `${method} argument ${index}`));
        let result: unknown;
        try {
          result = await (member as (...callArgs: unknown[]) => unknown).apply(target, sent);
        } catch (error) {
          throw errorOverJson(error);
        }
        return overJsonValue(result, `${method}'s result`);
      };
    },
  });
}
