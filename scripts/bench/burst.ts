// npm run bench:burst: the local server under a burst, netlify dev (npm run dev) beside
// the warm server (npm run dev -- --warm), in one run against one local stack: 50
// concurrent checkouts of new users, then 100 concurrent signed webhook deliveries, and
// a few sequential preflights (what one invocation costs each server when idle).
// Prints a markdown table; docs/performance.md quotes a run.
//
// Knobs: BURST_CHECKOUTS=50, BURST_DELIVERIES=100.

import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { LOCAL_JWT_SECRET, LOCAL_STRIPE_WEBHOOK_SECRET } from '../lib/local-defaults.ts';
import { siteCopy, startNetlifyDev } from '../lib/netlify-dev.ts';
import { issuerFor, mintAccessToken } from '../lib/tokens.ts';
import { startWarmSite } from '../lib/warm-site.ts';
import { getFreePort } from '../stack/index.ts';
import { startThrowawayStack } from '../stack/throwaway.ts';
import { EventFactory, newCustomer, payloadOf, signPayload } from './events.ts';
import { quantile } from './stats.ts';

const CHECKOUTS = Number(process.env['BURST_CHECKOUTS'] ?? 50);
const DELIVERIES = Number(process.env['BURST_DELIVERIES'] ?? 100);
const SEQUENTIAL = 8;
const say = (line: string) => process.stderr.write(`[burst] ${line}\n`);

interface Timed {
  status: number;
  ms: number;
}

async function timed(url: string, init: RequestInit): Promise<Timed> {
  const started = performance.now();
  try {
    const response = await fetch(url, { ...init, signal: AbortSignal.timeout(60_000) });
    await response.arrayBuffer();
    return { status: response.status, ms: performance.now() - started };
  } catch {
    return { status: 0, ms: performance.now() - started };
  }
}

function summary(results: readonly Timed[], wallMs: number): string[] {
  const ms = results.map((r) => r.ms);
  const statuses = new Map<number, number>();
  for (const r of results) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
  const fmt = (v: number) => (v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${v.toFixed(0)} ms`);
  return [
    [...statuses].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${n} × ${s === 0 ? 'no answer' : s}`).join(', '),
    fmt(quantile(ms, 0.5)),
    fmt(quantile(ms, 0.9)),
    fmt(Math.max(...ms)),
    fmt(wallMs),
  ];
}

const { env, stop } = await startThrowawayStack('burst');
Object.assign(process.env, env);
const factory = new EventFactory();
const issuer = issuerFor(env['SUPABASE_URL'] ?? '');
const rows: string[][] = [];
const loadStart = loadavg();

async function burst(label: string, base: string): Promise<void> {
  const api = `${base}/api/stripe`;
  const preflights: Timed[] = [];
  for (let i = 0; i < SEQUENTIAL; i += 1) preflights.push(await timed(`${api}/checkout`, { method: 'OPTIONS' }));
  rows.push([label, `${SEQUENTIAL} sequential preflights`, ...summary(preflights, preflights.reduce((s, r) => s + r.ms, 0))]);

  say(`${label}: ${CHECKOUTS} concurrent checkouts of new users`);
  let started = performance.now();
  const checkouts = await Promise.all(
    Array.from({ length: CHECKOUTS }, () => {
      const token = mintAccessToken({ sub: randomUUID(), email: 'burst@example.com', secret: LOCAL_JWT_SECRET, issuer });
      return timed(`${api}/checkout`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
    }),
  );
  rows.push([label, `${CHECKOUTS} concurrent checkouts (new users)`, ...summary(checkouts, performance.now() - started)]);

  say(`${label}: ${DELIVERIES} concurrent webhook deliveries`);
  const now = Math.floor(Date.now() / 1000);
  const payloads = Array.from({ length: DELIVERIES }, () => payloadOf(factory.event('customer.subscription.updated', newCustomer(), now)));
  started = performance.now();
  const deliveries = await Promise.all(
    payloads.map((payload) =>
      timed(`${api}/webhook`, { method: 'POST', headers: { 'stripe-signature': signPayload(payload, LOCAL_STRIPE_WEBHOOK_SECRET), 'content-type': 'application/json' }, body: payload }),
    ),
  );
  rows.push([label, `${DELIVERIES} concurrent webhook deliveries`, ...summary(deliveries, performance.now() - started)]);
}

try {
  say('netlify dev (npm run dev)');
  const netlify = await startNetlifyDev({ port: await getFreePort(), env, isolated: true });
  try {
    await burst('netlify dev', netlify.url);
  } finally {
    await netlify.stop();
  }
  say('the warm server (npm run dev -- --warm)');
  const site = await siteCopy();
  const warm = await startWarmSite({ port: await getFreePort(), root: site });
  // The functions run in this process now: their log lines (one per request) go nowhere,
  // as netlify dev's go to its own output.
  const { log, warn, error } = console;
  console.log = console.warn = console.error = () => {};
  try {
    await burst('--warm', warm.url);
  } finally {
    Object.assign(console, { log, warn, error });
    await warm.stop();
    await rm(site, { recursive: true, force: true });
  }
  const loads = (l: number[]) => l.map((v) => v.toFixed(1)).join(' / ');
  console.log(`Run ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, Node ${process.version}, load average ${loads(loadStart)} at the start, ${loads(loadavg())} at the end.\n`);
  console.log('| Server | Requests | Statuses | p50 | p90 | max | all answered in |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const row of rows) console.log(`| ${row.join(' | ')} |`);
} finally {
  await stop();
}
