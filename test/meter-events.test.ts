// The SDK-free meter event sender (src/stripe/meter-events.ts) against a local node:http
// server, for answers and failures the recording bridge does not produce: what it sends
// and how Stripe's meter events behave are tested against the bridge in
// test/meters-report.test.ts.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { nodeFetch } from '../src/core/node-fetch.ts';
import { classify } from '../src/meters/send.ts';
import { createMeterEventSender, StripeRequestError } from '../src/stripe/meter-events.ts';

/** What the server answers next: a status and a body. */
let answer: { status: number; body: string } = { status: 200, body: '{}' };
let requests = 0;
const server = http.createServer((req, res) => {
  requests += 1;
  req.resume();
  req.on('end', () => {
    res.writeHead(answer.status, { 'content-type': 'application/json' });
    res.end(answer.body);
  });
});
let apiBase: URL;

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  apiBase = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});
beforeEach(() => {
  requests = 0;
  answer = { status: 200, body: '{}' };
});

const params = { event_name: 'pageviews', identifier: 'mev_test', payload: { stripe_customer_id: 'cus_1', value: '1' } };
const failureOf = (send: (p: typeof params) => Promise<void>) => send(params).then(() => null, (error: unknown) => error);

describe('the meter event sender', () => {
  const SECRET = 'SECRETVALUE0123';

  it.each([
    ['node:http', nodeFetch],
    ['the global fetch', fetch],
  ])('with a key a header cannot carry (over %s): sends nothing, tries once, and its error quotes no header, so not the key', async (_transport, transport) => {
    let calls = 0;
    const counted: typeof fetch = (input, init) => {
      calls += 1;
      return transport(input, init);
    };
    const send = createMeterEventSender({ secretKey: `sk_test_${SECRET}\nx`, apiBase }, { fetch: counted, timeoutMs: 1_000 });
    const error = await failureOf(send);
    expect(calls).toBe(1);
    expect(error).toBeInstanceOf(StripeRequestError);
    expect((error as StripeRequestError).statusCode).toBeUndefined();
    expect((error as StripeRequestError).cause).toBeUndefined();
    expect(inspect(error, { depth: 10 })).not.toContain(SECRET);
    expect(JSON.stringify(error)).not.toContain(SECRET);
    expect(requests).toBe(0);
  });

  it('keeps the cause of a network failure (nothing listens): the connection error says what happened', async () => {
    const send = createMeterEventSender({ secretKey: 'sk_test_abc', apiBase: new URL('http://127.0.0.1:9') }, { fetch: nodeFetch, timeoutMs: 1_000, maxNetworkRetries: 0 });
    const error = await failureOf(send);
    expect(error).toMatchObject({ statusCode: undefined, message: 'An error occurred with our connection to Stripe.' });
    expect((error as StripeRequestError).cause).toBeInstanceOf(TypeError);
    expect(((error as StripeRequestError).cause as TypeError).message).toBe('fetch failed');
  });
});

describe('what a Stripe answer means to the sender', () => {
  const send = () => createMeterEventSender({ secretKey: 'sk_test_abc', apiBase }, { fetch: nodeFetch, timeoutMs: 1_000, maxNetworkRetries: 0 })(params);

  it.each([
    [200, '{"object":"billing.meter_event"}'],
    [200, '{"error": null}'],
    [200, '{"error": {"message": "odd"}}'],
    [201, ''],
    [202, 'not json'],
    [204, ''],
    [205, '{}'],
  ])('takes any 2xx for accepted: %i %s', async (status, body) => {
    answer = { status, body };
    await expect(send()).resolves.toBeUndefined();
    expect(requests).toBe(1);
  });

  it.each([
    [401, 'Expired API Key provided: sk_live_****************abcd'],
    [403, "The provided key 'rk_live_****abcd' does not have the required permissions for this endpoint"],
    [404, 'Unrecognized request URL (POST: /v1/billing/meter_events).'],
  ])('a %i is about the key or the host, not the row: classify keeps the row for the next run, masking any key in the message', async (status, message) => {
    answer = { status, body: JSON.stringify({ error: { type: 'invalid_request_error', message } }) };
    const error = await send().then(() => null, (caught: unknown) => caught);
    expect(error).toMatchObject({ statusCode: status, type: 'invalid_request_error', message });
    const outcome = classify(error);
    expect(outcome).toMatchObject({ kind: 'configuration', status });
    expect(JSON.stringify(outcome)).not.toMatch(/[sr]k_live_/);
  });

  it('any other 400 is the row\'s: refused for good', async () => {
    answer = { status: 400, body: JSON.stringify({ error: { type: 'invalid_request_error', message: 'No such customer', param: 'payload' } }) };
    expect(classify(await send().then(() => null, (caught: unknown) => caught))).toMatchObject({ kind: 'refused' });
  });
});

