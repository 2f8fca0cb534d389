// A small HTTP bridge in front of stripe-mock, for the local stack and the tests.
//
// 1. Version bridge. stripe-mock v0.197.0 validates requests against Stripe's OpenAPI
//    spec 2025-09-30.clover; the stripe package we use pins 2026-10-28.endive. One
//    parameter we send differs: Checkout's `allowed_payment_method_types` (endive)
//    replaced `payment_method_types` (clover), and the mock rejects the new name.
//    The bridge renames it back, so the mock still validates the values. Every other
//    parameter we send exists in both versions (checked; see docs/testing.md, "stripe-mock").
// 2. Recorder. stripe-mock is stateless and does not echo metadata or honour
//    idempotency keys, so tests assert on what we sent: the bridge keeps the last
//    requests and serves them at GET /__bridge/requests (DELETE clears them).
// 3. An event log. stripe-mock answers /v1/events with one fixture event whatever is
//    asked, so the catch-up and replays could not be tested against it. The bridge
//    serves GET /v1/events (types[], created[gte|gt|lte|lt], limit, starting_after,
//    newest first, as Stripe pages it) and GET /v1/events/{id} from the events a test
//    posts to /__bridge/events (DELETE clears them). POST /__bridge/rate-limit
//    {"times": n} makes the next n event reads answer 429, as Stripe's rate limiter does.
//    One log per API key that asked for its own (POST /__bridge/events?key=sk_…), as
//    Stripe keeps one per account: a test whose updates make events (7) keeps them out
//    of the log another test counts. Every other key shares the default log.
// 4. Objects. GET of a path posted to /__bridge/objects ({"path", "body"}) answers that
//    body: a Checkout Session or a subscription as a test needs it (the mock's fixtures
//    carry no metadata). A path with a query (`/v1/subscriptions?customer=cus_…`)
//    answers a GET of that path whose query has those parameters, whatever else it
//    has (the SDK adds limit, status): a list call for one customer. DELETE clears them.
// 5. Memory of prices and webhook endpoints. Prices are found by lookup key (checkout
//    and /plans) and billing:setup finds what it made before, which a stateless mock
//    cannot answer. The bridge remembers the prices and webhook endpoints created
//    through it (the mock's answer, with the values we sent: lookup key, amount and
//    decimal amount, currency, interval, usage type and meter, transform_quantity,
//    product; url, events, API version) and answers their list
//    calls from that memory, in the mock's own shape. Products' names are remembered
//    for the hosted pages (6).
// 6. Stripe's hosted pages, locally (hosted-pages.ts): for an app registered with the
//    bridge (`apps`, or POST /__bridge/apps), a Checkout Session or portal session
//    created for it gets a `url` on this bridge, where a local Checkout and portal
//    page play the customer and send the app the events Stripe would. The portal
//    follows the portal configuration last written (billing:setup's), or the session's
//    own `configuration`: a seats control where it allows quantity changes.
// 7. Subscription updates (bridge-subscriptions.ts): a quantity update is kept, answered
//    and logged with the events Stripe would send (the subscription updated, the
//    proration), idempotency keys are honoured, and a test can make the next updates of
//    a subscription fail (429, 500) or take longer, and read how many were in flight.
// 8. Billing Meters (bridge-meters.ts): meters created through the bridge are kept and
//    listed; meter events are recorded, an identifier refused for 24 hours and a
//    timestamp outside the past 35 days or more than 5 minutes ahead refused, as Stripe
//    does; cancel adjustments take an event out; event_summaries are summed from what was
//    recorded. POST /__bridge/meter-faults makes meter requests answer 429 or 500 or time
//    out (with the event recorded or lost), POST /__bridge/clock moves the bridge's time,
//    GET /__bridge/meter-events lists what was recorded. A renewal the portal plays
//    (6) bills the closing period's usage of the metered prices bought at Checkout, on
//    its invoice.created and invoice.paid; the portal shows the usage so far.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBridgeMeters, type Hang } from './bridge-meters.ts';
import { createBridgeSubscriptions, type Answer } from './bridge-subscriptions.ts';
import { createHostedPages, type HostedPages, type LocalApp } from './hosted-pages.ts';

export interface RecordedStripeRequest {
  method: string;
  path: string;
  idempotencyKey: string | null;
  stripeVersion: string | null;
  /** The form-encoded body (or a GET's query) as we sent it, before any renaming. */
  params: Record<string, string>;
}

/** Renamed parameters, per path: endive name -> clover name. */
const RENAMES: Record<string, Record<string, string>> = {
  '/v1/checkout/sessions': { allowed_payment_method_types: 'payment_method_types' },
};

const MAX_RECORDED = 1000;

/** Values the mock's spec does not know yet, per path and parameter: the API version a
 *  webhook endpoint is created with is an enum there that ends at its own version. */
const MOCK_API_VERSION = '2025-09-30.clover';
const VALUES: Record<string, Record<string, (value: string) => string>> = {
  '/v1/webhook_endpoints': { api_version: (value) => (value > MOCK_API_VERSION ? MOCK_API_VERSION : value) },
};

export function bridgeBody(path: string, body: string): string {
  const renames = RENAMES[path];
  const values = VALUES[path];
  if ((!renames && !values) || body === '') return body;
  const params = new URLSearchParams(body);
  const out = new URLSearchParams();
  for (const [key, value] of params) {
    const root = key.split('[')[0] ?? key;
    const renamed = renames?.[root];
    out.append(renamed ? renamed + key.slice(root.length) : key, values?.[key]?.(value) ?? value);
  }
  return out.toString();
}

export interface StripeMockBridge {
  url: string;
  close(): Promise<void>;
}

type StripeEventLike = { id: string; type: string; created: number };

/** GET /v1/events as Stripe answers it, from the posted log. */
function listEvents(log: readonly StripeEventLike[], query: URLSearchParams): { object: 'list'; url: string; has_more: boolean; data: StripeEventLike[] } {
  // The SDK sends types[0]=…&types[1]=…; curl users send types[]=….
  const types = new Set([...query].filter(([key]) => /^types(\[\d*\])?$/.test(key) || key === 'type').map(([, value]) => value));
  const bound = (op: string) => (query.has(`created[${op}]`) ? Number(query.get(`created[${op}]`)) : null);
  const [gte, gt, lte, lt] = [bound('gte'), bound('gt'), bound('lte'), bound('lt')];
  const matching = log
    .filter((e) => types.size === 0 || types.has(e.type))
    .filter((e) => (gte === null || e.created >= gte) && (gt === null || e.created > gt) && (lte === null || e.created <= lte) && (lt === null || e.created < lt))
    .sort((a, b) => b.created - a.created || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  const after = query.get('starting_after');
  const from = after ? matching.findIndex((e) => e.id === after) + 1 : 0;
  const limit = Math.min(Math.max(Number(query.get('limit') ?? 10), 1), 100);
  const data = matching.slice(from, from + limit);
  return { object: 'list', url: '/v1/events', has_more: from + limit < matching.length, data };
}

function json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'request-id': 'req_bridge', ...headers });
  res.end(JSON.stringify(body));
}

/** The API key a request is made with (stripe-node sends `Authorization: Bearer sk_…`). */
function apiKeyOf(req: http.IncomingMessage): string | null {
  return /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1] ?? null;
}

type Obj = Record<string, unknown>;

/** `a[0]=x&a[1]=y` (how stripe-node encodes a list) -> [x, y]. */
function listParam(params: URLSearchParams, name: string): string[] {
  return [...params.entries()].filter(([key]) => key === name || key.startsWith(`${name}[`)).map(([, value]) => value);
}

class Memory {
  readonly prices = new Map<string, Obj>();
  readonly endpoints = new Map<string, Obj>();
  readonly products = new Map<string, Obj>();

  /** Stripe's refusal of a create this memory knows to be wrong, or null. A second price
   *  with a lookup key another price holds is refused unless it takes the key over, as
   *  Stripe does; without this, two setups racing would leave two prices under one key. */
  refusal(method: string, path: string, params: URLSearchParams): Obj | null {
    if (method !== 'POST' || path !== '/v1/prices') return null;
    const lookupKey = params.get('lookup_key');
    if (!lookupKey || params.get('transfer_lookup_key') === 'true') return null;
    const holder = [...this.prices.values()].find((p) => p['lookup_key'] === lookupKey);
    if (!holder) return null;
    return { error: { type: 'invalid_request_error', param: 'lookup_key', message: `A price (\`${String(holder['id'])}\`) already uses that lookup key.` } };
  }

  /** The mock's answer to a create or update, made to say what we sent; remembered. */
  remember(method: string, path: string, params: URLSearchParams, answer: Obj): Obj {
    if (method !== 'POST') return answer;
    if (path === '/v1/prices') {
      const lookupKey = params.get('lookup_key');
      if (lookupKey && params.get('transfer_lookup_key') === 'true') {
        for (const other of this.prices.values()) if (other['lookup_key'] === lookupKey) other['lookup_key'] = null;
      }
      const price = {
        ...answer,
        active: true,
        lookup_key: lookupKey,
        product: params.get('product') ?? answer['product'],
        currency: params.get('currency') ?? answer['currency'],
        ...unitAmountOf(params, answer),
        // Stripe's defaults for what was not sent (the mock's fixture says otherwise).
        recurring: {
          ...(answer['recurring'] as Obj | null),
          interval: params.get('recurring[interval]'),
          interval_count: Number(params.get('recurring[interval_count]') ?? 1),
          usage_type: params.get('recurring[usage_type]') ?? 'licensed',
          meter: params.get('recurring[meter]'),
        },
        billing_scheme: params.get('billing_scheme') ?? 'per_unit',
        transform_quantity: params.has('transform_quantity[divide_by]')
          ? { divide_by: Number(params.get('transform_quantity[divide_by]')), round: params.get('transform_quantity[round]') ?? 'up' }
          : null,
        type: 'recurring',
      };
      this.prices.set(String(answer['id']), price);
      return price;
    }
    const priceUpdate = /^\/v1\/prices\/([^/]+)$/.exec(path);
    if (priceUpdate) {
      const price = this.prices.get(priceUpdate[1] ?? '');
      if (price && params.get('active') !== null) price['active'] = params.get('active') === 'true';
      return price ?? answer;
    }
    if (path === '/v1/products' || path.startsWith('/v1/products/')) {
      const id = params.get('id') ?? (path === '/v1/products' ? String(answer['id']) : path.slice('/v1/products/'.length));
      const product = { ...this.products.get(id), ...answer, id, ...(params.get('name') !== null && { name: params.get('name') }) };
      this.products.set(id, product);
      return product;
    }
    if (path === '/v1/webhook_endpoints') {
      const endpoint = {
        ...answer,
        url: params.get('url'),
        enabled_events: listParam(params, 'enabled_events'),
        api_version: params.get('api_version'),
        status: 'enabled',
      };
      this.endpoints.set(String(answer['id']), endpoint);
      return endpoint;
    }
    return answer;
  }

  /** A list call this memory answers, or null to let the mock answer it. */
  list(method: string, path: string, query: URLSearchParams, answer: Obj): Obj | null {
    if (method !== 'GET') return null;
    if (path === '/v1/prices' && listParam(query, 'lookup_keys').length > 0) {
      const keys = listParam(query, 'lookup_keys');
      const active = query.get('active');
      const data = [...this.prices.values()].filter(
        (p) => keys.includes(String(p['lookup_key'])) && (active === null || p['active'] === (active === 'true')),
      );
      return { ...answer, data, has_more: false };
    }
    if (path === '/v1/webhook_endpoints') return { ...answer, data: [...this.endpoints.values()], has_more: false };
    return null;
  }
}

const REMEMBERED = /^\/v1\/(prices|webhook_endpoints|products|checkout\/sessions|billing_portal\/sessions|billing_portal\/configurations)(\/[^/]+)?$/;

export interface BridgeOptions {
  /** Apps whose Checkout and portal sessions get the local hosted pages (see hosted-pages.ts). */
  apps?: readonly LocalApp[];
}

export async function startStripeMockBridge(target: string, port = 0, options: BridgeOptions = {}): Promise<StripeMockBridge> {
  const targetUrl = new URL(target);
  const recorded: RecordedStripeRequest[] = [];
  const eventLog: StripeEventLike[] = [];
  const keyedLogs = new Map<string, StripeEventLike[]>();
  const logOf = (key: string | null) => (key !== null && keyedLogs.get(key)) || eventLog;
  let rateLimited = 0;
  const memory = new Memory();
  const objects = new Map<string, unknown>();
  const subscriptions = createBridgeSubscriptions(objects);
  const meters = createBridgeMeters();
  // Known once listening (the port may be 0): the pages' URLs are on this server.
  const hosted: { pages?: HostedPages } = {};

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://bridge');
      const body = Buffer.concat(chunks).toString('utf8');
      if (url.pathname === '/__bridge/requests') {
        if (req.method === 'DELETE') recorded.length = 0;
        json(res, 200, recorded);
        return;
      }
      if (url.pathname === '/__bridge/events') {
        const key = url.searchParams.get('key');
        if (req.method === 'POST' && key !== null && !keyedLogs.has(key)) keyedLogs.set(key, []);
        const log = logOf(key);
        if (req.method === 'DELETE') log.length = 0;
        if (req.method === 'POST') log.push(...(JSON.parse(body || '[]') as StripeEventLike[]));
        json(res, 200, { count: log.length });
        return;
      }
      const admin = subscriptions.admin(req.method ?? 'GET', url.pathname, body) ?? meters.admin(req.method ?? 'GET', url.pathname, url.searchParams, body);
      if (admin) {
        json(res, admin.status, admin.body);
        return;
      }
      if (url.pathname === '/__bridge/rate-limit') {
        rateLimited = (JSON.parse(body) as { times: number }).times;
        json(res, 200, { times: rateLimited });
        return;
      }
      if (url.pathname === '/__bridge/apps' && req.method === 'POST') {
        hosted.pages?.register(JSON.parse(body) as LocalApp);
        json(res, 200, { registered: true });
        return;
      }
      if (hosted.pages?.handle(req, res, url, body)) return;
      if (url.pathname === '/__bridge/objects') {
        if (req.method === 'DELETE') objects.clear();
        if (req.method === 'POST') {
          const { path, body: object } = JSON.parse(body) as { path: string; body: unknown };
          objects.set(path, object);
        }
        json(res, 200, { count: objects.size });
        return;
      }
      recorded.push({
        method: req.method ?? 'GET',
        path: url.pathname,
        idempotencyKey: header(req, 'idempotency-key'),
        stripeVersion: header(req, 'stripe-version'),
        params: Object.fromEntries(req.method === 'GET' ? url.searchParams : new URLSearchParams(body)),
      });
      if (recorded.length > MAX_RECORDED) recorded.shift();

      if (req.method === 'GET' && (url.pathname === '/v1/events' || url.pathname.startsWith('/v1/events/'))) {
        if (rateLimited > 0) {
          rateLimited -= 1;
          json(res, 429, { error: { type: 'invalid_request_error', code: 'rate_limit', message: 'Too many requests (the bridge, as Stripe would)' } });
          return;
        }
        const log = logOf(apiKeyOf(req));
        if (url.pathname === '/v1/events') {
          json(res, 200, listEvents(log, url.searchParams));
          return;
        }
        const id = decodeURIComponent(url.pathname.slice('/v1/events/'.length));
        const event = log.find((e) => e.id === id);
        if (event) json(res, 200, event);
        else json(res, 404, { error: { type: 'invalid_request_error', code: 'resource_missing', param: 'id', message: `No such event: '${id}'` } });
        return;
      }
      if (meters.handles(req.method ?? 'GET', url.pathname)) {
        const answer = (a: Answer | Hang) => {
          // A timeout: the request is held past the client's patience, then dropped unanswered.
          if ('hangMs' in a) setTimeout(() => res.destroy(), a.hangMs).unref();
          else json(res, a.status, a.body, a.headers);
        };
        meters
          .answer({
            method: req.method ?? 'GET',
            path: url.pathname,
            query: url.searchParams,
            body,
            apiKey: apiKeyOf(req),
            idempotencyKey: header(req, 'idempotency-key'),
            forward: () => forward(targetUrl, req, body),
          })
          .then(answer, (error: unknown) => answer({ status: 502, body: { error: { type: 'api_error', message: `bridge: ${error instanceof Error ? error.message : String(error)}` } } }));
        return;
      }
      const posted = req.method === 'GET' ? postedObject(objects, url) : undefined;
      if (posted !== undefined) {
        json(res, 200, posted);
        return;
      }
      const listed = req.method === 'GET' && url.pathname === '/v1/subscriptions' ? subscriptions.list(url.searchParams) : null;
      if (listed) {
        json(res, 200, listed);
        return;
      }
      if (subscriptions.isUpdate(req.method ?? 'GET', url.pathname, body)) {
        const answer = (a: Answer) => json(res, a.status, a.body, a.headers);
        subscriptions
          .update({
            path: url.pathname,
            body,
            idempotencyKey: header(req, 'idempotency-key'),
            forward: () => forward(targetUrl, req, bridgeBody(url.pathname, body)),
            log: logOf(apiKeyOf(req)),
          })
          .then(answer, (error: unknown) => answer({ status: 502, body: { error: { type: 'api_error', message: `bridge: ${error instanceof Error ? error.message : String(error)}` } } }));
        return;
      }

      const refusal = memory.refusal(req.method ?? 'GET', url.pathname, new URLSearchParams(body));
      if (refusal) {
        json(res, 400, refusal);
        return;
      }

      const forwarded = bridgeBody(url.pathname, body);
      const headers = { ...req.headers, host: targetUrl.host, 'content-length': String(Buffer.byteLength(forwarded)) };
      const upstream = http.request(
        { host: targetUrl.hostname, port: targetUrl.port, method: req.method, path: req.url, headers },
        (upstreamRes) => {
          if (!REMEMBERED.test(url.pathname) || upstreamRes.statusCode !== 200) {
            res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
            upstreamRes.pipe(res);
            return;
          }
          const parts: Buffer[] = [];
          upstreamRes.on('data', (chunk: Buffer) => parts.push(chunk));
          upstreamRes.on('end', () => {
            const answer = JSON.parse(Buffer.concat(parts).toString('utf8')) as Obj;
            const method = req.method ?? 'GET';
            const params = new URLSearchParams(body);
            const listed = memory.list(method, url.pathname, url.searchParams, answer);
            const remembered = listed ?? memory.remember(method, url.pathname, params, answer);
            const out = listed ?? (method === 'POST' && hosted.pages ? hosted.pages.remember(url.pathname, params, remembered) : remembered);
            const text = JSON.stringify(out);
            const headers = { ...upstreamRes.headers, 'content-length': String(Buffer.byteLength(text)) };
            delete headers['transfer-encoding'];
            res.writeHead(200, headers);
            res.end(text);
          });
        },
      );
      upstream.on('error', (error) => {
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { type: 'api_error', message: `stripe-mock unreachable: ${error.message}` } }));
      });
      upstream.end(forwarded);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${address.port}`;
  const pages = createHostedPages({ baseUrl: url, prices: memory.prices, products: memory.products, objects, meters });
  hosted.pages = pages;
  for (const app of options.apps ?? []) pages.register(app);
  return {
    url,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      await pages.close();
    },
  };
}

/** unit_amount and unit_amount_decimal as sent (a metered price may give only a decimal,
 *  e.g. 0.01 cent per unit); the mock's fixture answers other amounts. */
function unitAmountOf(params: URLSearchParams, answer: Obj): { unit_amount: number | null; unit_amount_decimal: string } {
  const decimal = params.get('unit_amount_decimal');
  const amount = params.get('unit_amount') ?? (decimal === null ? String(answer['unit_amount']) : null);
  if (amount !== null) return { unit_amount: Number(amount), unit_amount_decimal: amount };
  return { unit_amount: Number.isInteger(Number(decimal)) ? Number(decimal) : null, unit_amount_decimal: String(decimal) };
}

/** The object posted for this GET: its exact path, else a path with a query that this
 *  request's query includes. */
function postedObject(objects: ReadonlyMap<string, unknown>, url: URL): unknown {
  if (objects.has(url.pathname)) return objects.get(url.pathname);
  for (const [path, object] of objects) {
    const at = path.indexOf('?');
    if (at < 0 || path.slice(0, at) !== url.pathname) continue;
    const wanted = new URLSearchParams(path.slice(at + 1));
    if ([...wanted].every(([key, value]) => url.searchParams.getAll(key).includes(value))) return object;
  }
  return undefined;
}

/** The request, sent on to stripe-mock; its answer. */
function forward(target: URL, req: http.IncomingMessage, body: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers = { ...req.headers, host: target.host, 'content-length': String(Buffer.byteLength(body)) };
    const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (upstreamRes) => {
      const parts: Buffer[] = [];
      upstreamRes.on('data', (chunk: Buffer) => parts.push(chunk));
      upstreamRes.on('end', () => {
        try {
          resolve({ status: upstreamRes.statusCode ?? 502, body: JSON.parse(Buffer.concat(parts).toString('utf8')) as unknown });
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      });
    });
    upstream.on('error', reject);
    upstream.end(body);
  });
}

function header(req: http.IncomingMessage, name: string): string | null {
  const value = req.headers[name];
  return typeof value === 'string' ? value : null;
}
