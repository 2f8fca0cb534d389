// What the gateway's local-only routes (/__dev/teams, /__dev/usage, /__dev/clock) share:
// the caller from a token of the stack's test sign-in, JSON answers with CORS for the
// example dashboard (served by netlify dev on another port), and calls to PostgREST as
// the service role, as a product's server makes them.

import type { IncomingMessage, ServerResponse } from 'node:http';
import jwt from 'jsonwebtoken';
import { serviceRoleKey } from '../lib/tokens.ts';
import { readBody } from './dev-auth.ts';

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// Any origin: the page is served by netlify dev on another port, and sends a bearer token.
const CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
  'access-control-allow-headers': 'Content-Type, Authorization',
};

export interface DevRouteOptions {
  jwtSecret: string;
  /** The issuer the sign-in's tokens carry: `<SUPABASE_URL>/auth/v1`. */
  issuer: string;
  /** PostgREST itself (not through the gateway). */
  postgrestUrl: string;
}

/** An answer with a status: thrown by a route, sent by the handler. */
export class Refusal extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { ...CORS, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/** The request's JSON object body (a POST's), or a 400. */
export async function jsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const text = await readBody(req);
  if (text === undefined) throw new Refusal(400, 'Body too large');
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch {
    // answered below
  }
  throw new Refusal(400, 'Send a JSON object');
}

/** The caller of a token of this stack (Authorization: Bearer), or a 401. */
export function callerOf(req: IncomingMessage, opts: DevRouteOptions): { id: string; email: string | null } {
  const match = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
  if (!match?.[1]) throw new Refusal(401, 'Sign in first (Authorization: Bearer <token>)');
  let claims: jwt.JwtPayload | string;
  try {
    claims = jwt.verify(match[1], opts.jwtSecret, { algorithms: ['HS256'], audience: 'authenticated', issuer: opts.issuer });
  } catch {
    throw new Refusal(401, 'Invalid token');
  }
  if (typeof claims === 'string' || typeof claims.sub !== 'string' || !UUID.test(claims.sub)) throw new Refusal(401, 'Invalid token');
  return { id: claims.sub, email: typeof claims['email'] === 'string' && claims['email'] !== '' ? claims['email'] : null };
}

export interface PostgrestAnswer {
  status: number;
  body: unknown;
  /** PostgREST's error, when it answered one. */
  error: { code?: string; message?: string } | null;
}

/** A call to PostgREST as the service role. */
export function createServiceRest(opts: DevRouteOptions): (method: string, path: string, body?: unknown) => Promise<PostgrestAnswer> {
  const service = serviceRoleKey(opts.jwtSecret);
  return async (method, path, body) => {
    const response = await fetch(`${opts.postgrestUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${service}`, 'content-type': 'application/json', prefer: 'return=representation' },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    let parsed: unknown = null;
    try {
      parsed = text === '' ? null : JSON.parse(text);
    } catch {
      parsed = text;
    }
    const error = response.ok ? null : parsed !== null && typeof parsed === 'object' ? (parsed as { code?: string; message?: string }) : { message: text };
    return { status: response.status, body: parsed, error };
  };
}

/** A handler for routes that answer [status, body] or throw a Refusal; OPTIONS is the preflight. */
export function devHandler(route: (req: IncomingMessage, path: string) => Promise<[number, unknown]>): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...CORS, 'access-control-max-age': '600' });
      res.end();
      return;
    }
    route(req, (req.url ?? '/').split('?')[0] ?? '/').then(
      ([status, body]) => send(res, status, body),
      (error: unknown) => {
        if (res.headersSent) return;
        if (error instanceof Refusal) send(res, error.status, { error: error.message });
        else send(res, 500, { error: error instanceof Error ? error.message : String(error) });
      },
    );
  };
}
