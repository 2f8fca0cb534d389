// The local stack's usage reports and movable billing clock (scripts/stack/dev-usage.ts,
// scripts/stack/dev-clock.sql) and `npm run usage:add` (scripts/usage-add.ts), which
// the example dashboard uses to walk a meter into grace and lock. The clock is the
// database's, so this file runs on a stack of its own started with devClock; the shared
// test stack, like any database the migrations alone made, has no movable clock.

import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushCatalog } from '../scripts/lib/local-catalog.ts';
import { bootstrapAndMigrate } from '../scripts/stack/postgres.ts';
import { startThrowawayStack, type ThrowawayStack } from '../scripts/stack/throwaway.ts';
import { env, query, shutdownTolerantPool } from './support/stack.ts';
import { runScript } from './support/trigger.ts';

let own: ThrowawayStack;
let pool: pg.Pool;

beforeAll(async () => {
  own = await startThrowawayStack('dev-usage', { ownDatabase: true, devClock: true });
  pool = shutdownTolerantPool(own.env['DATABASE_URL'] ?? '', 2);
  await pushCatalog(own.env); // the shipped catalog: free 10,000 pageviews a month, overage allowed
}, 120_000);

afterAll(async () => {
  await pool?.end();
  await own?.stop();
});

async function q<Row extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<Row[]> {
  return (await pool.query<Row>(sql, params)).rows;
}

async function signIn(base: string, email: string): Promise<{ id: string; token: string }> {
  const answer = (await (await fetch(`${base}/auth/v1/dev/token`, { method: 'POST', body: JSON.stringify({ email }) })).json()) as { access_token: string; user: { id: string } };
  return { id: answer.user.id, token: answer.access_token };
}

async function call(path: string, token: string | null, body?: unknown, base = own.env['SUPABASE_URL'] ?? ''): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${base}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

const stateOf = async (subject: string) =>
  (await q<{ state: string; used: string }>(`select billing_usage_state($1, 'pageviews') as state, billing_usage($1, 'pageviews') as used`, [subject]))[0];

describe('the movable billing clock (a stack started with devClock)', () => {
  it('billing_now() is the deployed clock plus an offset that only moves forward, and the transaction\'s billing.now still wins over now()', async () => {
    const user = await signIn(own.env['SUPABASE_URL'] ?? '', `clock-${Date.now()}@example.com`);
    await call('/__dev/clock', user.token, { reset: true });
    const [{ drift } = { drift: '' }] = await q<{ drift: string }>('select extract(epoch from billing_now() - now())::text as drift');
    expect(Number(drift)).toBe(0);

    const moved = await call('/__dev/clock', user.token, { advanceDays: 3 });
    expect(moved).toMatchObject({ status: 200, body: { offsetSeconds: 3 * 86_400 } });
    const [{ ahead } = { ahead: '' }] = await q<{ ahead: string }>('select extract(epoch from billing_now() - now())::text as ahead');
    expect(Number(ahead)).toBe(3 * 86_400);
    const client = await pool.connect();
    try {
      await client.query('begin');
      await client.query(`select set_config('billing.now', '2027-03-01T00:00:00Z', true)`);
      const { rows } = await client.query<{ at: Date }>('select billing_now() as at');
      expect(rows[0]?.at.toISOString()).toBe('2027-03-04T00:00:00.000Z');
      await client.query('rollback');
    } finally {
      client.release();
    }

    expect(await call('/__dev/clock', user.token, { advanceDays: -1 })).toMatchObject({ status: 400 });
    expect((await call('/__dev/clock', user.token, { reset: true })).body).toMatchObject({ offsetSeconds: 0 });
    expect(await call('/__dev/clock', null)).toMatchObject({ status: 401 });
    // Nobody but the service role moves it: not a signed-in user through PostgREST.
    const direct = await fetch(`${own.env['SUPABASE_URL'] ?? ''}/rest/v1/rpc/billing_dev_clock`, {
      method: 'POST',
      headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ p_advance_seconds: 86_400 }),
    });
    expect([401, 403, 404]).toContain(direct.status);
    expect((await call('/__dev/clock', user.token)).body).toMatchObject({ offsetSeconds: 0 });
  });

  it('a restart wraps the migrations\' billing_now once: the deployed body is kept as billing_dev.deployed_now()', async () => {
    await bootstrapAndMigrate(own.env['DATABASE_URL'] ?? '', 'supabase/migrations', undefined, { devClock: true });
    const [wrapper] = await q<{ body: string }>(`select pg_get_functiondef('public.billing_now()'::regprocedure) as body`);
    const [deployed] = await q<{ body: string }>(`select pg_get_functiondef('billing_dev.deployed_now()'::regprocedure) as body`);
    expect(wrapper?.body).toContain('billing_dev.deployed_now()');
    expect(deployed?.body).toContain("current_setting('billing.now'");
    expect(deployed?.body).not.toContain('billing_dev.clock');
  });

  it('walks a free user through ok, warning, over, grace and locked with usage reports and the clock', async () => {
    const user = await signIn(own.env['SUPABASE_URL'] ?? '', `walk-${Date.now()}@example.com`);
    await call('/__dev/clock', user.token, { reset: true });
    const add = async (amount: number) => call('/__dev/usage', user.token, { meter: 'pageviews', amount });

    const first = await add(5_000);
    expect(first).toMatchObject({ status: 200, body: { subject: user.id, meter: 'pageviews', result: { allowed: true, used: 5_000, limit: 10_000, duplicate: false } } });
    expect((first.body['key'] as string).startsWith('dev:')).toBe(true);
    expect(await stateOf(user.id)).toEqual({ state: 'ok', used: '5000' });
    await add(4_500);
    expect(await stateOf(user.id)).toEqual({ state: 'warning', used: '9500' });
    await add(2_000);
    expect(await stateOf(user.id)).toEqual({ state: 'over', used: '11500' });

    // One window ended above included + 10 %: not yet grace (two in a row start it).
    const ended = await call('/__dev/clock', user.token, { endWindow: true });
    expect(ended.status).toBe(200);
    expect(await stateOf(user.id)).toEqual({ state: 'ok', used: '0' });
    await add(12_000);
    await call('/__dev/clock', user.token, { endWindow: true });
    expect(await stateOf(user.id)).toEqual({ state: 'grace', used: '0' });
    await call('/__dev/clock', user.token, { advanceDays: 7 });
    expect(await stateOf(user.id)).toEqual({ state: 'locked', used: '0' });
    // Data is still collected while locked (overage: allow).
    expect((await add(100)).body).toMatchObject({ result: { allowed: true, used: 100 } });
    await call('/__dev/clock', user.token, { reset: true });
  });

  it('reports for a team its caller is in, and refuses other teams, bad bodies and unknown meters', async () => {
    const base = own.env['SUPABASE_URL'] ?? '';
    const owner = await signIn(base, `usage-owner-${Date.now()}@example.com`);
    const stranger = await signIn(base, `usage-stranger-${Date.now()}@example.com`);
    const { body } = await call('/__dev/teams', owner.token, { name: 'Usage crew' });
    const team = (body['team'] as { id: string }).id;
    expect(await call('/__dev/usage', owner.token, { meter: 'pageviews', amount: 700, team })).toMatchObject({ status: 200, body: { subject: team, result: { used: 700 } } });
    expect(await stateOf(team)).toEqual({ state: 'ok', used: '700' });
    expect(await call('/__dev/usage', stranger.token, { meter: 'pageviews', amount: 1, team })).toEqual({ status: 403, body: { error: 'Not a member of this team' } });
    expect(await call('/__dev/usage', owner.token, { meter: 'nope', amount: 1 })).toEqual({ status: 400, body: { error: 'Unknown meter: nope' } });
    expect((await call('/__dev/usage', owner.token, { meter: 'pageviews', amount: -1 })).status).toBe(400);
    expect((await call('/__dev/usage', null, { meter: 'pageviews', amount: 1 })).status).toBe(401);
    expect(await stateOf(team)).toEqual({ state: 'ok', used: '700' });
  });

  it('npm run usage:add: adds usage for a test user by email and moves the clock', async () => {
    const email = `usage-cli-${Date.now()}@example.com`;
    const base = own.env['SUPABASE_URL'] ?? '';
    const added = await runScript('usage-add.ts', ['--email', email, '--meter', 'pageviews', '--amount', '50000', '--supabase', base]);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/^added: pageviews of [0-9a-f-]{36}: 50,000 used of 10,000 this window$/m);
    const user = await signIn(base, email);
    expect(await stateOf(user.id)).toEqual({ state: 'over', used: '50000' });

    const moved = await runScript('usage-add.ts', ['--email', email, '--advance-days', '2', '--supabase', base]);
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stdout).toMatch(/^moved 2 day\(s\): billing clock \S+ \(2\.00 days ahead\)$/m);
    const reset = await runScript('usage-add.ts', ['--email', email, '--reset-clock', '--supabase', base]);
    expect(reset.stdout).toMatch(/\(0\.00 days ahead\)/);
    const usage = await runScript('usage-add.ts', ['--email', email, '--meter', 'pageviews', '--supabase', base]);
    expect(usage).toMatchObject({ code: 1, stderr: expect.stringContaining('--meter and --amount go together') as unknown });
  });
});

describe('a stack without devClock (the shared test stack, as the migrations make a database)', () => {
  it('has no movable clock: billing_now() is the migration\'s, and /__dev/clock answers 404', async () => {
    const [definition] = await query<{ body: string }>(`select pg_get_functiondef('public.billing_now()'::regprocedure) as body`);
    expect(definition?.body).not.toContain('billing_dev');
    expect(await query(`select 1 from pg_namespace where nspname = 'billing_dev'`)).toEqual([]);
    const user = await signIn(env('SUPABASE_URL'), `no-clock-${Date.now()}@example.com`);
    const answer = await call('/__dev/clock', user.token, { advanceDays: 1 }, env('SUPABASE_URL'));
    expect(answer.status).toBe(404);
    expect(answer.body['error']).toMatch(/does not move/);
  });

  it('no migration defines or calls the movable clock: supabase db push never makes one', async () => {
    const files = (await readdir('supabase/migrations')).filter((file) => file.endsWith('.sql'));
    expect(files.length).toBeGreaterThan(5);
    for (const file of files) expect(await readFile(path.join('supabase/migrations', file), 'utf8'), file).not.toMatch(/billing_dev|dev-clock/);
  });
});
