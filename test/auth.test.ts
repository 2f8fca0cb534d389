// Token verification with real keys: the legacy HS256 secret, and ES256/RS256 keys served
// as a JWKS by a real local HTTP server, the way Supabase publishes them.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { bearerToken, createTokenVerifier, JWKS_MIN_REFRESH_MS, JWKS_TTL_MS, MAX_TOKEN_BYTES, type TokenVerifier } from '../src/http/auth.ts';
import type { AuthConfig } from '../src/config/config.ts';
import { ForbiddenError, UnauthorizedError } from '../src/core/errors.ts';

const secret = 'a-test-secret-of-some-length-0123456789';
const issuer = 'https://abcd.supabase.co/auth/v1';
const userId = '6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b';
const nowSeconds = () => Math.floor(Date.now() / 1000);

interface SigningKey {
  kid: string;
  alg: 'ES256' | 'RS256';
  privateKey: KeyObject;
  publicJwk: Record<string, unknown>;
}

function signingKey(kid: string, alg: 'ES256' | 'RS256'): SigningKey {
  const { privateKey, publicKey } =
    alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { kid, alg, privateKey, publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' } };
}

const es256 = signingKey('es-key-1', 'ES256');
const rs256 = signingKey('rs-key-1', 'RS256');
const rotated = signingKey('es-key-2', 'ES256');

function claims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { sub: userId, email: 'ada@example.com', aud: 'authenticated', role: 'authenticated', iss: issuer, exp: nowSeconds() + 60, ...extra };
}

function hs256(extra: Record<string, unknown> = {}, options: jwt.SignOptions = {}, key = secret): string {
  return jwt.sign(claims(extra), key, { algorithm: 'HS256', ...options });
}

function asymmetric(key: SigningKey, extra: Record<string, unknown> = {}): string {
  return jwt.sign(claims(extra), key.privateKey, { algorithm: key.alg, keyid: key.kid });
}

// The JWKS endpoint: a real server whose key set and behaviour each test sets.
let published: Record<string, unknown>[] = [];
let mode: 'ok' | 'down' | 'hang' = 'ok';
let hits = 0;
let server: http.Server;
let jwksUrl: URL;

beforeAll(async () => {
  server = http.createServer((_req, res) => {
    hits += 1;
    if (mode === 'hang') return; // never answers
    if (mode === 'down') {
      res.writeHead(503).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: published }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  jwksUrl = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/auth/v1/.well-known/jwks.json`);
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  published = [es256.publicJwk, rs256.publicJwk];
  mode = 'ok';
  hits = 0;
});

let clock = 1_000_000_000_000;
function verifier(config: Partial<AuthConfig> = {}): TokenVerifier {
  clock = 1_000_000_000_000;
  return createTokenVerifier({ jwtSecret: secret, issuer, jwksUrl, ...config }, { now: () => clock });
}

async function rejection(v: TokenVerifier, token: string): Promise<Error> {
  try {
    await v.verify(token);
  } catch (error) {
    if (error instanceof Error) return error;
  }
  throw new Error('token was accepted');
}

describe('bearerToken', () => {
  it('takes exactly "Bearer <jwt>"', () => {
    expect(bearerToken('Bearer a.b.c')).toBe('a.b.c');
    for (const header of [null, '', 'bearer a.b.c', 'Bearer  a.b.c', 'Bearer a.b', 'Token a.b.c', 'Bearer a.b.c extra', `Bearer a.b.${'c'.repeat(MAX_TOKEN_BYTES)}`]) {
      expect(() => bearerToken(header)).toThrow(UnauthorizedError);
    }
  });
});

describe('HS256 with the legacy secret', () => {
  it('accepts a Supabase access token and reads the user, without fetching keys', async () => {
    expect(await verifier().verify(hs256())).toEqual({ id: userId, email: 'ada@example.com' });
    expect(hits).toBe(0);
  });

  it('keeps working when the JWKS is empty', async () => {
    published = [];
    expect((await verifier().verify(hs256())).id).toBe(userId);
  });

  it('is refused when the project has no legacy secret', async () => {
    expect(await rejection(verifier({ jwtSecret: undefined }), hs256())).toBeInstanceOf(UnauthorizedError);
  });
});

describe('ES256 and RS256 from the JWKS', () => {
  it('accepts tokens signed by either published key', async () => {
    const v = verifier();
    expect((await v.verify(asymmetric(es256))).id).toBe(userId);
    expect((await v.verify(asymmetric(rs256))).id).toBe(userId);
    expect(hits).toBe(1); // one fetch serves both
  });

  it('a rotated-in key is found by fetching again, at most once a minute', async () => {
    const v = verifier();
    expect((await v.verify(asymmetric(es256))).id).toBe(userId);
    published = [es256.publicJwk, rotated.publicJwk];

    // Within the minute: no second fetch, however many unknown kids arrive.
    for (let i = 0; i < 5; i += 1) await rejection(v, asymmetric(rotated));
    expect(hits).toBe(1);

    clock += JWKS_MIN_REFRESH_MS;
    expect((await v.verify(asymmetric(rotated))).id).toBe(userId);
    expect((await v.verify(asymmetric(es256))).id).toBe(userId); // the old key still works
    expect(hits).toBe(2);
  });

  it('an outage of the JWKS endpoint logs nobody out', async () => {
    const v = verifier();
    await v.verify(asymmetric(es256));
    mode = 'down';
    clock += JWKS_TTL_MS + 1;
    expect((await v.verify(asymmetric(es256))).id).toBe(userId);
    expect(hits).toBe(2);
  });

  it('a key removed from the set (revoked) stops working after the next fetch', async () => {
    const v = verifier();
    await v.verify(asymmetric(es256));
    published = [rs256.publicJwk];
    clock += JWKS_TTL_MS + 1;
    expect(await rejection(v, asymmetric(es256))).toBeInstanceOf(UnauthorizedError);
  });

  it('gives up on a JWKS endpoint that does not answer, within its timeout', async () => {
    mode = 'hang';
    const started = performance.now();
    expect(await rejection(verifier(), asymmetric(es256))).toBeInstanceOf(UnauthorizedError);
    expect(performance.now() - started).toBeLessThan(4_000);
  });

  it('refuses a key of the wrong type for the algorithm', async () => {
    // An ES256 header naming the RSA key's kid.
    const token = jwt.sign(claims(), es256.privateKey, { algorithm: 'ES256', keyid: rs256.kid });
    expect(await rejection(verifier(), token)).toBeInstanceOf(UnauthorizedError);
  });

  it('follows no redirect: keys served by another host after a 302 are never trusted', async () => {
    // The other host publishes an attacker's key; the project's URL redirects to it.
    const attacker = signingKey('attacker-key', 'ES256');
    const elsewhere = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [attacker.publicJwk] }));
    });
    await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve));
    const redirecting = http.createServer((_req, res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}/jwks.json` }).end();
    });
    await new Promise<void>((resolve) => redirecting.listen(0, '127.0.0.1', resolve));
    try {
      const v = verifier({ jwksUrl: new URL(`http://127.0.0.1:${(redirecting.address() as AddressInfo).port}/auth/v1/.well-known/jwks.json`) });
      expect(await rejection(v, asymmetric(attacker))).toBeInstanceOf(UnauthorizedError);
      // The same token verifies when that key is the project's own: the redirect alone refused it.
      published = [attacker.publicJwk];
      expect((await verifier().verify(asymmetric(attacker))).id).toBe(userId);
    } finally {
      for (const server of [elsewhere, redirecting]) {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    }
  });

  it('refuses an asymmetric token without a kid', async () => {
    const token = jwt.sign(claims(), es256.privateKey, { algorithm: 'ES256' });
    expect(await rejection(verifier(), token)).toBeInstanceOf(UnauthorizedError);
  });
});

describe('what is refused', () => {
  const rsaPublicPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'pem', type: 'spki' }).toString();

  it.each([
    ['an expired token', () => hs256({ exp: nowSeconds() - 10 }), 'Token expired'],
    ['a token without exp', () => {
      const { exp: _exp, ...noExp } = claims();
      return jwt.sign(noExp, secret, { algorithm: 'HS256' });
    }, 'Invalid token'],
    ['a token not yet valid', () => hs256({ nbf: nowSeconds() + 600 }), 'Invalid token'],
    ['another secret', () => hs256({}, {}, 'another-secret-another-secret-0123'), 'Invalid token'],
    ['another audience', () => hs256({ aud: 'anon' }), 'Invalid token'],
    ['another issuer', () => hs256({ iss: 'https://evil.example/auth/v1' }), 'Invalid token'],
    ['a sub that is not a user id', () => hs256({ sub: 'user_123' }), 'Invalid token'],
    ['no sub', () => hs256({ sub: undefined }), 'Invalid token'],
    ['HS512', () => hs256({}, { algorithm: 'HS512' }), 'Invalid token'],
    ['alg none', () => `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify(claims())).toString('base64url')}.`, 'Invalid token'],
    ['HS256 signed with a public key as the secret (HS/RS confusion)', () => hs256({}, { keyid: rs256.kid }, rsaPublicPem), 'Invalid token'],
    ['an RS256 header over an HMAC signature', () => {
      const [, body] = hs256().split('.');
      const header = Buffer.from(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: rs256.kid })).toString('base64url');
      return `${header}.${body}.${hs256().split('.')[2]}`;
    }, 'Invalid token'],
    ['a token over 8 KB', () => hs256({ padding: 'x'.repeat(MAX_TOKEN_BYTES) }), 'Invalid token'],
    // The project's own keys are JWTs of the same secret and audience-free; given a sub
    // and the user audience, they must still not be billed as a user.
    ['a service_role token', () => hs256({ role: 'service_role' }), 'Invalid token'],
    ['an anon token', () => hs256({ role: 'anon' }), 'Invalid token'],
    ['a token without a role', () => hs256({ role: undefined }), 'Invalid token'],
    ['garbage', () => 'not.a.token', 'Invalid token'],
  ])('refuses %s with 401', async (_name, token, message) => {
    const error = await rejection(verifier(), token());
    expect(error).toBeInstanceOf(UnauthorizedError);
    expect(error.message).toBe(message);
  });

  it('refuses anonymous users with 403', async () => {
    const error = await rejection(verifier(), hs256({ is_anonymous: true }));
    expect(error).toBeInstanceOf(ForbiddenError);
    expect(await rejection(verifier(), asymmetric(es256, { is_anonymous: true }))).toBeInstanceOf(ForbiddenError);
  });
});
