/** JSON-schema pieces shared by the route schemas. */
import { CANONICAL_ID_PATTERN } from '../infra/canonical-id.js';

/** A UUID as a client may send it: hyphenated, in any case (RFC 9562 reads UUIDs case-insensitively). */
export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

/**
 * The keyword that lower-cases an id in the request as it is validated (registered on Fastify's
 * Ajv by {@link canonicalIds}), so every handler and layer below sees one spelling of it.
 */
export const CANONICAL_ID_KEYWORD = 'x-canonical-id';

/** An id as the API answers it: a lower-case UUID (`infra/canonical-id.ts`). */
export const uuid = { type: 'string', pattern: CANONICAL_ID_PATTERN } as const;

/**
 * An id as a request may carry it (body, path, query): a UUID in any case, lower-cased on the way
 * in. Braces, `urn:uuid:` and unhyphenated forms are refused.
 */
export const uuidInput = { type: 'string', pattern: UUID_PATTERN, [CANONICAL_ID_KEYWORD]: true } as const;

export const idParams = {
  type: 'object',
  required: ['id'],
  additionalProperties: false,
  properties: { id: uuidInput },
} as const;

/** The part of Ajv's keyword API {@link canonicalIds} uses (Fastify's compiler hands over its Ajv). */
interface KeywordHost {
  addKeyword(definition: {
    keyword: string;
    type: 'string';
    schema: false;
    modifying: true;
    errors: false;
    validate: (data: string, context?: { parentData: unknown; parentDataProperty: string | number }) => boolean;
  }): unknown;
}

/**
 * An Ajv plugin (Fastify's `ajv.plugins`) defining {@link CANONICAL_ID_KEYWORD}: the value is
 * replaced, in the object or array that holds it, by its lower-case form. It never refuses: the
 * pattern beside it does.
 */
export function canonicalIds<A extends KeywordHost>(ajv: A): A {
  ajv.addKeyword({
    keyword: CANONICAL_ID_KEYWORD,
    type: 'string',
    schema: false,
    modifying: true,
    errors: false,
    validate: (data, context) => {
      const holder = context?.parentData as Record<string | number, unknown> | undefined;
      if (holder !== undefined && typeof holder === 'object') holder[context?.parentDataProperty ?? ''] = data.toLowerCase();
      return true;
    },
  });
  return ajv;
}

/** An ISO 8601 instant with a time zone ("2026-11-21T10:00:00Z"). */
export const instant = {
  type: 'string',
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,9})?)?(Z|[+-]\\d{2}:\\d{2})$',
  maxLength: 40,
} as const;

export const bearerSecurity = [{ bearer: [] }];

/** An instant as the API answers it: UTC, milliseconds ("2026-11-21T10:00:00.000Z"). */
export const dateTime = { type: 'string', format: 'date-time' } as const;

/** A reference to a schema registered with `app.addSchema` (it lands in `components.schemas`). */
export function ref<Id extends string>(id: Id): { readonly $ref: `${Id}#` } {
  return { $ref: `${id}#` };
}

/** The values of a string union as an `enum`, listed as a record so that none is missed or made up. */
export function enumOf<T extends string>(values: Readonly<Record<T, true>>): T[] {
  return Object.keys(values) as T[];
}

/** One schema per field of `T`, no field left out and none added. */
export type PropertiesOf<T> = { readonly [K in keyof T]-?: object };

/** A shared response schema: an object whose fields are all required. */
export interface ObjectSchema {
  readonly $id: string;
  readonly type: 'object';
  readonly description: string;
  readonly required: readonly string[];
  readonly properties: Readonly<Record<string, object>>;
}

/**
 * The response schema of `T`, to register with `app.addSchema`.
 *
 * @remarks A response schema is also the serializer's field list: a field it does not name is
 * dropped from the answer. Typing `properties` by `T` makes a field added to the type and not to
 * its schema a compile error rather than a field that silently vanishes from the API.
 */
export function objectSchema<T>(id: string, description: string, properties: PropertiesOf<T>): ObjectSchema {
  return { $id: id, type: 'object', description, required: Object.keys(properties), properties };
}
