// Subscriptions on the stripe-mock bridge, as far as a quantity update needs them (the seat
// sync, src/teams/seats.ts). stripe-mock validates POST /v1/subscriptions/{id} and answers
// its fixture whatever was sent; this keeps what Stripe would:
//
// * the subscription: the one a test posted to /__bridge/objects, or the one a local
//   Checkout session holds (hosted-pages.ts); an update sets its items' quantities, and
//   GET /v1/subscriptions/{id} (and the list by customer) answers it from then on. One
//   it does not hold is 404, as in Stripe: the mock's fixture belongs to another
//   customer, and answering it would move the subscription there. Other updates (the
//   metadata billing:forget scrubs) go to the mock as before;
// * the events Stripe sends for a new quantity (quantityChangeEvents: the subscription
//   updated, the proration per proration_behavior), into the caller's event log;
// * idempotency: a key answers what it answered first (Idempotent-Replayed: true), and
//   another request under it is refused, as Stripe does for 24 hours;
// * faults, per subscription (POST /__bridge/subscriptions/{id}/faults
//   {"statuses": [429, 500], "delayMs": 50}): the next updates answer those statuses, a
//   429 before Stripe runs the request (not kept under its key), a 500 after (kept, so a
//   retry under the same key gets the 500 again, with Stripe-Should-Retry: false);
//   delayMs holds every update that long, so that overlapping requests overlap;
// * what a test measures (GET /__bridge/subscriptions/{id}): the first item's quantity,
//   the updates applied, and the most updates that were in flight at once.

import { quantityChangeEvents, type ProrationBehavior } from '../lib/stripe-events.ts';

type Obj = Record<string, unknown>;

const SUBSCRIPTION = /^\/v1\/subscriptions\/([^/]+)$/;
const ADMIN = /^\/__bridge\/subscriptions\/([^/]+?)(\/faults)?$/;
const ITEM_PARAM = /^items\[(\d+)\]\[(id|quantity)\]$/;
const PRORATIONS: readonly string[] = ['create_prorations', 'always_invoice', 'none'] satisfies ProrationBehavior[];

export interface Answer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface UpdateRequest {
  path: string;
  /** The form-encoded body as sent. */
  body: string;
  idempotencyKey: string | null;
  /** stripe-mock's answer to the same request (it validates the parameters). */
  forward: () => Promise<Answer>;
  /** Where the events go: the caller's event log. */
  log: { push(...events: { id: string; type: string; created: number }[]): unknown };
}

export interface BridgeSubscriptions {
  /** Whether this is a quantity update: a POST to a subscription that names items. */
  isUpdate(method: string, path: string, body: string): boolean;
  update(request: UpdateRequest): Promise<Answer>;
  /** GET /v1/subscriptions?customer=… when subscriptions of that customer are held; else null. */
  list(query: URLSearchParams): Obj | null;
  /** The /__bridge/subscriptions/… routes; null if `path` is not one. */
  admin(method: string, path: string, body: string): Answer | null;
}

interface Faults {
  statuses: number[];
  delayMs: number;
}

interface Stats {
  updates: number;
  inFlight: number;
  maxInFlight: number;
}

const isObject = (value: unknown): value is Obj => typeof value === 'object' && value !== null && !Array.isArray(value);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function stripeError(type: string, message: string, extra: Obj = {}): Obj {
  return { error: { type, message, ...extra } };
}

export function createBridgeSubscriptions(objects: Map<string, unknown>): BridgeSubscriptions {
  const faults = new Map<string, Faults>();
  const stats = new Map<string, Stats>();
  const saved = new Map<string, { body: string; answer: Answer }>();
  const statsOf = (id: string) => {
    let found = stats.get(id);
    if (!found) stats.set(id, (found = { updates: 0, inFlight: 0, maxInFlight: 0 }));
    return found;
  };

  /** What Stripe holds for the subscription, if anything here says. */
  const held = (id: string): Obj | undefined => {
    const posted = objects.get(`/v1/subscriptions/${id}`);
    if (isObject(posted)) return posted;
    for (const value of objects.values()) {
      if (isObject(value) && value['object'] === 'checkout.session' && isObject(value['subscription']) && value['subscription']['id'] === id) {
        return value['subscription'];
      }
    }
    return undefined;
  };

  const execute = async (id: string, request: UpdateRequest, answerKey: string | null): Promise<Answer> => {
    const fault = faults.get(id)?.statuses.shift();
    if (fault === 429) return { status: 429, body: stripeError('invalid_request_error', 'Too many requests (the bridge, as Stripe would)', { code: 'rate_limit' }) };
    if (fault !== undefined) {
      const answer = { status: fault, body: stripeError('api_error', 'Something went wrong (the bridge, as Stripe would)'), headers: { 'stripe-should-retry': 'false' } };
      if (answerKey) saved.set(answerKey, { body: request.body, answer });
      return answer;
    }
    const upstream = await request.forward();
    if (upstream.status !== 200 || !isObject(upstream.body)) return upstream;

    const heldBefore = held(id);
    if (!heldBefore) return { status: 404, body: stripeError('invalid_request_error', `No such subscription: '${id}'`, { code: 'resource_missing', param: 'id' }) };
    const subscription = structuredClone(heldBefore);
    const items = isObject(subscription['items']) && Array.isArray(subscription['items']['data']) ? (subscription['items']['data'] as Obj[]) : [];
    const params = new URLSearchParams(request.body);
    const wanted = new Map<string, { id?: string; quantity?: number }>();
    for (const [key, value] of params) {
      const match = ITEM_PARAM.exec(key);
      if (!match?.[1] || !match[2]) continue;
      const entry = wanted.get(match[1]) ?? {};
      if (match[2] === 'id') entry.id = value;
      else entry.quantity = Number(value);
      wanted.set(match[1], entry);
    }
    const changes: { itemId: string; from: number; to: number }[] = [];
    for (const { id: itemId, quantity } of wanted.values()) {
      if (itemId === undefined || quantity === undefined) continue;
      const item = items.find((i) => i['id'] === itemId);
      if (!item) return { status: 400, body: stripeError('invalid_request_error', `No such subscription item: '${itemId}'`, { code: 'resource_missing', param: 'items[0][id]' }) };
      item['id'] = itemId;
      changes.push({ itemId, from: Number(item['quantity'] ?? 1), to: quantity });
      item['quantity'] = quantity;
    }
    const proration = params.get('proration_behavior') ?? 'create_prorations';
    const at = Math.floor(Date.now() / 1000);
    for (const change of changes) {
      if (change.from === change.to) continue;
      const events = quantityChangeEvents({
        subscription,
        ...change,
        proration: PRORATIONS.includes(proration) ? (proration as ProrationBehavior) : 'create_prorations',
        at,
        ...(request.idempotencyKey && { idempotencyKey: request.idempotencyKey }),
      });
      // The invoice an always_invoice update made is the subscription's latest now.
      const updated = events[0]?.data.object as unknown;
      if (isObject(updated)) subscription['latest_invoice'] = updated['latest_invoice'];
      request.log.push(...events);
    }
    objects.set(`/v1/subscriptions/${id}`, subscription);
    statsOf(id).updates += 1;
    const answer = { status: 200, body: subscription };
    if (answerKey) saved.set(answerKey, { body: request.body, answer });
    return answer;
  };

  return {
    isUpdate: (method, path, body) => method === 'POST' && SUBSCRIPTION.test(path) && [...new URLSearchParams(body).keys()].some((key) => ITEM_PARAM.test(key)),

    async update(request) {
      const id = decodeURIComponent(SUBSCRIPTION.exec(request.path)?.[1] ?? '');
      const counted = statsOf(id);
      counted.inFlight += 1;
      counted.maxInFlight = Math.max(counted.maxInFlight, counted.inFlight);
      try {
        const delayMs = faults.get(id)?.delayMs ?? 0;
        if (delayMs > 0) await sleep(delayMs);
        const answerKey = request.idempotencyKey && `${id} ${request.idempotencyKey}`;
        const before = answerKey ? saved.get(answerKey) : undefined;
        if (before && before.body !== request.body) {
          return {
            status: 400,
            body: stripeError(
              'idempotency_error',
              `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${request.idempotencyKey ?? ''}' if you meant to execute a different request.`,
            ),
          };
        }
        if (before) return { ...before.answer, headers: { ...before.answer.headers, 'idempotent-replayed': 'true' } };
        return await execute(id, request, answerKey);
      } finally {
        counted.inFlight -= 1;
      }
    },

    list(query) {
      const customer = query.get('customer');
      if (!customer) return null;
      const status = query.get('status');
      const data = [...objects.entries()]
        .flatMap(([path, value]) => (SUBSCRIPTION.test(path) && isObject(value) && value['customer'] === customer ? [value] : []))
        .filter((sub) => status === 'all' || (status ? sub['status'] === status : sub['status'] !== 'canceled'));
      if (data.length === 0) return null;
      return { object: 'list', url: '/v1/subscriptions', has_more: false, data };
    },

    admin(method, path, body) {
      const match = ADMIN.exec(path);
      const id = match?.[1] && decodeURIComponent(match[1]);
      if (!id) return null;
      if (match[2] && method === 'POST') {
        const given = JSON.parse(body || '{}') as { statuses?: number[]; delayMs?: number };
        faults.set(id, { statuses: [...(given.statuses ?? [])], delayMs: given.delayMs ?? 0 });
        return { status: 200, body: faults.get(id) };
      }
      const subscription = held(id);
      const items = isObject(subscription?.['items']) ? (subscription['items']['data'] as Obj[] | undefined) : undefined;
      const { updates, inFlight, maxInFlight } = statsOf(id);
      return { status: 200, body: { quantity: items?.[0]?.['quantity'] ?? null, updates, inFlight, maxInFlight } };
    },
  };
}
