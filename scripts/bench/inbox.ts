// npm run bench:inbox: what the event inbox costs the webhook, and how fast the
// scheduled catch-up applies Stripe's event log, each beside its baseline in one run.
//
// 1. Webhook p50, with and without the inbox's one added call. An applied event is
//    recorded in the same transaction as its change, as the dedup ledger always was
//    (one RPC either way); what the inbox adds is a call for a delivery that is not
//    applied (skipped, failed), which before it wrote nothing. The same signed
//    deliveries of an unhandled type go through the webhook's lib path (verify +
//    apply, src/events/webhook.ts) with the store as it is, and with a store whose
//    recordEvent does nothing (as before), alternating per round; applied deliveries
//    are timed beside them for scale.
// 2. Catch-up throughput: N events of new customers in Stripe's log (the bridge serves
//    it), applied by catchUpEvents, against the same number of the same kind delivered
//    one at a time through the webhook's lib path.
//
// Knobs: INBOX_ROUNDS (default 200), CATCH_UP_EVENTS (default 1000). Writes
// docs/benchmarks-inbox.md; the machine's load is printed with the figures.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { catchUpEvents } from '../../src/events/catch-up.ts';
import { applyStripeEvent, verifyStripeEvent, type WebhookDeps } from '../../src/events/webhook.ts';
import { loadWebhookConfig } from '../../src/config/config.ts';
import { createMeterDeps } from '../../src/meters/report.ts';
import { createStore } from '../../src/database/store.ts';
import { createStripe } from '../../src/stripe/client.ts';
import { LOCAL_JWT_SECRET, LOCAL_STRIPE_ENV, LOCAL_STRIPE_WEBHOOK_SECRET } from '../lib/local-defaults.ts';
import { startLocalStack, type LocalStack } from '../stack/index.ts';
import { startStripeMockBridge, type StripeMockBridge } from '../stack/stripe-mock-bridge.ts';
import { EventFactory, newCustomer, payloadOf, signPayload, UNHANDLED_TYPE } from './events.ts';
import { quantile } from './stats.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MIGRATIONS = path.join(REPO_ROOT, 'supabase/migrations');
const ROUNDS = Number(process.env['INBOX_ROUNDS'] ?? 200);
const CATCH_UP_EVENTS = Number(process.env['CATCH_UP_EVENTS'] ?? 1000);
const OUT = path.join(REPO_ROOT, 'docs/benchmarks-inbox.md');
const progress = (line: string) => process.stderr.write(`[bench:inbox] ${line}\n`);

interface Side {
  name: string;
  stack: LocalStack;
  deps: WebhookDeps;
}

const cleanups: (() => Promise<unknown>)[] = [];

async function side(name: string, migrationsDir: string, stripeApiBase?: string): Promise<Side> {
  const dataDir = await mkdtemp(path.join(tmpdir(), `bench-inbox-${name}-`));
  cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  const stack = await startLocalStack({ dataDir, ports: { postgres: 0, gateway: 0, postgrest: 0, stripeMock: 0 }, jwtSecret: LOCAL_JWT_SECRET, migrationsDir });
  cleanups.push(() => stack.stop());
  const config = loadWebhookConfig({ ...stack.env, STRIPE_API_BASE: stripeApiBase ?? stack.env.STRIPE_API_BASE, ...LOCAL_STRIPE_ENV });
  return { name, stack, deps: { config, store: createStore(config.store), meters: createMeterDeps(config, 'bench') } };
}

async function deliver(deps: WebhookDeps, payload: string): Promise<number> {
  const started = performance.now();
  const event = verifyStripeEvent(deps.config, Buffer.from(payload), signPayload(payload, LOCAL_STRIPE_WEBHOOK_SECRET));
  await applyStripeEvent(deps, event);
  return performance.now() - started;
}

const ms = (value: number) => `${value.toFixed(1)} ms`;

async function main(): Promise<void> {
  progress('starting the local stack');
  const withInbox = await side('inbox', MIGRATIONS);
  // Before the inbox, a delivery that was not applied wrote nothing.
  const without: Side = { ...withInbox, name: 'before', deps: { ...withInbox.deps, store: { ...withInbox.deps.store, recordEvent: () => Promise.resolve('skipped') } } };
  const factory = new EventFactory();
  const now = Math.floor(Date.now() / 1000);

  // 1. Side by side, alternating which goes first.
  const samples: Record<string, number[]> = {};
  const add = (key: string, value: number) => (samples[key] ??= []).push(value);
  progress(`webhook p50: ${ROUNDS} rounds`);
  for (let round = 0; round < ROUNDS; round += 1) {
    const sides = round % 2 === 0 ? [withInbox, without] : [without, withInbox];
    for (const s of sides) {
      const customer = newCustomer();
      add(`${s.name} applied`, await deliver(s.deps, payloadOf(factory.event('customer.subscription.created', customer, now + round))));
      add(`${s.name} skipped`, await deliver(s.deps, payloadOf(factory.event(UNHANDLED_TYPE, customer, now + round))));
    }
  }

  // 2. Catch-up, through the bridge's event log, against the same events one at a time.
  progress(`catch-up: ${CATCH_UP_EVENTS} events`);
  const bridge: StripeMockBridge = await startStripeMockBridge(withInbox.stack.env.STRIPE_API_BASE);
  cleanups.push(() => bridge.close());
  const caught = await side('catch-up', MIGRATIONS, bridge.url);
  const history = (created: number) => Array.from({ length: Math.ceil(CATCH_UP_EVENTS / 4) }, () => factory.history(newCustomer(), created)).flat().slice(0, CATCH_UP_EVENTS);
  const logged = history(now - 3600);
  await fetch(`${bridge.url}/__bridge/events`, { method: 'POST', body: JSON.stringify(logged) });
  const stripe = await createStripe(caught.deps.config.stripe);
  const catchUpStarted = performance.now();
  const summary = await catchUpEvents({ ...caught.deps, stripe }, { holder: 'bench', budgetMs: 10 * 60_000 });
  const catchUpSeconds = (performance.now() - catchUpStarted) / 1000;
  if (summary.status !== 'done' || summary.failed > 0) throw new Error(`catch-up did not finish: ${JSON.stringify(summary)}`);
  const direct = history(now - 1800);
  const directStarted = performance.now();
  for (const event of direct) await deliver(caught.deps, payloadOf(event));
  const directSeconds = (performance.now() - directStarted) / 1000;

  const p = (key: string, q: number) => quantile(samples[key] ?? [], q);
  const lines = [
    '# The event inbox: its cost to the webhook, and the catch-up\'s throughput',
    '',
    `Written by \`npm run bench:inbox\` (scripts/bench/inbox.ts) on ${new Date().toISOString().slice(0, 10)}: Node ${process.version}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} at the end (2 cores, shared).`,
    '',
    `## Webhook, with and without the inbox's added call (${ROUNDS} rounds, alternating, same deliveries)`,
    '',
    'The webhook\'s lib path (signature check, reduction, store), against a real PostgREST and PostgreSQL. An applied event makes one call either way (it is recorded in the transaction that applies it, as the dedup ledger always was): both columns time that same path, for scale. A skipped delivery (an unhandled type) wrote nothing before the inbox: "before" is the store with its recordEvent doing nothing.',
    '',
    '| delivery | without the added call p50 | with the inbox p50 | × | without p90 | with p90 |',
    '| --- | --- | --- | --- | --- | --- |',
    ...['applied', 'skipped'].map((kind) => {
      const a = p(`before ${kind}`, 0.5);
      const b = p(`inbox ${kind}`, 0.5);
      return `| ${kind === 'applied' ? 'an applied event (customer.subscription.created)' : `a skipped event (${UNHANDLED_TYPE})`} | ${ms(a)} | ${ms(b)} | ${(b / a).toFixed(2)} | ${ms(p(`before ${kind}`, 0.9))} | ${ms(p(`inbox ${kind}`, 0.9))} |`;
    }),
    '',
    `## Catch-up throughput (${CATCH_UP_EVENTS} events of ${Math.ceil(CATCH_UP_EVENTS / 4)} new customers)`,
    '',
    '| path | events | time | events/s |',
    '| --- | --- | --- | --- |',
    `| catch-up: GET /v1/events pages of 100 (the local bridge), ledger check per page, apply | ${summary.seen} (${summary.applied} applied, ${summary.stale} stale, ${summary.known} already known) | ${catchUpSeconds.toFixed(1)} s | ${(summary.seen / catchUpSeconds).toFixed(0)} |`,
    `| baseline: the same kind of events delivered one at a time to the webhook's lib path | ${direct.length} | ${directSeconds.toFixed(1)} s | ${(direct.length / directSeconds).toFixed(0)} |`,
    '',
    `A 30-second scheduled run with its 20 s budget applies about ${Math.round((summary.seen / catchUpSeconds) * 20)} events here; a larger backlog goes on from the cursor in the next run, 15 minutes later.`,
    '',
  ];
  await writeFile(OUT, lines.join('\n'));
  process.stdout.write(`${lines.join('\n')}\n`);
}

try {
  await main();
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
}
