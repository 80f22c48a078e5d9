/** Users' response schemas, as registered with `app.addSchema` (OpenAPI `components.schemas`). */
import { dateTime, objectSchema, uuid } from '../http/schemas.js';
import type { AccessToken, IssuedUser, User } from './users.client.js';

export const userSchema = objectSchema<User>('User', 'A buyer and their balance', {
  id: uuid,
  name: { type: 'string' },
  balanceCents: { type: 'integer', minimum: 0 },
  createdAt: dateTime,
});

const accessTokenFields = {
  token: { type: 'string', description: 'The access token: send as `Authorization: Bearer <token>`' },
  expiresAt: { ...dateTime, description: 'When the access token stops being accepted (`TOKEN_EXPIRED`); get the next at `POST /v1/tokens`' },
} as const;

export const accessTokenSchema = objectSchema<AccessToken>('AccessToken', 'An access token and its expiry', accessTokenFields);

export const issuedUserSchema = objectSchema<IssuedUser>(
  'IssuedUser',
  'A new buyer, an access token that signs in as them, and the refresh token that gets the next ones',
  {
    id: uuid,
    ...accessTokenFields,
    refreshToken: {
      type: 'string',
      description: 'Exchanged at `POST /v1/tokens` for a fresh access token, for as long as the session lasts. Keep it secret: it is the account',
    },
  },
);

export const usersSchemas = [userSchema, accessTokenSchema, issuedUserSchema] as const;
