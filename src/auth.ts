// Verifies a Supabase access token and says who the user is. Knows nothing of HTTP:
// the caller hands in the token string from `Authorization: Bearer <token>`.

import jwt from 'jsonwebtoken';
import type { AuthConfig } from './config.ts';
import { UnauthorizedError } from './errors.ts';

export interface AuthUser {
  /** Supabase auth user id (the token's `sub`, a UUID). */
  id: string;
  email: string | undefined;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const BEARER = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/;

/** The token of an `Authorization: Bearer <token>` header, exactly that form, or a 401. */
export function bearerToken(authorization: string | null): string {
  if (!authorization) throw new UnauthorizedError('Missing bearer token');
  const match = BEARER.exec(authorization);
  if (!match?.[1]) throw new UnauthorizedError('Invalid authorization header');
  return match[1];
}

export function verifyAccessToken(token: string, config: AuthConfig): AuthUser {
  let claims: jwt.JwtPayload | string;
  try {
    claims = jwt.verify(token, config.jwtSecret, {
      algorithms: ['HS256'],
      audience: 'authenticated',
      issuer: config.issuer,
    });
  } catch (error) {
    throw new UnauthorizedError(error instanceof jwt.TokenExpiredError ? 'Token expired' : 'Invalid token');
  }
  if (typeof claims === 'string') throw new UnauthorizedError('Invalid token');
  // jsonwebtoken accepts tokens without `exp`; a session token without one never ends.
  if (typeof claims.exp !== 'number') throw new UnauthorizedError('Invalid token');
  if (typeof claims.sub !== 'string' || !UUID.test(claims.sub)) throw new UnauthorizedError('Invalid token');
  const email: unknown = claims['email'];
  return { id: claims.sub.toLowerCase(), email: typeof email === 'string' && email !== '' ? email : undefined };
}
