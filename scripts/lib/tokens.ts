// Mints access tokens shaped like the ones Supabase Auth issues, for local use and tests.

import { createHash, randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';

export interface TokenClaims {
  sub: string;
  email?: string;
  /** Seconds until expiry; default one hour, like Supabase. */
  expiresIn?: number;
  secret: string;
  /** `<SUPABASE_URL>/auth/v1` */
  issuer: string;
  extra?: Record<string, unknown>;
}

export function mintAccessToken(claims: TokenClaims): string {
  const now = Math.floor(Date.now() / 1000);
  return jwt.sign(
    {
      aud: 'authenticated',
      role: 'authenticated',
      sub: claims.sub,
      email: claims.email ?? '',
      phone: '',
      app_metadata: { provider: 'email', providers: ['email'] },
      user_metadata: {},
      aal: 'aal1',
      amr: [{ method: 'password', timestamp: now }],
      session_id: randomUUID(),
      is_anonymous: false,
      iat: now,
      exp: now + (claims.expiresIn ?? 3600),
      ...claims.extra,
    },
    claims.secret,
    { algorithm: 'HS256', issuer: claims.issuer, header: { alg: 'HS256', typ: 'JWT' } },
  );
}

export function issuerFor(supabaseUrl: string): string {
  return new URL('auth/v1', supabaseUrl.endsWith('/') ? supabaseUrl : `${supabaseUrl}/`).href;
}

/** A service_role key like the Supabase CLI's local one: HS256, valid for ten years. */
export function serviceRoleKey(secret: string): string {
  const iat = Math.floor(Date.now() / 1000);
  return jwt.sign({ role: 'service_role', iss: 'supabase-demo', iat, exp: iat + 10 * 365 * 24 * 3600 }, secret, { algorithm: 'HS256' });
}

/** Test users are named by email: the same email is the same user, run after run. */
const LOCAL_USER_NAMESPACE = '6f1c5d2e-3b7a-4c8e-9d0f-1a2b3c4d5e6f';

/** The user id of a local test user: a name-based UUID (version 5) of the email. */
export function localUserId(email: string): string {
  const bytes = createHash('sha1')
    .update(Buffer.from(LOCAL_USER_NAMESPACE.replaceAll('-', ''), 'hex'))
    .update(email.trim().toLowerCase())
    .digest()
    .subarray(0, 16);
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x50;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
