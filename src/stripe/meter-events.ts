// Stripe Billing meter events without the SDK: POST /v1/billing/meter_events, form
// encoded, with fetch. The webhook sends them (the invoice.created flush), and its bundle
// must not carry the SDK, which costs every cold start its load (docs/performance.md);
// the reporter and the meter reconcile send through here too, so there is one path.
//
// Kept from the SDK's handling of this call (stripe 23.1.0, RequestSender.js): the
// pinned Stripe-Version, the API host of STRIPE_API_BASE, STRIPE_TIMEOUT_MS per attempt,
// one Idempotency-Key for all attempts of a send, and its retries: no answer, a 409 or a
// 5xx is sent again STRIPE_MAX_NETWORK_RETRIES times after 500 ms (backing off beyond),
// unless Stripe-Should-Retry says false (true retries anything); a connection closed under
// the first attempt (ECONNRESET, EPIPE: a stale keep-alive socket) is sent again even with
// retries off. A failure throws StripeRequestError with the HTTP status and Stripe's
// error message, type and code, which src/meters/send.ts classify reads. Not kept: the
// SDK's timeout is the socket's idle time, this one bounds the whole attempt.

import { randomUUID } from 'node:crypto';
import { PINNED_API_VERSION } from './api-version.ts';
import { STRIPE_MAX_NETWORK_RETRIES, STRIPE_TIMEOUT_MS, type StripeConnection } from './connection.ts';

/** Stripe's own API host, unless STRIPE_API_BASE names another. */
const STRIPE_API = 'https://api.stripe.com';
const PATH = '/v1/billing/meter_events';
/** The SDK's: the first retry after 500 ms, each next one up to twice as long, at most 5 s. */
const INITIAL_RETRY_DELAY_MS = 500;
const MAX_RETRY_DELAY_MS = 5_000;
/** Errors of a connection closed under the request (the SDK's list). */
const CONNECTION_CLOSED = ['ECONNRESET', 'EPIPE'];

/** A meter event as Stripe takes it (Stripe.Billing.MeterEventCreateParams fits). */
export interface MeterEventParams {
  event_name: string;
  payload: Record<string, string>;
  /** Stripe keeps one event per identifier for 24 hours. */
  identifier?: string;
  /** Unix seconds; Stripe's time of receipt if left out. */
  timestamp?: number;
}

/** Sends one meter event; resolves once Stripe accepted it, throws StripeRequestError. */
export type MeterEventSender = (params: MeterEventParams) => Promise<void>;

export interface MeterEventSenderOptions {
  /** The transport; the functions pass core's nodeFetch (no undici on a cold start). */
  fetch: typeof fetch;
  timeoutMs?: number;
  maxNetworkRetries?: number;
}

/** What went wrong with a call to Stripe, as classify (src/meters/send.ts) reads it. */
export class StripeRequestError extends Error {
  /** The HTTP status; undefined when no answer came (a timeout, a closed connection). */
  readonly statusCode: number | undefined;
  /** Stripe's error type: invalid_request_error, api_error, … */
  readonly type: string | undefined;
  /** Stripe's error code, where it gives one (none for "An event already exists …"). */
  readonly code: string | undefined;
  readonly param: string | undefined;
  /** Stripe's Request-Id header, for its support. */
  readonly requestId: string | undefined;

  constructor(
    message: string,
    fields: { statusCode?: number; type?: string; code?: string; param?: string; requestId?: string } = {},
    options?: { cause: unknown },
  ) {
    super(message, options);
    this.name = 'StripeRequestError';
    this.statusCode = fields.statusCode;
    this.type = fields.type;
    this.code = fields.code;
    this.param = fields.param;
    this.requestId = fields.requestId;
  }
}

type Attempt = { status: number; headers: Headers; text: string } | { failure: unknown };

export function createMeterEventSender(connection: StripeConnection, options: MeterEventSenderOptions): MeterEventSender {
  const url = new URL(PATH, connection.apiBase ?? STRIPE_API);
  const timeoutMs = options.timeoutMs ?? STRIPE_TIMEOUT_MS;
  const maxRetries = options.maxNetworkRetries ?? STRIPE_MAX_NETWORK_RETRIES;
  const attempt = async (headers: Record<string, string>, body: string): Promise<Attempt> => {
    try {
      const response = await options.fetch(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs) });
      return { status: response.status, headers: response.headers, text: await response.text() };
    } catch (failure) {
      return { failure };
    }
  };

  return async (params) => {
    const body = formEncode(params);
    const headers = {
      authorization: `Bearer ${connection.secretKey}`,
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
      'stripe-version': PINNED_API_VERSION,
      // The same on every attempt: Stripe answers a retry of a request it already ran
      // with that first answer.
      'idempotency-key': `billing-meter-event-${randomUUID()}`,
      'user-agent': 'stripe-billing-functions',
    };
    for (let retries = 0; ; retries += 1) {
      const answer = await attempt(headers, body);
      if (shouldRetry(answer, retries, maxRetries)) {
        await new Promise((resolve) => setTimeout(resolve, retryDelayMs(retries)));
        continue;
      }
      if ('failure' in answer) throw connectionError(answer.failure, timeoutMs, retries);
      return accepted(answer);
    }
  };
}

/** As the SDK's _shouldRetry. */
function shouldRetry(answer: Attempt, retries: number, maxRetries: number): boolean {
  if ('failure' in answer) return (retries === 0 && closedConnection(answer.failure)) || retries < maxRetries;
  if (retries >= maxRetries) return false;
  const advice = answer.headers.get('stripe-should-retry');
  if (advice === 'false') return false;
  if (advice === 'true') return true;
  return answer.status === 409 || answer.status >= 500;
}

function retryDelayMs(retries: number): number {
  const delay = Math.min(INITIAL_RETRY_DELAY_MS * 2 ** (retries - 1), MAX_RETRY_DELAY_MS) * (0.5 + Math.random() / 2);
  return Math.max(INITIAL_RETRY_DELAY_MS, delay);
}

function closedConnection(failure: unknown): boolean {
  for (let error = failure, depth = 0; error instanceof Error && depth < 3; error = error.cause, depth += 1) {
    if ('code' in error && typeof error.code === 'string' && CONNECTION_CLOSED.includes(error.code)) return true;
  }
  return false;
}

function connectionError(failure: unknown, timeoutMs: number, retries: number): StripeRequestError {
  const timedOut = failure instanceof Error && failure.name === 'TimeoutError';
  const message = timedOut
    ? `Request aborted due to timeout being reached (${timeoutMs}ms)`
    : `An error occurred with our connection to Stripe.${retries > 0 ? ` Request was retried ${retries} times.` : ''}`;
  return new StripeRequestError(message, {}, { cause: failure });
}

/** Resolves for a 2xx; throws Stripe's error for anything else. */
function accepted(answer: { status: number; headers: Headers; text: string }): void {
  const requestId = answer.headers.get('request-id') ?? undefined;
  let json: unknown;
  try {
    json = JSON.parse(answer.text);
  } catch {
    // The SDK's StripeAPIError for it: a response, but not Stripe's (a proxy's page).
    throw new StripeRequestError('Invalid JSON received from the Stripe API', { statusCode: answer.status, type: 'api_error', requestId });
  }
  const error = typeof json === 'object' && json !== null && 'error' in json ? json.error : undefined;
  if (answer.status >= 200 && answer.status < 300 && error === undefined) return;
  const fields = typeof error === 'object' && error !== null ? (error as Record<string, unknown>) : {};
  const text = (key: string) => (typeof fields[key] === 'string' ? fields[key] : undefined);
  throw new StripeRequestError(text('message') ?? `Stripe answered ${answer.status}`, {
    statusCode: answer.status, type: text('type'), code: text('code'), param: text('param'), requestId,
  });
}

/** Stripe's form encoding, as the SDK writes it: nested keys in brackets (`payload[value]`). */
function formEncode(params: object): string {
  const pairs: string[] = [];
  const add = (key: string, value: unknown): void => {
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') pairs.push(`${encode(key)}=${encode(String(value))}`);
    else if (value === null) pairs.push(`${encode(key)}=`);
    else if (typeof value === 'object') for (const [inner, v] of Object.entries(value)) add(`${key}[${inner}]`, v);
  };
  for (const [key, value] of Object.entries(params)) add(key, value);
  return pairs.join('&');
}

const encode = (text: string) => encodeURIComponent(text).replaceAll('%5B', '[').replaceAll('%5D', ']');
