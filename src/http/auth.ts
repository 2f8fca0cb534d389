// Verifies a Supabase access token and says who the user is. Knows nothing of HTTP:
// the caller hands in the token string from `Authorization: Bearer <token>`.
//
// Supabase signs access tokens either with the project's shared secret (HS256, the
// legacy SUPABASE_JWT_SECRET) or with an asymmetric key (ES256 or RS256) published at
// <SUPABASE_URL>/auth/v1/.well-known/jwks.json. Both are accepted; each algorithm is
// verified only with its own kind of key, so no token can choose how it is checked.

import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { AuthConfig } from '../config/config.ts';
import { ForbiddenError, UnauthorizedError } from '../core/errors.ts';

export interface AuthUser {
  /** Supabase auth user id (the token's `sub`, a UUID). */
  id: string;
  email: string | undefined;
}

export interface TokenVerifier {
  verify(token: string): Promise<AuthUser>;
}

/** Larger than any access token Supabase issues; bigger ones are refused unread. */
export const MAX_TOKEN_BYTES = 8 * 1024;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const BEARER = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/;

/** The token of an `Authorization: Bearer <token>` header, exactly that form, or a 401. */
export function bearerToken(authorization: string | null): string {
  if (!authorization) throw new UnauthorizedError('Missing bearer token');
  if (authorization.length > MAX_TOKEN_BYTES + 'Bearer '.length) throw new UnauthorizedError('Invalid token');
  const match = BEARER.exec(authorization);
  if (!match?.[1]) throw new UnauthorizedError('Invalid authorization header');
  return match[1];
}

type AsymmetricAlgorithm = 'ES256' | 'RS256';

/** The key type (and curve) each asymmetric algorithm must be verified with. */
const KEY_TYPE: Record<AsymmetricAlgorithm, { kty: string; crv?: string }> = {
  ES256: { kty: 'EC', crv: 'P-256' },
  RS256: { kty: 'RSA' },
};

interface VerifierOptions {
  fetch?: typeof fetch;
  now?: () => number;
}

export function createTokenVerifier(config: AuthConfig, options: VerifierOptions = {}): TokenVerifier {
  const keys = createJwksCache(config.jwksUrl, options.fetch ?? fetch, options.now ?? Date.now);

  const keyFor = async (algorithm: string, kid: unknown): Promise<{ key: string | KeyObject; algorithm: jwt.Algorithm }> => {
    if (algorithm === 'HS256') {
      if (!config.jwtSecret) throw new UnauthorizedError('Invalid token');
      return { key: config.jwtSecret, algorithm: 'HS256' };
    }
    if (algorithm === 'ES256' || algorithm === 'RS256') {
      if (typeof kid !== 'string' || kid === '') throw new UnauthorizedError('Invalid token');
      const jwk = await keys.get(kid);
      if (!jwk || !fits(jwk, algorithm)) throw new UnauthorizedError('Invalid token');
      return { key: jwk.key, algorithm };
    }
    // none, HS384/512, PS*, EdDSA, …: Supabase issues none of them.
    throw new UnauthorizedError('Invalid token');
  };

  return {
    async verify(token) {
      if (token.length > MAX_TOKEN_BYTES) throw new UnauthorizedError('Invalid token');
      const decoded = jwt.decode(token, { complete: true });
      if (!decoded) throw new UnauthorizedError('Invalid token');
      const { key, algorithm } = await keyFor(decoded.header.alg, decoded.header.kid);

      let claims: jwt.JwtPayload | string;
      try {
        claims = jwt.verify(token, key, { algorithms: [algorithm], audience: 'authenticated', issuer: config.issuer });
      } catch (error) {
        throw new UnauthorizedError(error instanceof jwt.TokenExpiredError ? 'Token expired' : 'Invalid token');
      }
      if (typeof claims === 'string') throw new UnauthorizedError('Invalid token');
      // jsonwebtoken accepts tokens without `exp`; a session token without one never ends.
      if (typeof claims.exp !== 'number') throw new UnauthorizedError('Invalid token');
      if (typeof claims.sub !== 'string' || !UUID.test(claims.sub)) throw new UnauthorizedError('Invalid token');
      // A user's session says `authenticated`; the project's anon and service_role keys are
      // JWTs signed with the same secret, and are nobody to bill.
      if (claims['role'] !== 'authenticated') throw new UnauthorizedError('Invalid token');
      // Anonymous sign-ins are real sessions, but nobody to bill.
      if (claims['is_anonymous'] === true) throw new ForbiddenError('Anonymous users cannot use billing; sign in with an account');
      const email: unknown = claims['email'];
      return { id: claims.sub.toLowerCase(), email: typeof email === 'string' && email !== '' ? email : undefined };
    },
  };
}

interface PublicJwk {
  kty: string;
  crv: string | undefined;
  alg: string | undefined;
  key: KeyObject;
}

function fits(jwk: PublicJwk, algorithm: AsymmetricAlgorithm): boolean {
  const expected = KEY_TYPE[algorithm];
  return jwk.kty === expected.kty && (expected.crv === undefined || jwk.crv === expected.crv) && (jwk.alg === undefined || jwk.alg === algorithm);
}

/** How long fetched keys are used before they are fetched again. */
export const JWKS_TTL_MS = 10 * 60_000;
/** An unknown `kid` (a key rotated in) fetches the set again, at most this often. */
export const JWKS_MIN_REFRESH_MS = 60_000;
export const JWKS_TIMEOUT_MS = 3_000;

/**
 * The project's public keys by `kid`. Fetched on first use, kept for JWKS_TTL_MS,
 * fetched again early when a token names a key we do not have (a rotation), but at
 * most once a minute, so garbage `kid`s cannot make us hammer the endpoint. When a
 * fetch fails, the keys we had stay in use: an outage of the JWKS endpoint must not
 * log anybody out. A successful fetch replaces the set, so a revoked key stops working.
 */
function createJwksCache(url: URL, fetchImpl: typeof fetch, now: () => number) {
  let keys = new Map<string, PublicJwk>();
  let fetchedAt = Number.NEGATIVE_INFINITY;
  let attemptedAt = Number.NEGATIVE_INFINITY;
  let inflight: Promise<void> | undefined;

  const refresh = (): Promise<void> => {
    inflight ??= (async () => {
      attemptedAt = now();
      try {
        // No redirects: the keys that are trusted come from the project's own URL, and a
        // redirect to another host would make that host's keys sign our tokens.
        const response = await fetchImpl(url, { signal: AbortSignal.timeout(JWKS_TIMEOUT_MS), headers: { accept: 'application/json' }, redirect: 'error' });
        if (!response.ok) return;
        keys = parseJwks(await response.json());
        fetchedAt = now();
      } catch {
        // Keep what we had; the next unknown kid or expiry tries again.
      } finally {
        inflight = undefined;
      }
    })();
    return inflight;
  };

  return {
    async get(kid: string): Promise<PublicJwk | undefined> {
      const stale = now() - fetchedAt > JWKS_TTL_MS;
      const mayRefresh = now() - attemptedAt >= JWKS_MIN_REFRESH_MS;
      if ((stale || !keys.has(kid)) && mayRefresh) await refresh();
      else if (inflight) await inflight;
      return keys.get(kid);
    },
  };
}

function parseJwks(body: unknown): Map<string, PublicJwk> {
  const parsed = new Map<string, PublicJwk>();
  if (typeof body !== 'object' || body === null || !('keys' in body) || !Array.isArray(body.keys)) return parsed;
  for (const entry of body.keys as unknown[]) {
    if (typeof entry !== 'object' || entry === null) continue;
    const jwk = entry as JsonWebKey & { kid?: unknown; use?: unknown; alg?: unknown };
    if (typeof jwk.kid !== 'string' || typeof jwk.kty !== 'string') continue;
    if (jwk.use !== undefined && jwk.use !== 'sig') continue;
    // Private parts are never accepted as verification keys, even if published by mistake.
    if ('d' in jwk) continue;
    try {
      parsed.set(jwk.kid, {
        kty: jwk.kty,
        crv: typeof jwk.crv === 'string' ? jwk.crv : undefined,
        alg: typeof jwk.alg === 'string' ? jwk.alg : undefined,
        key: createPublicKey({ key: jwk, format: 'jwk' }),
      });
    } catch {
      // A key this runtime cannot read is skipped, not fatal for the others.
    }
  }
  return parsed;
}
