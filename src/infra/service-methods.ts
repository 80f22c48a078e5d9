/**
 * How each method of a module's client crosses a process boundary: whether it changes anything
 * (a write, whose lost answer is `OUTCOME_UNKNOWN`) or only reads (whose lost answer is
 * `STORE_UNAVAILABLE`: retrying it is safe), and which order it may change. One table per client,
 * shared by the caller (`service-client.ts`) and the callee (`service-routes.ts`): a method not in
 * it is not served.
 */

export type MethodKind = 'read' | 'write';

export interface MethodSpec {
  readonly kind: MethodKind;
  /** The order a write may have changed, from its arguments (named in its `OUTCOME_UNKNOWN`). */
  readonly orderId?: (args: readonly unknown[]) => string | undefined;
}

/** Every method of client `T`, each with how it crosses. */
export type ServiceMethods<T> = { readonly [K in keyof T]: MethodSpec };

/** The shortest service token an install may use: a guess of it is as hard as one of a 256-bit key's hex. */
export const SERVICE_TOKEN_MIN_LENGTH = 32;

/** The header a call's deadline travels in: ms since the epoch, past which the callee does not start. */
export const DEADLINE_HEADER = 'x-flashsale-deadline';

/** The path of a service's internal routes (a `GET` of it: whether the service can serve). */
export function servicePath(service: string): string {
  return `/internal/${service}`;
}

/** The path of a method of a service's internal routes. */
export function methodPath(service: string, method: string): string {
  return `${servicePath(service)}/${method}`;
}

export function assertServiceToken(token: string): void {
  if (token.length < SERVICE_TOKEN_MIN_LENGTH) {
    throw new Error(`a service token must be at least ${SERVICE_TOKEN_MIN_LENGTH} characters, got ${token.length}`);
  }
}
