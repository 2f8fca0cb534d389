// A small HTTP bridge in front of stripe-mock, for the local stack and the tests.
//
// 1. Version bridge. stripe-mock v0.197.0 validates requests against Stripe's OpenAPI
//    spec 2025-09-30.clover; the stripe package we use pins 2026-10-28.endive. One
//    parameter we send differs: Checkout's `allowed_payment_method_types` (endive)
//    replaced `payment_method_types` (clover), and the mock rejects the new name.
//    The bridge renames it back, so the mock still validates the values. Every other
//    parameter we send exists in both versions (checked; see README "stripe-mock").
// 2. Recorder. stripe-mock is stateless and does not echo metadata or honour
//    idempotency keys, so tests assert on what we sent: the bridge keeps the last
//    requests and serves them at GET /__bridge/requests (DELETE clears them).
// 3. Memory of prices and webhook endpoints. Prices are found by lookup key (checkout
//    and /plans) and billing:setup finds what it made before, which a stateless mock
//    cannot answer. The bridge remembers the prices and webhook endpoints created
//    through it (the mock's answer, with the values we sent: lookup key, amount,
//    currency, interval, product; url, events, API version) and answers their list
//    calls from that memory, in the mock's own shape. Nothing else is remembered.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

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

type Obj = Record<string, unknown>;

/** `a[0]=x&a[1]=y` (how stripe-node encodes a list) -> [x, y]. */
function listParam(params: URLSearchParams, name: string): string[] {
  return [...params.entries()].filter(([key]) => key === name || key.startsWith(`${name}[`)).map(([, value]) => value);
}

class Memory {
  readonly prices = new Map<string, Obj>();
  readonly endpoints = new Map<string, Obj>();

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
        unit_amount: Number(params.get('unit_amount') ?? answer['unit_amount']),
        recurring: { ...(answer['recurring'] as Obj | null), interval: params.get('recurring[interval]') },
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

const REMEMBERED = /^\/v1\/(prices|webhook_endpoints)(\/[^/]+)?$/;

export async function startStripeMockBridge(target: string, port = 0): Promise<StripeMockBridge> {
  const targetUrl = new URL(target);
  const recorded: RecordedStripeRequest[] = [];
  const memory = new Memory();

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://bridge');
      if (url.pathname === '/__bridge/requests') {
        if (req.method === 'DELETE') recorded.length = 0;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(recorded));
        return;
      }
      const body = Buffer.concat(chunks).toString('utf8');
      recorded.push({
        method: req.method ?? 'GET',
        path: url.pathname,
        idempotencyKey: header(req, 'idempotency-key'),
        stripeVersion: header(req, 'stripe-version'),
        params: Object.fromEntries(req.method === 'GET' ? url.searchParams : new URLSearchParams(body)),
      });
      if (recorded.length > MAX_RECORDED) recorded.shift();

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
            const out =
              memory.list(method, url.pathname, url.searchParams, answer) ??
              memory.remember(method, url.pathname, new URLSearchParams(body), answer);
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
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function header(req: http.IncomingMessage, name: string): string | null {
  const value = req.headers[name];
  return typeof value === 'string' ? value : null;
}
