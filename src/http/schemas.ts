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

/**
 * The keyword that refuses an instant the calendar does not have (registered by
 * {@link calendarInstants}): 30 February, hour 24, year 0. The pattern alone lets them through,
 * and `Date` or PostgreSQL would then move one to another day or refuse it with a 500.
 */
export const CALENDAR_INSTANT_KEYWORD = 'x-calendar-instant';

/** An ISO 8601 instant with a time zone ("2026-11-21T10:00:00Z"), on a day the calendar has. */
export const instant = {
  type: 'string',
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,9})?)?(Z|[+-]\\d{2}:\\d{2})$',
  maxLength: 40,
  [CALENDAR_INSTANT_KEYWORD]: true,
} as const;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] as const;

const INSTANT_PARTS = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?(?:Z|[+-](\d{2}):(\d{2}))$/;

/** Whether `text` (already matching {@link instant}'s pattern) names a moment the calendar has, in years 1 to 9999. */
export function isCalendarInstant(text: string): boolean {
  const parts = INSTANT_PARTS.exec(text);
  if (parts === null) return true; // the pattern beside the keyword refuses it
  const [year, month, day, hour, minute, second, offsetHours, offsetMinutes] = parts
    .slice(1)
    .map((part) => (part === undefined ? 0 : Number(part))) as [number, number, number, number, number, number, number, number];
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const lastDay = month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] ?? 0);
  return day <= lastDay && hour <= 23 && minute <= 59 && second <= 59 && offsetHours <= 23 && offsetMinutes <= 59;
}

/** The part of Ajv's keyword API {@link calendarInstants} uses. */
interface CheckingKeywordHost {
  addKeyword(definition: { keyword: string; type: 'string'; schema: false; errors: false; validate: (data: string) => boolean }): unknown;
}

/** An Ajv plugin defining {@link CALENDAR_INSTANT_KEYWORD} (its error: `must pass "x-calendar-instant" keyword validation`). */
export function calendarInstants<A extends CheckingKeywordHost>(ajv: A): A {
  ajv.addKeyword({ keyword: CALENDAR_INSTANT_KEYWORD, type: 'string', schema: false, errors: false, validate: isCalendarInstant });
  return ajv;
}

/** A string with no NUL character: PostgreSQL's text cannot hold one, and would answer a 500. */
export const NO_NUL_PATTERN = '^[^\\u0000]*$';

/** Free text a client sends (a name): at most `maxLength` characters, no NUL. */
export function text(minLength: number, maxLength: number): { type: 'string'; minLength: number; maxLength: number; pattern: string } {
  return { type: 'string', minLength, maxLength, pattern: NO_NUL_PATTERN };
}

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
