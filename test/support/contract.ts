/**
 * Holds a server to its OpenAPI document: records what each route answered (status, and a
 * problem's `code`) and names every answer the document does not list. Every test server keeps
 * such a log and checks it when it stops (support/server.ts), so each test file that drives a
 * route also checks the contract of what it provoked.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PROBLEM_MEDIA_TYPE } from '../../src/http/response-schemas.js';

/** The parts of an OpenAPI 3 document the check reads. */
export interface OpenApiDocument {
  readonly openapi: string;
  readonly paths: Readonly<Record<string, Readonly<Record<string, Operation>>>>;
  readonly components?: { readonly schemas?: Readonly<Record<string, SchemaObject>> };
}

export interface Operation {
  readonly responses: Readonly<Record<string, Response>>;
  readonly parameters?: readonly unknown[];
  readonly requestBody?: unknown;
  readonly security?: readonly unknown[];
}

export interface Response {
  readonly description: string;
  readonly headers?: Readonly<Record<string, unknown>>;
  readonly content?: Readonly<Record<string, { readonly schema?: SchemaObject }>>;
}

export interface SchemaObject {
  readonly $ref?: string;
  readonly allOf?: readonly SchemaObject[];
  readonly properties?: Readonly<Record<string, SchemaObject>>;
  readonly enum?: readonly unknown[];
  readonly [keyword: string]: unknown;
}

/** `/v1/orders/:id` → `/v1/orders/{id}`, as the document names paths. */
export function openApiPath(route: string): string {
  return route.replace(/:(\w+)/g, '{$1}');
}

/**
 * The codes a problem response lists for its status (its `allOf` narrows `Problem`'s `code`), or
 * `undefined` when it takes any code.
 */
export function documentedCodes(response: Response): readonly string[] | undefined {
  const schema = response.content?.[PROBLEM_MEDIA_TYPE]?.schema;
  for (const part of schema?.allOf ?? []) {
    const codes = part.properties?.['code']?.enum;
    if (codes) return codes.map(String);
  }
  return undefined;
}

const PROBLEM_CODE = /"code":"([A-Z_]+)"/;

/**
 * One line per distinct answer: `post /v1/purchases 409 SOLD_OUT`, `get /healthz 200`; an error
 * status whose body is not a problem with a `code` ends in `?`, which no document lists.
 */
export class AnswerLog {
  private readonly seen = new Set<string>();

  /** For `StartOptions.observe`: a Set insertion per answer, cheap enough for the storms. */
  record(request: FastifyRequest, reply: FastifyReply, payload: unknown): void {
    const route = request.routeOptions.url;
    // No route (404 NOT_FOUND) or one left out of the document on purpose (/docs itself).
    if (route === undefined || request.routeOptions.schema?.hide === true) return;
    const status = reply.statusCode;
    const code = status < 400 ? undefined : ((typeof payload === 'string' ? PROBLEM_CODE.exec(payload)?.[1] : undefined) ?? '?');
    this.seen.add(`${request.method.toLowerCase()} ${openApiPath(route)} ${status}${code === undefined ? '' : ` ${code}`}`);
  }

  /** Every distinct answer so far. */
  answers(): string[] {
    return [...this.seen].sort();
  }

  /** The answers `document` does not list: an undocumented operation, status or problem code. */
  undocumented(document: OpenApiDocument): string[] {
    return this.answers().filter((answer) => {
      const [method = '', path = '', status = '', code] = answer.split(' ');
      const response = document.paths[path]?.[method]?.responses[status];
      if (response === undefined) return true;
      if (code === undefined) return false;
      if (code === '?') return true;
      const codes = documentedCodes(response);
      return codes !== undefined && !codes.includes(code);
    });
  }
}
