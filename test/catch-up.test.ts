// The scheduled catch-up against Stripe's event log. stripe-mock answers /v1/events
// with one fixture whatever is asked, so the local bridge in front of it serves the
// events this test posts there, filtered and paged as Stripe does (newest first,
// types[], created[gte], starting_after), and 429s on request.
//
// One file, run in order: the job's row is shared state. The event log is this file's
// own (its own API key): the shared one also holds the events other files' quantity
// updates make, which a run here would otherwise read and apply with its own catalog.

import { randomBytes } from 'node:crypto';
import type Stripe from 'stripe';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import catchUpFunction from '../netlify/functions/stripe-catch-up.mts';
import { catchUpEvents, CATCH_UP_JOB, type CatchUpDeps } from '../src/events/catch-up.ts';
import { loadJobConfig } from '../src/config/config.ts';
import { createMeterDeps } from '../src/meters/report.ts';
import { createStore } from '../src/database/store.ts';
import { createStripe } from '../src/stripe/client.ts';
import { deliverConcurrently, expectStored, generateHistory, random, renderHistory, type History } from './support/histories.ts';
import { clearStripeEvents, newUser, openStripeEventLog, postStripeEvents, query, rateLimitStripeEvents } from './support/stack.ts';

const KEY = `sk_test_catchup${randomBytes(6).toString('hex')}`;

async function deps(): Promise<CatchUpDeps> {
  const config = loadJobConfig(process.env);
  const stripe = await createStripe(config.stripe);
  return { config, store: createStore(config.store), stripe, meters: createMeterDeps(config, 'catch-up') };
}

/** A history whose events happened in the last hours, as Stripe's log holds them: its
 *  event times moved close together, order and same-second ties kept (all that the
 *  stored state depends on), so that it all lies within the catch-up's window. */
function recentHistory(seed: number): History {
  const rand = random(seed);
  const history = renderHistory(rand, generateHistory(rand, newUser().id), 'any version per event');
  const times = [...new Set(history.sent.map((s) => s.event.created))].sort((a, b) => a - b);
  const base = Math.floor(Date.now() / 1000) - 600 - 60 * times.length;
  for (const sent of history.sent) sent.event.created = base + 60 * times.indexOf(sent.event.created);
  return history;
}

const ids = (events: readonly { event: Stripe.Event }[]) => events.map((s) => s.event.id);

beforeAll(async () => {
  await openStripeEventLog(KEY);
  // The job config and the function read the key from the environment, as deployed.
  process.env['STRIPE_SECRET_KEY'] = KEY;
});

beforeEach(async () => {
  await clearStripeEvents(KEY);
  await query('delete from billing_jobs where name = $1', [CATCH_UP_JOB]);
});

afterEach(async () => {
  vi.restoreAllMocks();
  await rateLimitStripeEvents(0);
});

describe('the scheduled catch-up', () => {
  it('heals a day of missed events: run twice, each event applied once, the state the newest', async () => {
    const histories = [recentHistory(101), recentHistory(102), recentHistory(103)];
    const rand = random(7);
    const missed: History['sent'] = [];
    for (const history of histories) {
      // The endpoint got the first events, then was down for a day: the rest never came.
      const cut = Math.ceil(history.sent.length / 3);
      const statuses = await deliverConcurrently(rand, history.sent.slice(0, cut).map((s) => JSON.stringify(s.event)));
      expect(statuses.every((s) => s === 200)).toBe(true);
      missed.push(...history.sent.slice(cut));
    }
    await postStripeEvents(histories.flatMap((h) => h.sent.map((s) => s.event)), KEY);
    expect(await query('select 1 from stripe_events where id = any($1)', [ids(missed)])).toHaveLength(0);

    const first = await catchUpEvents(await deps(), { holder: 'test-1', pageSize: 7 });
    expect(first).toMatchObject({ status: 'done', applied: expect.any(Number) as unknown, failed: 0 });
    expect(first.seen).toBe(histories.reduce((n, h) => n + h.sent.length, 0));
    expect(first.known).toBe(first.seen - missed.length);
    expect(first.applied + first.stale + first.ignored).toBe(missed.length);

    const second = await catchUpEvents(await deps(), { holder: 'test-2', pageSize: 7 });
    expect(second).toMatchObject({ status: 'done', applied: 0, stale: 0, failed: 0 });
    expect(second.known).toBe(second.seen);

    for (const history of histories) await expectStored(history, history.steps.join(' → '));
    const attempts = await query<{ attempts: number }>('select attempts from stripe_events where id = any($1)', [ids(missed)]);
    expect(attempts.map((a) => a.attempts)).toEqual(missed.map(() => 1));
  });

  it('stops within its budget and resumes from its cursor on the next run', async () => {
    const history = recentHistory(104);
    await postStripeEvents(history.sent.map((s) => s.event), KEY);
    const runs = [];
    for (let run = 0; run < 50; run += 1) {
      // A budget of 0: every run stops after its first page, as a run at the 30 s limit would.
      const summary = await catchUpEvents(await deps(), { holder: `test-${run}`, pageSize: 2, budgetMs: 0 });
      runs.push(summary);
      if (summary.status === 'done') break;
    }
    expect(runs.length).toBe(Math.ceil(history.sent.length / 2));
    expect(runs.slice(0, -1).every((r) => r.status === 'paused')).toBe(true);
    expect(runs.reduce((n, r) => n + r.seen, 0)).toBe(history.sent.length);
    await expectStored(history, history.steps.join(' → '));
  });

  it('never runs twice at once', async () => {
    const history = recentHistory(105);
    await postStripeEvents(history.sent.map((s) => s.event), KEY);
    const [first, second] = [await deps(), await deps()];
    // Both ask for the lease at once; the database gives it to one of them.
    const [a, b] = await Promise.all([
      catchUpEvents(first, { holder: 'test-a', pageSize: 1 }),
      catchUpEvents(second, { holder: 'test-b', pageSize: 1 }),
    ]);
    expect([a.status, b.status].sort()).toEqual(['busy', 'done']);
    await expectStored(history, history.steps.join(' → '));
  });

  it('backs off on 429 and goes on', async () => {
    const history = recentHistory(106);
    await postStripeEvents(history.sent.map((s) => s.event), KEY);
    await rateLimitStripeEvents(3);
    const sleeps: number[] = [];
    const summary = await catchUpEvents(await deps(), { holder: 'test-429', sleep: (ms) => {
      sleeps.push(ms);
      return Promise.resolve();
    } });
    expect(summary.status).toBe('done');
    expect(summary.rateLimitRetries).toBeGreaterThan(0);
    expect(sleeps).toEqual(sleeps.slice().sort((x, y) => x - y)); // growing
    await expectStored(history, history.steps.join(' → '));
  });

  it('as Netlify runs it: one summary line per run', async () => {
    const history = recentHistory(107);
    await postStripeEvents(history.sent.map((s) => s.event), KEY);
    const info = vi.spyOn(console, 'log').mockImplementation(() => {});
    const response = await catchUpFunction(new Request('http://localhost/.netlify/functions/stripe-catch-up', { method: 'POST', body: '{"next_run":"2026-12-01T00:15:00.000Z"}' }));
    expect(response.status).toBe(200);
    const lines = info.mock.calls.map((call) => JSON.parse(String(call[0])) as Record<string, unknown>).filter((l) => l['fn'] === 'catch-up');
    expect(lines).toEqual([expect.objectContaining({ level: 'info', msg: 'scheduled run', status: 'done', seen: history.sent.length, failed: 0 })]);
    await expectStored(history, history.steps.join(' → '));
  });
});
