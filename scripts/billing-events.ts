// npm run billing:events [-- --failed] [--type <type>] [--since <time>] [--user <uuid>] [--limit <n>] [--local]
// npm run billing:events -- --replay <evt_…> [<evt_…> …] | --replay-failed [--since <time>]
//
// Lists what the webhook received and what became of each event (the inbox,
// stripe_events), newest first; and replays chosen events: each is fetched from
// Stripe's Events API and applied through the webhook's own path, exactly once
// (src/events/inbox.ts). Configuration as for billing:reconcile (scripts/lib/job-cli.ts).
//
// The list goes to stdout, replay progress to stderr, then one summary line to stdout.
// Exit status: 0 done, 1 a replay failed, 2 usage or configuration error.

import { parseArgs } from 'node:util';
import { failedEventIds, listInbox, replayEvents, type ReplayResult } from '../src/events/inbox.ts';
import { createMeterDeps } from '../src/meters/report.ts';
import { createStore, type RecordedEvent } from '../src/database/store.ts';
import { createStripe } from '../src/stripe/client.ts';
import { fail, jobConfig, messageOf, UUID } from './lib/job-cli.ts';

const USAGE = `usage: npm run billing:events -- [--failed] [--type <type>] [--since <time>] [--user <uuid>] [--limit <n>] [--local]
       npm run billing:events -- --replay <event id> [<event id> …] [--local]
       npm run billing:events -- --replay-failed [--since <time>] [--local]

  --since <time>   an ISO 8601 time or date (2026-11-30), or a duration back from now (90m, 36h, 7d)`;

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      failed: { type: 'boolean', default: false },
      type: { type: 'string' },
      since: { type: 'string' },
      user: { type: 'string' },
      limit: { type: 'string' },
      replay: { type: 'boolean', default: false },
      'replay-failed': { type: 'boolean', default: false },
      local: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
} catch (error) {
  fail(`${messageOf(error)}\n\n${USAGE}`);
}
const { values, positionals } = parsed;
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (values.user !== undefined && !UUID.test(values.user)) fail(`--user must be a user id (a UUID), got ${JSON.stringify(values.user)}`);
if (values.replay && positionals.length === 0) fail(`--replay needs the ids of the events to replay\n\n${USAGE}`);
if (!values.replay && positionals.length > 0) fail(`unexpected ${positionals.join(' ')}\n\n${USAGE}`);
const badId = positionals.find((id) => !/^evt_\w+$/.test(id));
if (badId) fail(`not an event id: ${badId}`);
const limit = values.limit === undefined ? undefined : Number(values.limit);
if (limit !== undefined && !(Number.isInteger(limit) && limit > 0 && limit <= 1000)) fail('--limit must be a whole number from 1 to 1000');

function parseSince(text: string | undefined): Date | undefined {
  if (text === undefined) return undefined;
  const ago = /^(\d+)([mhd])$/.exec(text);
  if (ago) {
    const unit = { m: 60_000, h: 3_600_000, d: 86_400_000 }[ago[2] as 'm' | 'h' | 'd'];
    return new Date(Date.now() - Number(ago[1]) * unit);
  }
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) fail(`--since must be an ISO 8601 time or a duration like 36h, not ${JSON.stringify(text)}`);
  return date;
}
const since = parseSince(values.since);

const config = jobConfig(values.local);
const store = createStore(config.store);

function row(event: RecordedEvent): string {
  const reason = event.reason ? `  ${event.reason}` : '';
  return `${event.created}  ${event.id}  ${event.type.padEnd(38)} ${event.outcome.padEnd(9)} ×${event.attempts}  ${event.apiVersion ?? '-'}  ${event.customerId ?? '-'}${reason}`;
}

if (!values.replay && !values['replay-failed']) {
  const events = await listInbox(store, {
    failedOnly: values.failed,
    ...(values.type && { type: values.type }),
    ...(since && { since }),
    ...(values.user && { userId: values.user }),
    ...(limit && { limit }),
  }).catch((error: unknown) => fail(`could not read the inbox: ${messageOf(error)}`, 1));
  for (const event of events) console.log(row(event));
  const failed = events.filter((e) => e.outcome === 'failed').length;
  console.log(`${events.length} event(s)${failed > 0 ? `, ${failed} failed` : ''}`);
  process.exit(0);
}

const ids = values.replay
  ? positionals
  : await failedEventIds(store, since).catch((error: unknown) => fail(`could not read the inbox: ${messageOf(error)}`, 1));
const stripe = await createStripe(config.stripe);
console.error(`replaying ${ids.length} event(s) from Stripe (${config.stripe.mode} mode)`);
const results = await replayEvents({ config, store, stripe, meters: createMeterDeps(config, 'billing-events') }, ids, (r: ReplayResult) =>
  console.error(`${r.eventId} ${r.eventType ?? '?'}: ${r.outcome}${r.reason ? ` (${r.reason})` : ''}`),
);
const count = (outcome: string) => results.filter((r) => r.outcome === outcome).length;
const failedCount = count('failed');
console.log(
  `replayed ${results.length}: ${count('applied')} applied, ${count('stale')} stale, ${count('duplicate')} duplicate, ${count('skipped')} skipped, ${failedCount} failed`,
);
process.exitCode = failedCount > 0 ? 1 : 0;
