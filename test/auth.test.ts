import jwt from 'jsonwebtoken';
import { describe, expect, it } from 'vitest';
import { bearerToken, verifyAccessToken } from '../src/auth.ts';
import { UnauthorizedError } from '../src/errors.ts';

const config = { jwtSecret: 'a-test-secret-of-some-length-0123456789', issuer: 'https://abcd.supabase.co/auth/v1' };
const userId = '6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b';
const now = () => Math.floor(Date.now() / 1000);

function sign(claims: Record<string, unknown>, options: jwt.SignOptions = {}, secret = config.jwtSecret): string {
  return jwt.sign(
    { sub: userId, email: 'ada@example.com', aud: 'authenticated', role: 'authenticated', iss: config.issuer, exp: now() + 60, ...claims },
    secret,
    { algorithm: 'HS256', ...options },
  );
}

function rejects(token: string): string {
  try {
    verifyAccessToken(token, config);
  } catch (error) {
    expect(error).toBeInstanceOf(UnauthorizedError);
    return (error as UnauthorizedError).message;
  }
  throw new Error('token was accepted');
}

describe('bearerToken', () => {
  it('takes exactly "Bearer <jwt>"', () => {
    expect(bearerToken('Bearer a.b.c')).toBe('a.b.c');
    for (const header of [null, '', 'bearer a.b.c', 'Bearer  a.b.c', 'Bearer a.b', 'Token a.b.c', 'Bearer a.b.c extra']) {
      expect(() => bearerToken(header)).toThrow(UnauthorizedError);
    }
  });
});

describe('verifyAccessToken', () => {
  it('accepts a Supabase access token and reads the user', () => {
    expect(verifyAccessToken(sign({}), config)).toEqual({ id: userId, email: 'ada@example.com' });
  });

  it('rejects an expired token', () => {
    expect(rejects(sign({ exp: now() - 10 }))).toBe('Token expired');
  });

  it('rejects a token without exp', () => {
    const token = jwt.sign({ sub: userId, aud: 'authenticated', iss: config.issuer }, config.jwtSecret, { algorithm: 'HS256' });
    rejects(token);
  });

  it.each([
    ['another secret', sign({}, {}, 'another-secret-another-secret-0123')],
    ['another audience', sign({ aud: 'anon' })],
    ['another issuer', sign({ iss: 'https://evil.example/auth/v1' })],
    ['a sub that is not a user id', sign({ sub: 'user_123' })],
    ['no sub', sign({ sub: undefined })],
    ['HS512', sign({}, { algorithm: 'HS512' })],
    ['alg none', `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: userId, aud: 'authenticated', iss: config.issuer, exp: now() + 60 })).toString('base64url')}.`],
    ['a token not yet valid', sign({ nbf: now() + 600 })],
  ])('rejects %s', (_name, token) => {
    rejects(token);
  });
});
