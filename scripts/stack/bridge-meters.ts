// Billing Meters on the stripe-mock bridge. stripe-mock v0.197.0 validates the v1 meter
// requests and answers fixtures (no state, no deduplication, no timestamp window); this
// keeps what Stripe would, so usage reporting can be tested end to end:
//
// * meters created through the bridge (POST /v1/billing/meters), listed (status filter,
//   paging), retrieved, renamed, deactivated and reactivated; a second active meter with
//   an event_name an active meter holds is refused;
// * meter events (POST /v1/billing/meter_events), recorded with the bridge's clock. An
//   identifier seen in the last 24 hours is refused (400, "An event already exists with
//   identifier …", Stripe-Should-Retry: false: the answer Stripe gives, as integrations
//   quote it; Stripe's docs name no error code for it). A timestamp older than 35 days or
//   more than 5 minutes ahead is refused (400, param timestamp). What Stripe accepts and
//   only reports later, in a meter error report, is accepted and recorded with that
//   report's reason and never counted: no active meter for the event_name (no_meter,
//   archived_meter), no customer (meter_event_no_customer_defined), a value that is not
//   a number (meter_event_invalid_value). Idempotency-Key replays the first answer;
//   another body under the same key is refused, as Stripe does;
// * cancel adjustments (POST /v1/billing/meter_event_adjustments, type cancel) of an event
//   received in the last 24 hours;
// * GET /v1/billing/meters/{id}/event_summaries: sums (or counts, or last values, per the
//   meter's formula) of the customer's counted events in [start_time, end_time), in one
//   summary or per UTC hour or day (value_grouping_window), oldest first, windows without
//   events left out, paged by id;
// * faults (POST /__bridge/meter-faults): meter event and adjustment requests answer 429
//   (Stripe's rate limiter, before anything is kept), 500 (api_error, nothing kept, the
//   answer kept under the idempotency key), 401, 403 or 404 (what Stripe answers a
//   revoked or rolled key, a restricted key without the meter event permission, and a
//   path it does not know; nothing kept), or hang past the client's timeout and are
//   then dropped, after recording the event (timeout-recorded: Stripe got it, the answer
//   was lost) or without (timeout-lost);
// * a clock tests can move (POST /__bridge/clock), from which deduplication, the window,
//   cancellation and the summaries' "now" run; and what was recorded, for assertions
//   (GET /__bridge/meter-events).

import { randomUUID } from 'node:crypto';
import type { Answer } from './bridge-subscriptions.ts';

type Obj = Record<string, unknown>;

const DAY = 86_400;
const DEDUPE_SECONDS = DAY;
const CANCEL_SECONDS = DAY;
const PAST_WINDOW_SECONDS = 35 * DAY;
const FUTURE_WINDOW_SECONDS = 5 * 60;
const WINDOWS = { hour: 3600, day: DAY } as const;

const METERS = '/v1/billing/meters';
const METER = /^\/v1\/billing\/meters\/([^/]+)(?:\/(deactivate|reactivate|event_summaries))?$/;
const EVENTS = '/v1/billing/meter_events';
const ADJUSTMENTS = '/v1/billing/meter_event_adjustments';

export type MeterEventError = 'no_meter' | 'archived_meter' | 'meter_event_no_customer_defined' | 'meter_event_invalid_value';

/** A meter event as the bridge received it. Times in Unix seconds (the bridge's clock). */
export interface RecordedMeterEvent {
  identifier: string;
  event_name: string;
  customer: string | null;
  value: number;
  timestamp: number;
  /** When the bridge received it: the 24 hours of deduplication and cancellation run from here. */
  created: number;
  /** The active meter it counts for, or null. */
  meter: string | null;
  cancelled: boolean;
  /** Why Stripe would not count it (its meter error report's reason), or null. */
  error: MeterEventError | null;
}

interface Meter {
  id: string;
  display_name: string;
  event_name: string;
  formula: 'sum' | 'count' | 'last';
  customerKey: string;
  valueKey: string;
  status: 'active' | 'inactive';
  created: number;
  updated: number;
  deactivatedAt: number | null;
}

/** How a meter request fails: see the header. `timeout` is either timeout, by the seeded draw. */
const FAULT_KINDS = ['429', '500', '401', '403', '404', 'timeout-recorded', 'timeout-lost', 'timeout'] as const;
type FaultKind = (typeof FAULT_KINDS)[number];

interface FaultPlan {
  next: FaultKind[];
  rate: number;
  kinds: FaultKind[];
  /** How long a timeout holds the request before dropping the connection. */
  timeoutMs: number;
  random: () => number;
}

/** Answered after `hangMs` by closing the connection without a response. */
export interface Hang {
  hangMs: number;
}

export interface MeterRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  /** The form-encoded body as sent. */
  body: string;
  apiKey: string | null;
  idempotencyKey: string | null;
  /** stripe-mock's answer to the same request (it validates the parameters). */
  forward: () => Promise<Answer>;
}

/** A metered price's usage in a period, as an invoice line bills it. */
export interface MeteredUsage {
  priceId: string;
  meterId: string;
  meterName: string;
  /** What the meter aggregated, before transform_quantity. */
  usage: number;
  /** What is billed: usage divided and rounded per transform_quantity. */
  quantity: number;
  unitAmount: number;
  amount: number;
  currency: string;
  /** A package price (transform_quantity): units per package. */
  divideBy: number | null;
}

export interface BridgeMeters {
  /** Whether the bridge answers this request from here. */
  handles(method: string, path: string): boolean;
  answer(request: MeterRequest): Promise<Answer | Hang>;
  /** The /__bridge/meter-faults, /__bridge/meter-events and /__bridge/clock routes; null if `path` is not one. */
  admin(method: string, path: string, query: URLSearchParams, body: string): Answer | null;
  /** The bridge's time, Unix seconds. */
  now(): number;
  /** A metered price's usage by the customer in [start, end); null if the price is not a metered one the bridge knows. */
  usage(price: Obj, customer: string, start: number, end: number): MeteredUsage | null;
}

const isObject = (value: unknown): value is Obj => typeof value === 'object' && value !== null && !Array.isArray(value);

function invalid(message: string, extra: Obj = {}): Answer {
  return { status: 400, body: { error: { type: 'invalid_request_error', message, ...extra } } };
}

const notFound = (id: string): Answer => ({ ...invalid(`No such billing meter: '${id}'`, { code: 'resource_missing', param: 'id' }), status: 404 });

/** A small seeded generator (mulberry32), so a fault run can be repeated. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function meterObject(m: Meter): Obj {
  return {
    id: m.id,
    object: 'billing.meter',
    created: m.created,
    customer_mapping: { event_payload_key: m.customerKey, type: 'by_id' },
    default_aggregation: { formula: m.formula },
    display_name: m.display_name,
    event_name: m.event_name,
    event_time_window: null,
    livemode: false,
    status: m.status,
    status_transitions: { deactivated_at: m.deactivatedAt },
    updated: m.updated,
    value_settings: { event_payload_key: m.valueKey },
  };
}

/** A list page as Stripe pages one: `limit` (1–100, default 10) after starting_after or before ending_before. */
function page<T extends { id: string }>(all: T[], query: URLSearchParams, url: string): Obj {
  const limit = Math.min(Math.max(Number(query.get('limit') ?? 10) || 10, 1), 100);
  const after = query.get('starting_after');
  const before = query.get('ending_before');
  let from = 0;
  let to = all.length;
  if (after) from = all.findIndex((item) => item.id === after) + 1;
  else if (before) to = Math.max(all.findIndex((item) => item.id === before), 0);
  const data = before && !after ? all.slice(Math.max(to - limit, 0), to) : all.slice(from, from + limit);
  const more = before && !after ? to - limit > 0 : from + limit < all.length;
  return { object: 'list', url, has_more: more, data };
}

function aggregate(formula: Meter['formula'], events: RecordedMeterEvent[]): number {
  if (formula === 'count') return events.length;
  if (formula === 'last') return [...events].sort((a, b) => a.timestamp - b.timestamp || a.created - b.created).at(-1)?.value ?? 0;
  return events.reduce((sum, e) => sum + e.value, 0);
}

export function createBridgeMeters(): BridgeMeters {
  const meters = new Map<string, Meter>();
  const events: RecordedMeterEvent[] = [];
  // Indexes, so a run of 10,000s of events stays linear: the latest event per identifier,
  // and the events per meter and customer.
  const byIdentifier = new Map<string, RecordedMeterEvent>();
  const byCustomer = new Map<string, RecordedMeterEvent[]>();
  const saved = new Map<string, { body: string; answer: Answer; at: number }>();
  const injected: Record<string, number> = {};
  let faults: FaultPlan | null = null;
  let clockOffset = 0;
  const now = () => Math.floor(Date.now() / 1000) + clockOffset;

  const activeMeterFor = (eventName: string) => [...meters.values()].find((m) => m.event_name === eventName && m.status === 'active');
  const counted = (meterId: string, customer: string, start: number, end: number) =>
    (byCustomer.get(`${meterId} ${customer}`) ?? []).filter((e) => !e.cancelled && e.error === null && e.timestamp >= start && e.timestamp < end);

  const createMeter = (params: URLSearchParams, answer: Obj): Answer => {
    const eventName = params.get('event_name') ?? '';
    if (activeMeterFor(eventName)) {
      return invalid(`An active meter with event_name \`${eventName}\` already exists.`, { param: 'event_name' });
    }
    const formula = params.get('default_aggregation[formula]');
    const at = now();
    const meter: Meter = {
      id: String(answer['id']),
      display_name: params.get('display_name') ?? '',
      event_name: eventName,
      formula: formula === 'count' || formula === 'last' ? formula : 'sum',
      customerKey: params.get('customer_mapping[event_payload_key]') ?? 'stripe_customer_id',
      valueKey: params.get('value_settings[event_payload_key]') ?? 'value',
      status: 'active',
      created: at,
      updated: at,
      deactivatedAt: null,
    };
    meters.set(meter.id, meter);
    return { status: 200, body: meterObject(meter) };
  };

  const recordEvent = (params: URLSearchParams): Answer => {
    const at = now();
    const eventName = params.get('event_name') ?? '';
    const timestamp = params.has('timestamp') ? Number(params.get('timestamp')) : at;
    if (timestamp < at - PAST_WINDOW_SECONDS) {
      return invalid('The timestamp must be within the past 35 calendar days.', { param: 'timestamp' });
    }
    if (timestamp > at + FUTURE_WINDOW_SECONDS) {
      return invalid('The timestamp must be no more than 5 minutes in the future.', { param: 'timestamp' });
    }
    const identifier = params.get('identifier') || `mev_${randomUUID().replaceAll('-', '')}`;
    if ((byIdentifier.get(identifier)?.created ?? -Infinity) > at - DEDUPE_SECONDS) {
      return { ...invalid(`An event already exists with identifier ${identifier}.`), headers: { 'stripe-should-retry': 'false' } };
    }
    const meter = [...meters.values()].find((m) => m.event_name === eventName && m.status === 'active') ?? [...meters.values()].find((m) => m.event_name === eventName);
    const customer = meter ? params.get(`payload[${meter.customerKey}]`) : params.get('payload[stripe_customer_id]');
    const rawValue = params.get(`payload[${meter?.valueKey ?? 'value'}]`);
    const value = Number(rawValue);
    const error: MeterEventError | null = !meter
      ? 'no_meter'
      : meter.status !== 'active'
        ? 'archived_meter'
        : !customer
          ? 'meter_event_no_customer_defined'
          : rawValue === null || rawValue.trim() === '' || !Number.isFinite(value)
            ? 'meter_event_invalid_value'
            : null;
    const event: RecordedMeterEvent = { identifier, event_name: eventName, customer, value: Number.isFinite(value) ? value : 0, timestamp, created: at, meter: meter?.id ?? null, cancelled: false, error };
    events.push(event);
    byIdentifier.set(identifier, event);
    const key = `${event.meter} ${customer}`;
    const list = byCustomer.get(key);
    if (list) list.push(event);
    else byCustomer.set(key, [event]);
    const payload = Object.fromEntries([...params].filter(([key]) => key.startsWith('payload[')).map(([key, v]) => [key.slice('payload['.length, -1), v]));
    return { status: 200, body: { object: 'billing.meter_event', created: at, event_name: eventName, identifier, livemode: false, payload, timestamp } };
  };

  const cancelEvent = (params: URLSearchParams): Answer => {
    const eventName = params.get('event_name') ?? '';
    const identifier = params.get('cancel[identifier]') ?? '';
    if ((params.get('type') ?? 'cancel') !== 'cancel') return invalid('Only cancel adjustments are supported.', { param: 'type' });
    const at = now();
    const event = byIdentifier.get(identifier);
    if (!event || event.event_name !== eventName || event.created <= at - CANCEL_SECONDS) {
      // Stripe cancels only events it received in the last 24 hours.
      return invalid(`No meter event with identifier ${identifier} for event_name ${eventName} was received in the last 24 hours.`, { param: 'cancel[identifier]' });
    }
    event.cancelled = true;
    return { status: 200, body: { object: 'billing.meter_event_adjustment', cancel: { identifier }, event_name: eventName, livemode: false, status: 'complete', type: 'cancel' } };
  };

  const summaries = (meter: Meter, query: URLSearchParams): Answer => {
    const customer = query.get('customer') ?? '';
    const start = Number(query.get('start_time'));
    const end = Number(query.get('end_time'));
    for (const [param, value] of [['start_time', start], ['end_time', end]] as const) {
      if (!Number.isInteger(value) || value % 60 !== 0) return invalid(`${param} must be aligned with minute boundaries.`, { param });
    }
    if (end <= start) return invalid('end_time must be after start_time.', { param: 'end_time' });
    const grouping = query.get('value_grouping_window');
    if (grouping !== null && grouping !== 'hour' && grouping !== 'day') return invalid('value_grouping_window must be hour or day.', { param: 'value_grouping_window' });
    const size = grouping ? WINDOWS[grouping] : null;
    const windows: [number, number][] = [];
    if (size === null) windows.push([start, end]);
    else for (let from = Math.floor(start / size) * size; from < end; from += size) windows.push([Math.max(from, start), Math.min(from + size, end)]);
    const data = windows
      .map(([from, to]) => ({ from, to, counted: counted(meter.id, customer, from, to) }))
      .filter(({ counted: c }) => size === null || c.length > 0)
      .map(({ from, to, counted: c }) => ({
        id: `mtrusg_${meter.id.replace(/^[a-z]+_/, '')}${customer.replace(/^cus_/, '')}${from.toString(36)}`,
        object: 'billing.meter_event_summary',
        aggregated_value: aggregate(meter.formula, c),
        end_time: to,
        livemode: false,
        meter: meter.id,
        start_time: from,
      }));
    return { status: 200, body: page(data, query, `${METERS}/${meter.id}/event_summaries`) };
  };

  /** The request as Stripe runs it, once stripe-mock found its parameters valid. */
  const run = async (request: MeterRequest): Promise<Answer> => {
    const upstream = await request.forward();
    if (upstream.status !== 200 || !isObject(upstream.body)) return upstream;
    const params = new URLSearchParams(request.body);
    if (request.path === METERS) {
      if (request.method === 'POST') return createMeter(params, upstream.body);
      const status = request.query.get('status');
      const listed = [...meters.values()].filter((m) => status === null || m.status === status).sort((a, b) => b.created - a.created).map(meterObject);
      return { status: 200, body: page(listed as (Obj & { id: string })[], request.query, METERS) };
    }
    if (request.path === EVENTS) return recordEvent(params);
    if (request.path === ADJUSTMENTS) return cancelEvent(params);
    const [, id = '', action] = METER.exec(request.path) ?? [];
    const meter = meters.get(decodeURIComponent(id));
    if (!meter) return notFound(id);
    if (action === 'event_summaries') return summaries(meter, request.query);
    if (request.method === 'POST') {
      if (action === 'reactivate' && activeMeterFor(meter.event_name)?.id !== meter.id && activeMeterFor(meter.event_name)) {
        return invalid(`An active meter with event_name \`${meter.event_name}\` already exists.`, { param: 'event_name' });
      }
      meter.updated = now();
      if (action === 'deactivate') Object.assign(meter, { status: 'inactive', deactivatedAt: meter.updated });
      if (action === 'reactivate') Object.assign(meter, { status: 'active', deactivatedAt: null });
      if (!action && params.has('display_name')) meter.display_name = params.get('display_name') ?? '';
    }
    return { status: 200, body: meterObject(meter) };
  };

  const drawFault = (): Exclude<FaultKind, 'timeout'> | null => {
    if (!faults) return null;
    let kind = faults.next.shift() ?? null;
    if (!kind && faults.kinds.length > 0 && faults.random() < faults.rate) {
      kind = faults.kinds[Math.floor(faults.random() * faults.kinds.length)] ?? null;
    }
    if (kind === 'timeout') kind = faults.random() < 0.5 ? 'timeout-recorded' : 'timeout-lost';
    if (kind) injected[kind] = (injected[kind] ?? 0) + 1;
    return kind;
  };

  return {
    handles: (method, path) =>
      (method === 'POST' && (path === EVENTS || path === ADJUSTMENTS)) || path === METERS || METER.test(path),

    async answer(request) {
      const faultable = request.method === 'POST' && (request.path === EVENTS || request.path === ADJUSTMENTS);
      const fault = faultable ? drawFault() : null;
      if (fault === '429') {
        return { status: 429, body: { error: { type: 'invalid_request_error', code: 'rate_limit', message: 'Too many requests (the bridge, as Stripe would)' } } };
      }
      if (fault === '401' || fault === '403' || fault === '404') return refusedKeyOrPath(fault, request);
      const answerKey = request.idempotencyKey && request.method === 'POST' ? `${request.apiKey ?? ''} ${request.idempotencyKey}` : null;
      const before = answerKey ? saved.get(answerKey) : undefined;
      if (before && before.at > now() - DAY) {
        if (before.body !== request.body) {
          return invalid(`Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${request.idempotencyKey ?? ''}' if you meant to execute a different request.`, { type: 'idempotency_error' });
        }
        return { ...before.answer, headers: { ...before.answer.headers, 'idempotent-replayed': 'true' } };
      }
      const keep = (answer: Answer) => {
        if (answerKey && (answer.status === 200 || answer.status >= 500)) saved.set(answerKey, { body: request.body, answer, at: now() });
        return answer;
      };
      if (fault === '500') {
        return keep({ status: 500, body: { error: { type: 'api_error', message: 'Something went wrong (the bridge, as Stripe would)' } }, headers: { 'stripe-should-retry': 'false' } });
      }
      if (fault === 'timeout-lost') return { hangMs: faults?.timeoutMs ?? 0 };
      const answer = keep(await run(request));
      return fault === 'timeout-recorded' ? { hangMs: faults?.timeoutMs ?? 0 } : answer;
    },

    admin(method, path, query, body) {
      if (path === '/__bridge/meter-faults') {
        if (method === 'DELETE') faults = null;
        if (method === 'POST') {
          const given = JSON.parse(body || '{}') as { rate?: number; kinds?: string[]; next?: string[]; seed?: number; timeoutMs?: number };
          const unknown = [...(given.kinds ?? []), ...(given.next ?? [])].filter((k) => !(FAULT_KINDS as readonly string[]).includes(k));
          if (unknown.length > 0) return { status: 400, body: { error: `unknown fault kinds ${unknown.join(', ')}; known: ${FAULT_KINDS.join(', ')}` } };
          faults = {
            next: [...((given.next ?? []) as FaultKind[])],
            rate: given.rate ?? 0,
            kinds: [...((given.kinds ?? []) as FaultKind[])],
            timeoutMs: given.timeoutMs ?? 2000,
            random: given.seed === undefined ? Math.random : seeded(given.seed),
          };
          for (const key of Object.keys(injected)) delete injected[key];
        }
        return { status: 200, body: { faults: faults && { next: faults.next, rate: faults.rate, kinds: faults.kinds, timeoutMs: faults.timeoutMs }, injected } };
      }
      if (path === '/__bridge/meter-events') {
        if (method === 'DELETE') {
          events.length = 0;
          byIdentifier.clear();
          byCustomer.clear();
        }
        const customer = query.get('customer');
        const eventName = query.get('event_name');
        return { status: 200, body: events.filter((e) => (customer === null || e.customer === customer) && (eventName === null || e.event_name === eventName)) };
      }
      if (path === '/__bridge/clock') {
        if (method === 'DELETE') clockOffset = 0;
        if (method === 'POST') {
          const given = JSON.parse(body || '{}') as { now?: number; advance?: number };
          if (given.now !== undefined) clockOffset = given.now - Math.floor(Date.now() / 1000);
          if (given.advance !== undefined) clockOffset += given.advance;
        }
        return { status: 200, body: { now: now() } };
      }
      return null;
    },

    now,

    usage(price, customer, start, end) {
      const recurring = isObject(price['recurring']) ? price['recurring'] : null;
      const meter = recurring?.['usage_type'] === 'metered' ? meters.get(String(recurring['meter'])) : undefined;
      if (!meter) return null;
      const usage = aggregate(meter.formula, counted(meter.id, customer, start, end));
      const transform = isObject(price['transform_quantity']) ? price['transform_quantity'] : null;
      const divideBy = transform ? Number(transform['divide_by']) : null;
      // Stripe bills no negative quantity: a period whose sum is below 0 bills 0.
      const units = Math.max(usage, 0);
      const quantity = divideBy ? (transform?.['round'] === 'down' ? Math.floor(units / divideBy) : Math.ceil(units / divideBy)) : units;
      const unitAmount = Number(price['unit_amount_decimal'] ?? price['unit_amount'] ?? 0);
      return {
        priceId: String(price['id']),
        meterId: meter.id,
        meterName: meter.display_name,
        usage,
        quantity,
        unitAmount,
        amount: Math.round(quantity * unitAmount),
        currency: String(price['currency']),
        divideBy,
      };
    },
  };
}

/** Stripe's answers to a request it refuses before looking at it, as Stripe words them:
 *  the key shown masked but for its last 4 characters. */
function refusedKeyOrPath(status: '401' | '403' | '404', request: MeterRequest): Answer {
  const key = request.apiKey ?? '';
  const prefix = /^[sr]k_(?:test|live)_/.exec(key)?.[0] ?? '';
  const masked = `${prefix}${'*'.repeat(Math.max(key.length - prefix.length - 4, 0))}${key.slice(-4)}`;
  const message = {
    '401': `Expired API Key provided: ${masked}`,
    '403': `The provided key '${masked}' does not have the required permissions for this endpoint on account 'acct_bridge'. Having the 'rak_billing_meter_event_write' permission would allow this request to continue.`,
    '404': `Unrecognized request URL (${request.method}: ${request.path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`,
  }[status];
  return { status: Number(status), body: { error: { type: 'invalid_request_error', message } } };
}
