// Load: at least 2,000 signed events of every handled type, 10% delivered twice, all
// shuffled, sent over HTTP at concurrency 50 to the webhook function, against the real
// local stack. The function is served by a plain HTTP server that does what the Netlify
// runtime does around it (scripts/lib/function-server.ts): `netlify dev`'s local
// emulator stalls under this load (headers timeouts at concurrency 50), and it is not
// what runs in production either. Zero 5xx, zero lost, zero applied twice: every event is
// recorded once and every subscription ends in the state its newest event says.
// The figures (throughput, latency percentiles) go to test-results/load-webhook.json.

import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { startFunctionServer, type FunctionServer } from '../scripts/lib/function-server.ts';
import { expectStored, generateHistory, random, type History } from './support/histories.ts';
import { env, newUser } from './support/stack.ts';

const MIN_EVENTS = Number(process.env['LOAD_EVENTS'] ?? 2_000);
const CONCURRENCY = Number(process.env['LOAD_CONCURRENCY'] ?? 50);
const SEED = Number(process.env['SEED'] ?? Math.floor(Math.random() * 2 ** 31));

let server: FunctionServer;

beforeAll(async () => {
  server = await startFunctionServer({ '/api/stripe/webhook': webhook });
});

afterAll(async () => {
  await server.close();
});

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

describe('webhook under load, over HTTP', () => {
  it(`${MIN_EVENTS}+ events, 10% duplicates, shuffled, concurrency ${CONCURRENCY}: no 5xx, none lost, none applied twice`, { timeout: 600_000 }, async () => {
    const rand = random(SEED);
    const histories: History[] = [];
    let events = 0;
    while (events < MIN_EVENTS) {
      const history = generateHistory(rand, newUser().id);
      histories.push(history);
      events += history.sent.length;
    }
    const payloads = histories.flatMap((h) => h.sent.map((s) => JSON.stringify(s.event)));
    const duplicates = payloads.filter(() => rand() < 0.1);
    const deliveries = [...payloads, ...duplicates];
    for (let i = deliveries.length - 1; i > 0; i -= 1) {
      const j = Math.floor(rand() * (i + 1));
      [deliveries[i], deliveries[j]] = [deliveries[j] as string, deliveries[i] as string];
    }

    const secret = env('STRIPE_WEBHOOK_SECRET');
    const url = `${server.url}/api/stripe/webhook`;
    const latencies: number[] = [];
    const statuses = new Map<number, number>();
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < deliveries.length) {
          const payload = deliveries[next] as string;
          next += 1;
          // Signed at send time, as Stripe does for each delivery attempt.
          const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret });
          const sent = performance.now();
          const response = await fetch(url, { method: 'POST', headers: { 'stripe-signature': signature, 'content-type': 'application/json' }, body: payload });
          await response.arrayBuffer();
          latencies.push(performance.now() - sent);
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    const figures = {
      seed: SEED,
      events,
      duplicates: duplicates.length,
      deliveries: deliveries.length,
      concurrency: CONCURRENCY,
      seconds: Number(seconds.toFixed(2)),
      deliveriesPerSecond: Number((deliveries.length / seconds).toFixed(1)),
      latencyMs: {
        p50: Number(percentile(latencies, 50).toFixed(1)),
        p90: Number(percentile(latencies, 90).toFixed(1)),
        p99: Number(percentile(latencies, 99).toFixed(1)),
        max: Number((latencies.at(-1) ?? Number.NaN).toFixed(1)),
      },
      statuses: Object.fromEntries(statuses),
    };
    await mkdir(path.resolve(import.meta.dirname, '../test-results'), { recursive: true });
    await writeFile(path.resolve(import.meta.dirname, '../test-results/load-webhook.json'), `${JSON.stringify(figures, null, 2)}\n`);
    console.info(`load: ${JSON.stringify(figures)}`);

    expect(events).toBeGreaterThanOrEqual(MIN_EVENTS);
    expect(Object.fromEntries(statuses), `seed ${SEED}`).toEqual({ 200: deliveries.length });
    for (const [i, history] of histories.entries()) await expectStored(history, `seed ${SEED}, history ${i}`);
  });
});
