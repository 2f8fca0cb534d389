// The local test sign-in, POST <SUPABASE_URL>/auth/v1/dev/token: what it answers, that
// the billing API accepts its tokens, and that it exists only in the local stack's
// gateway: nothing that deploys (netlify/, src/, public/, netlify.toml) can mint a
// token. test/browser.test.ts adds the same proof through `netlify dev`.

import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { build } from 'esbuild';
import jwt from 'jsonwebtoken';
import { describe, expect, it } from 'vitest';
import checkout from '../netlify/functions/stripe-checkout.mts';
import status from '../netlify/functions/stripe-subscription.mts';
import { LOCAL_JWT_SECRET } from '../scripts/lib/local-defaults.ts';
import { issuerFor, localUserId } from '../scripts/lib/tokens.ts';
import { startGateway } from '../scripts/stack/gateway.ts';
import { getFreePort } from '../scripts/stack/index.ts';
import { authedPost, env } from './support/stack.ts';
import { calendarMonth, untouchedUsage } from './support/usage.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const UUID_V5 = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function devToken(init: RequestInit = {}, base = env('SUPABASE_URL')): Promise<Response> {
  return fetch(`${base}/auth/v1/dev/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, ...init });
}

interface Answer {
  access_token: string;
  token_type: string;
  expires_in: number;
  expires_at: number;
  user: { id: string; email: string };
}

describe('POST <SUPABASE_URL>/auth/v1/dev/token (the local stack only)', () => {
  it('answers a token signed like Supabase Auth\'s, for the user the email names', async () => {
    const email = `dev-${Date.now()}@example.com`;
    const response = await devToken({ body: JSON.stringify({ email }) });
    expect(response.status).toBe(200);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    expect(response.headers.get('cache-control')).toBe('no-store');
    const answer = (await response.json()) as Answer;
    expect(answer).toMatchObject({ token_type: 'bearer', expires_in: 3600, user: { id: localUserId(email), email } });
    expect(answer.user.id).toMatch(UUID_V5);

    const claims = jwt.verify(answer.access_token, env('SUPABASE_JWT_SECRET'), {
      algorithms: ['HS256'],
      audience: 'authenticated',
      issuer: issuerFor(env('SUPABASE_URL')),
    }) as jwt.JwtPayload;
    expect(claims).toMatchObject({ sub: answer.user.id, email, role: 'authenticated', exp: answer.expires_at });

    // The billing API takes it as it takes a real session's token.
    const read = await status(new Request('http://localhost/api/stripe/subscription', { headers: { authorization: `Bearer ${answer.access_token}` } }));
    expect(read.status).toBe(200);
    expect(await read.json()).toEqual({ subscription: null, ...untouchedUsage(null, calendarMonth()) });
    expect((await checkout(authedPost('http://localhost/api/stripe/checkout', answer.access_token))).status).toBe(200);
  });

  it('names the same user for the same email, whatever its case or spaces, and another for another', async () => {
    const ids = await Promise.all(
      ['grace@example.com', ' Grace@Example.com ', 'ada@example.com'].map(async (email) => ((await (await devToken({ body: JSON.stringify({ email }) })).json()) as Answer).user.id),
    );
    expect(ids[0]).toBe(ids[1]);
    expect(ids[2]).not.toBe(ids[0]);
  });

  it('answers the CORS preflight of a page on another origin', async () => {
    const response = await devToken({ method: 'OPTIONS', headers: { origin: 'http://localhost:8888', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } });
    expect(response.status).toBe(204);
    expect(Object.fromEntries([...response.headers].filter(([name]) => name.startsWith('access-control-')))).toEqual({
      'access-control-allow-origin': '*',
      'access-control-allow-methods': 'POST, OPTIONS',
      'access-control-allow-headers': 'Content-Type',
      'access-control-max-age': '600',
    });
  });

  it.each([
    ['no body', undefined],
    ['not JSON', 'email=ada@example.com'],
    ['no email', '{"sub":"5b0c3f5e-8f4a-4c1e-9d1b-2f6a7c8d9e01"}'],
    ['not an email', '{"email":"ada"}'],
    ['an email that is not a string', '{"email":["ada@example.com"]}'],
    ['a body too large', JSON.stringify({ email: 'ada@example.com', pad: 'x'.repeat(5000) })],
  ])('answers 400 in JSON for %s', async (_case, body) => {
    const response = await devToken(body === undefined ? {} : { body });
    expect(response.status).toBe(400);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    expect(await response.json()).toEqual({ error: 'Send {"email": "<an email address>"} as JSON' });
  });

  it('answers 405 to other methods, and 404 elsewhere under /auth/v1 as Supabase\'s gateway would', async () => {
    const get = await fetch(`${env('SUPABASE_URL')}/auth/v1/dev/token`);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST, OPTIONS');
    const other = await fetch(`${env('SUPABASE_URL')}/auth/v1/token?grant_type=password`, { method: 'POST', body: '{}' });
    expect(other.status).toBe(404);
    expect(await other.json()).toEqual({ message: 'no Route matched with those values' });
  });

  it('is not there in a gateway started without devAuth', async () => {
    const gateway = await startGateway({ port: 0, postgrestPort: await getFreePort() });
    try {
      const response = await devToken({ body: '{"email":"ada@example.com"}' }, gateway.url);
      expect(response.status).toBe(404);
    } finally {
      await gateway.close();
    }
  });
});

// What deploys ------------------------------------------------------------------------

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(path.join(ROOT, dir), { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => path.relative(ROOT, path.join(entry.parentPath, entry.name)));
}

const MINTING = [/auth\/v1\/dev/, /mintAccessToken/, /localUserId/, /createDevAuth/, /(?:from|import\()\s*['"][^'"]*scripts\//, /jwt\.sign|\.sign\(\s*\{/];
/** The local teams (scripts/stack/dev-teams.ts): the page calls them, as it calls the sign-in. */
const LOCAL_TEAMS = [/__dev\/teams/, /createDevTeams/, /dev-teams/];
/** The local usage reports and billing clock (scripts/stack/dev-usage.ts, dev-clock.sql): the page calls them too. */
const LOCAL_USAGE = [/__dev\/usage/, /__dev\/clock/, /createDevUsage/, /dev-usage/, /billing_dev/];
const PAGE_CALLS = ['auth/v1/dev', '/__dev/teams', '/__dev/usage', '/__dev/clock'];

describe('no deploy can mint a token', () => {
  it('no source that deploys (netlify/functions, src, public) mentions the sign-in, the local teams, usage routes or clock, signs a JWT or imports scripts/', async () => {
    const files = [...(await filesUnder('netlify/functions')), ...(await filesUnder('src')), ...(await filesUnder('public'))];
    expect(files.length).toBeGreaterThan(5);
    for (const file of files) {
      const text = await readFile(path.join(ROOT, file), 'utf8');
      // The page calls the local sign-in (that is its job); it only must not mint one itself.
      const local = [...MINTING, ...LOCAL_TEAMS, ...LOCAL_USAGE];
      const rules = file.startsWith('public/') ? local.filter((rule) => !PAGE_CALLS.some((path) => rule.test(path))) : local;
      for (const rule of rules) expect(rule.test(text), `${file} matches ${String(rule)}`).toBe(false);
      expect(text.includes(LOCAL_JWT_SECRET), `${file} holds the local JWT secret`).toBe(false);
    }
  });

  it('no source that deploys links or imports the local Checkout and portal pages (scripts/stack/hosted-pages.ts)', async () => {
    const files = [...(await filesUnder('netlify/functions')), ...(await filesUnder('src')), ...(await filesUnder('public'))];
    for (const file of files) {
      const text = await readFile(path.join(ROOT, file), 'utf8');
      for (const rule of [/hosted-pages/, /createHostedPages/, /__bridge/, /\/checkout\/cs_/, /\/billing\/bps_/, /:12110/]) {
        expect(rule.test(text), `${file} matches ${String(rule)}`).toBe(false);
      }
    }
  });

  it('the bundled functions (as Netlify\'s esbuild bundles them) hold none of the sign-in code', async () => {
    const entryPoints = (await filesUnder('netlify/functions')).filter((file) => file.endsWith('.mts')).map((file) => path.join(ROOT, file));
    const result = await build({ entryPoints, bundle: true, platform: 'node', format: 'esm', target: 'node22', write: false, outdir: '/bundles', logLevel: 'silent' });
    expect(result.outputFiles.length).toBe(entryPoints.length);
    for (const output of result.outputFiles) {
      for (const marker of ['auth/v1/dev', 'createDevAuth', 'localUserId', 'mintAccessToken', '__dev/teams', 'createDevTeams', '__dev/usage', '__dev/clock', 'createDevUsage', 'billing_dev', LOCAL_JWT_SECRET]) {
        expect(output.text.includes(marker), `${path.basename(output.path)} contains ${marker}`).toBe(false);
      }
    }
  });

  it('netlify.toml and public/ route nothing to a local service, to /auth or to /__dev', async () => {
    const config = await readFile(path.join(ROOT, 'netlify.toml'), 'utf8');
    for (const file of ['public/_redirects', 'public/_headers']) {
      expect(existsSync(path.join(ROOT, file)), file).toBe(false);
    }
    const targets = [...config.matchAll(/^\s*(?:from|to)\s*=\s*"([^"]*)"/gm)].map((match) => match[1] ?? '');
    expect(targets.length).toBeGreaterThan(0);
    for (const target of targets) expect(target).not.toMatch(/auth|__dev|127\.0\.0\.1|localhost|:\d{2,5}/);
  });
});
