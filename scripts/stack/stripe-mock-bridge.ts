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

export function bridgeBody(path: string, body: string): string {
  const renames = RENAMES[path];
  if (!renames || body === '') return body;
  const params = new URLSearchParams(body);
  const out = new URLSearchParams();
  for (const [key, value] of params) {
    const root = key.split('[')[0] ?? key;
    const renamed = renames[root];
    out.append(renamed ? renamed + key.slice(root.length) : key, value);
  }
  return out.toString();
}

export interface StripeMockBridge {
  url: string;
  close(): Promise<void>;
}

export async function startStripeMockBridge(target: string, port = 0): Promise<StripeMockBridge> {
  const targetUrl = new URL(target);
  const recorded: RecordedStripeRequest[] = [];

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
          res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
          upstreamRes.pipe(res);
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
