/** Users' response schemas, as registered with `app.addSchema` (OpenAPI `components.schemas`). */
import { dateTime, objectSchema, uuid } from '../http/schemas.js';
import type { IssuedUser, User } from './users.client.js';

export const userSchema = objectSchema<User>('User', 'A buyer and their balance', {
  id: uuid,
  name: { type: 'string' },
  balanceCents: { type: 'integer', minimum: 0 },
  createdAt: dateTime,
});

export const issuedUserSchema = objectSchema<IssuedUser>('IssuedUser', 'A new buyer and the bearer token that signs in as them', {
  id: uuid,
  token: { type: 'string', description: 'Send as `Authorization: Bearer <token>`' },
});

export const usersSchemas = [userSchema, issuedUserSchema] as const;
