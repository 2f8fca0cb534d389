// The local stack's stand-in for signing in: POST <SUPABASE_URL>/auth/v1/dev/token
// with {"email": "…"} answers an access token for that test user, signed like Supabase
// Auth's (scripts/lib/tokens.ts), so the example dashboard can call the billing API.
//
// It lives in the gateway, which only runs in the local stack (npm run dev, tests):
// nothing under netlify/ or src/ can mint a token, so no deploy can. The same email is
// always the same user (localUserId), so a test user survives a page reload or a
// return from Checkout by signing in again.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { issuerFor, localUserId, mintAccessToken } from '../lib/tokens.ts';

export const DEV_TOKEN_PATH = '/auth/v1/dev/token';

const EXPIRES_IN = 3600;
const MAX_BODY_BYTES = 4096;
const EMAIL = /^[^\s@]+@[^\s@]+$/;

// Any origin: the page is served by netlify dev on another port, and the token is the
// answer, not a cookie.
const CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'POST, OPTIONS',
  'access-control-allow-headers': 'Content-Type',
};

export interface DevAuthOptions {
  jwtSecret: string;
  /** SUPABASE_URL: the token's issuer is `<SUPABASE_URL>/auth/v1`, as the functions expect. */
  supabaseUrl: string;
}

export interface DevTokenResponse {
  access_token: string;
  token_type: 'bearer';
  expires_in: number;
  /** Unix seconds. */
  expires_at: number;
  user: { id: string; email: string };
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...CORS, ...headers, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/** The body as text, or undefined when it is larger than MAX_BODY_BYTES. */
export function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      // Too large: read the rest without keeping it, so the client still gets the answer.
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => resolve(size <= MAX_BODY_BYTES ? Buffer.concat(chunks).toString('utf8') : undefined));
    req.on('error', reject);
  });
}

/** An email address, trimmed, or undefined for anything else. */
export function emailOf(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const trimmed = value.trim();
  return trimmed.length <= 254 && EMAIL.test(trimmed) ? trimmed : undefined;
}

function emailOfBody(body: string | undefined): string | undefined {
  if (body === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return undefined;
  }
  return parsed !== null && typeof parsed === 'object' && 'email' in parsed ? emailOf(parsed.email) : undefined;
}

export function createDevAuth(opts: DevAuthOptions): (req: IncomingMessage, res: ServerResponse) => void {
  if (opts.jwtSecret.length < 32) throw new Error('dev auth: jwtSecret must be at least 32 characters long');
  const issuer = issuerFor(opts.supabaseUrl);

  return (req, res) => {
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...CORS, 'access-control-max-age': '600' });
      res.end();
      return;
    }
    if (req.method !== 'POST') {
      send(res, 405, { error: 'Method not allowed' }, { allow: 'POST, OPTIONS' });
      return;
    }
    readBody(req).then(
      (body) => {
        const email = emailOfBody(body);
        if (!email) {
          send(res, 400, { error: 'Send {"email": "<an email address>"} as JSON' });
          return;
        }
        const id = localUserId(email);
        const accessToken = mintAccessToken({ sub: id, email, secret: opts.jwtSecret, issuer, expiresIn: EXPIRES_IN });
        const answer: DevTokenResponse = {
          access_token: accessToken,
          token_type: 'bearer',
          expires_in: EXPIRES_IN,
          expires_at: Math.floor(Date.now() / 1000) + EXPIRES_IN,
          user: { id, email },
        };
        send(res, 200, answer);
      },
      (error: unknown) => {
        if (!res.headersSent) send(res, 400, { error: error instanceof Error ? error.message : 'Unreadable body' });
      },
    );
  };
}
