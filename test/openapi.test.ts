// docs/openapi.yaml against the real functions. Every case sends a real Request to the
// function that netlify.toml routes its path to, against the local stack, and checks the
// response's status, headers and body against what the spec documents for it. And the
// reverse: every operation and status the spec documents has a case here, so the spec
// cannot promise what nothing proves.

import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { parse as parseToml } from 'smol-toml';
import type Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { issuerFor, mintAccessToken } from '../scripts/lib/tokens.ts';
import { SUBSCRIPTION_STATUSES, type AccessReason } from '../src/database/access.ts';
import { REQUEST_LIMITS, type LimitedAction } from '../src/http/request-limits.ts';
import type { PaymentOutcome } from '../src/database/store.ts';
import { checkoutCompletedEvent, invoiceEvent, newIds, subscriptionEvent, type Ids, type SubscriptionState } from './support/events.ts';
import { CATALOG_FILE, runSetup, takeLookupKey, uniqueCatalog } from './support/catalog.ts';
import { env, freshEvent, newUser, postStripeObject, query, signedDelivery, withEnv, type TestUser } from './support/stack.ts';

const ROOT = path.resolve(import.meta.dirname, '..');


// ---------------------------------------------------------------------------------------
// The spec

interface Schema {
  [keyword: string]: unknown;
}
interface Reference {
  $ref: string;
}
interface HeaderObject {
  required?: boolean;
  schema: Schema;
}
interface MediaType {
  schema: Schema;
  examples?: Record<string, { value: unknown } | Reference>;
}
interface ResponseObject {
  description: string;
  headers?: Record<string, HeaderObject | Reference>;
  content?: Record<string, MediaType>;
}
interface Operation {
  security?: Record<string, string[]>[];
  requestBody?: { content: Record<string, MediaType> };
  responses: Record<string, ResponseObject | Reference>;
}
type PathItem = Partial<Record<Method, Operation>>;
interface OpenApi {
  openapi: string;
  paths: Record<string, PathItem>;
  components: { schemas: Record<string, Schema> };
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
type Method = (typeof METHODS)[number];

const SPEC_FILE = path.join(ROOT, 'docs/openapi.yaml');
const SPEC_ID = 'https://billing.invalid/openapi.yaml';
const spec = parseYaml(readFileSync(SPEC_FILE, 'utf8')) as OpenApi;

const isReference = (value: unknown): value is Reference =>
  typeof value === 'object' && value !== null && typeof (value as Partial<Reference>).$ref === 'string';

const escapePointer = (token: string) => token.replaceAll('~', '~0').replaceAll('/', '~1');

/** Follows local $refs; returns the object and its JSON pointer in the spec (for ajv). */
function resolve<T>(value: T | Reference, pointer: string): { value: T; pointer: string } {
  let current: unknown = value;
  let at = pointer;
  for (let hops = 0; isReference(current); hops += 1) {
    if (hops > 10 || !current.$ref.startsWith('#/')) throw new Error(`unsupported $ref ${current.$ref} at ${at}`);
    at = current.$ref.slice(1);
    current = at
      .split('/')
      .slice(1)
      .map((token) => token.replaceAll('~1', '/').replaceAll('~0', '~'))
      .reduce<unknown>((node, token) => (node as Record<string, unknown> | undefined)?.[token], spec);
    if (current === undefined) throw new Error(`dangling $ref ${at}`);
  }
  return { value: current as T, pointer: at };
}

interface DocumentedOperation {
  method: Method;
  path: string;
  /** "POST /api/stripe/checkout" */
  label: string;
  operation: Operation;
  pointer: string;
}

const operations: DocumentedOperation[] = Object.entries(spec.paths).flatMap(([route, item]) =>
  METHODS.flatMap((method) => {
    const operation = item[method];
    return operation
      ? [{ method, path: route, label: `${method.toUpperCase()} ${route}`, operation, pointer: `/paths/${escapePointer(route)}/${method}` }]
      : [];
  }),
);

function operationNamed(label: string): DocumentedOperation {
  const found = operations.find((op) => op.label === label);
  if (!found) throw new Error(`${label} is not in docs/openapi.yaml`);
  return found;
}

function documentedResponse(op: DocumentedOperation, status: number): { value: ResponseObject; pointer: string } | undefined {
  const response = op.operation.responses[String(status)];
  return response && resolve(response, `${op.pointer}/responses/${status}`);
}

// ---------------------------------------------------------------------------------------
// JSON Schema 2020-12 (OpenAPI 3.1's dialect) with formats.

type Validator = ReturnType<Ajv2020['compile']>;
const ajv = addFormats.default(new Ajv2020({ strict: true, strictTypes: false, allowUnionTypes: true, allErrors: true }));
// Keywords the OpenAPI 3.1 base dialect adds to JSON Schema, and the members of the
// document that holds the schemas (it is added whole, so that $refs resolve in it).
ajv.addVocabulary(['discriminator', 'xml', 'externalDocs', 'example', 'openapi', 'paths', 'components']);
ajv.addSchema({ $id: SPEC_ID, openapi: spec.openapi, paths: spec.paths, components: spec.components }, undefined, undefined, false);

const validators = new Map<string, Validator>();
function validatorAt(pointer: string): Validator {
  let validate = validators.get(pointer);
  if (!validate) {
    const compiled = ajv.getSchema(`${SPEC_ID}#${pointer}`);
    if (!compiled) throw new Error(`no schema at ${pointer}`);
    validate = compiled;
    validators.set(pointer, validate);
  }
  return validate;
}

function schemaProblems(pointer: string, value: unknown, what: string): string[] {
  const validate = validatorAt(pointer);
  if (validate(value)) return [];
  return (validate.errors ?? []).map((e) => `${what}${e.instancePath} ${e.message ?? 'is invalid'} (${e.schemaPath})`);
}

/** A header's text as its schema types it (OpenAPI `simple` style, scalars only). */
function headerValue(text: string, schema: Schema): unknown {
  const types = ([] as unknown[]).concat(schema['type'] ?? 'string');
  if (types.includes('integer') || types.includes('number')) return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text;
  if (types.includes('boolean')) return text === 'true' ? true : text === 'false' ? false : text;
  return text;
}

/** What in this response differs from what the spec documents for `op` and its status. */
async function conformance(op: DocumentedOperation, expectedStatus: number, method: string, response: Response): Promise<string[]> {
  const problems: string[] = [];
  if (response.status !== expectedStatus) problems.push(`status ${response.status}, expected ${expectedStatus}`);
  const text = await response.text();
  const documented = documentedResponse(op, response.status);
  if (!documented) return [...problems, `status ${response.status} is not documented for ${op.label}; body: ${text.slice(0, 200)}`];

  for (const [name, header] of Object.entries(documented.value.headers ?? {})) {
    const { value: definition, pointer } = resolve(header, `${documented.pointer}/headers/${escapePointer(name)}`);
    const actual = response.headers.get(name);
    if (actual === null) {
      if (definition.required) problems.push(`header ${name} is missing`);
      continue;
    }
    problems.push(...schemaProblems(`${pointer}/schema`, headerValue(actual, definition.schema), `header ${name}: ${JSON.stringify(actual)}`));
  }

  // A server sends no body to HEAD (Node's http drops it); the function's Response may have one.
  if (method === 'HEAD') return problems;
  const content = documented.value.content;
  if (!content) {
    if (text !== '') problems.push(`no body documented, got ${JSON.stringify(text.slice(0, 200))}`);
    return problems;
  }
  const contentType = response.headers.get('content-type') ?? '';
  const essence = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  const mediaType = Object.keys(content).find((type) => type.toLowerCase() === essence);
  if (!mediaType) return [...problems, `content-type ${JSON.stringify(contentType)}, documented: ${Object.keys(content).join(', ')}`];
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return [...problems, `body is not JSON: ${JSON.stringify(text.slice(0, 200))}`];
  }
  problems.push(...schemaProblems(`${documented.pointer}/content/${escapePointer(mediaType)}/schema`, body, `body ${text.slice(0, 300)}:`));
  return problems;
}

// ---------------------------------------------------------------------------------------
// Routing, as netlify.toml (and a function's own `config.path`) route a path. Redirects
// are tried in file order, first match wins, as Netlify does; then function paths.

type Handler = (req: Request) => Promise<Response>;
interface FunctionModule {
  default?: Handler;
  config?: { path?: string | string[] };
}

function patternToRegExp(pattern: string): RegExp {
  const source = pattern
    .split(/(\*|:[A-Za-z_][A-Za-z0-9_]*)/)
    .map((part) => (part === '*' ? '.*' : part.startsWith(':') ? '[^/]+' : part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source}/?$`);
}

let routesLoaded: Promise<{ pattern: RegExp; load: () => Promise<Handler | undefined> }[]> | undefined;
function routes() {
  routesLoaded ??= (async () => {
    const dir = path.join(ROOT, 'netlify/functions');
    const files = new Map(
      readdirSync(dir)
        .filter((file) => /\.(mts|ts|mjs|js)$/.test(file))
        .map((file) => [file.replace(/\.[^.]+$/, ''), path.join(dir, file)] as const),
    );
    const load = async (name: string): Promise<FunctionModule | undefined> => {
      const file = files.get(name);
      return file ? ((await import(pathToFileURL(file).href)) as FunctionModule) : undefined;
    };
    const toml = parseToml(readFileSync(path.join(ROOT, 'netlify.toml'), 'utf8')) as { redirects?: { from: string; to: string; status?: number }[] };
    const fromToml = (toml.redirects ?? []).flatMap((redirect) => {
      const target = /^\/\.netlify\/functions\/([^/?#]+)/.exec(redirect.to)?.[1];
      return target && redirect.status === 200 ? [{ pattern: patternToRegExp(redirect.from), load: async () => (await load(target))?.default }] : [];
    });
    const fromConfig = (
      await Promise.all(
        [...files.keys()].map(async (name) => {
          const module = await load(name);
          const paths = ([] as string[]).concat(module?.config?.path ?? []);
          return paths.map((p) => ({ pattern: patternToRegExp(p), load: () => Promise.resolve(module?.default) }));
        }),
      )
    ).flat();
    return [...fromToml, ...fromConfig];
  })();
  return routesLoaded;
}

async function handlerFor(pathname: string): Promise<Handler | undefined> {
  const route = (await routes()).find((r) => r.pattern.test(pathname));
  return route ? route.load() : undefined;
}

// ---------------------------------------------------------------------------------------
// Requests and state

const BASE = 'http://localhost';
const DAY = 86_400;
const nowSeconds = () => Math.floor(Date.now() / 1000);

function token(claims: { sub?: string; expiresIn?: number; issuer?: string; extra?: Record<string, unknown> } = {}): string {
  return mintAccessToken({
    sub: claims.sub ?? crypto.randomUUID(),
    email: 'someone@example.com',
    secret: env('SUPABASE_JWT_SECRET'),
    issuer: claims.issuer ?? issuerFor(env('SUPABASE_URL')),
    ...(claims.expiresIn !== undefined && { expiresIn: claims.expiresIn }),
    ...(claims.extra && { extra: claims.extra }),
  });
}

function request(method: string, route: string, init: { token?: string | null; authorization?: string; headers?: Record<string, string>; body?: string } = {}): Request {
  const headers: Record<string, string> = { ...init.headers };
  if (init.authorization !== undefined) headers['authorization'] = init.authorization;
  else if (init.token) headers['authorization'] = `Bearer ${init.token}`;
  if (init.body !== undefined) headers['content-type'] ??= 'application/json';
  return new Request(`${BASE}${route}`, { method, headers, ...(init.body !== undefined && { body: init.body }) });
}

const preflight = (route: string, method: 'GET' | 'POST') =>
  request('OPTIONS', route, {
    headers: { origin: 'https://dashboard.example', 'access-control-request-method': method, 'access-control-request-headers': 'authorization, content-type' },
  });

async function deliver(...events: Stripe.Event[]): Promise<void> {
  for (const event of events) {
    const handler = await handlerFor('/api/stripe/webhook');
    const response = await handler?.(signedDelivery(JSON.stringify(event)));
    if (response?.status !== 200) throw new Error(`setup: ${event.type} was answered ${response?.status ?? 'by no function'}`);
  }
}

/** A user with a subscription in the given state, set up through signed webhooks. */
async function subscriber(state: Partial<SubscriptionState> = {}, after: (ids: Ids, t: number) => Stripe.Event[] = () => []): Promise<TestUser> {
  const user = newUser();
  const ids = newIds(user.id);
  const t = nowSeconds();
  const full: SubscriptionState = { status: 'active', periodStart: t - 10 * DAY, periodEnd: t + 20 * DAY, ...state };
  await deliver(
    checkoutCompletedEvent(ids, t - 10 * DAY, user.email),
    subscriptionEvent('customer.subscription.created', ids, t - 10 * DAY, full),
    ...after(ids, t),
  );
  return user;
}

/** A deliverable event that is over `bytes` long. */
function largeEvent(bytes: number): string {
  const event = freshEvent('product.updated', (product) => {
    product['metadata'] = { padding: 'x'.repeat(bytes) };
  });
  return JSON.stringify(event);
}

// ---------------------------------------------------------------------------------------
// The cases

interface Case {
  /** The documented operation, "POST /api/stripe/checkout", whose response for `status` this checks. */
  op: string;
  status: number;
  name: string;
  request: () => Request | Promise<Request>;
  /** Environment for this request only; undefined removes a variable. */
  env?: () => Record<string, string | undefined> | Promise<Record<string, string | undefined>>;
}

const CHECKOUT = '/api/stripe/checkout';
const PORTAL = '/api/stripe/portal';
const SUBSCRIPTION = '/api/stripe/subscription';
const WEBHOOK = '/api/stripe/webhook';
const SYNC = '/api/stripe/sync';
const PLANS = '/api/stripe/plans';
const SEATS = '/api/stripe/seats';
const withCatalog = () => ({ BILLING_CATALOG: CATALOG_FILE });
const DOWN = 'http://127.0.0.1:9'; // the discard port: nothing listens

/** A user whose customer our checkout stored, and a complete session of theirs that Stripe
 *  holds (served by the local bridge: stripe-mock's sessions carry no metadata). */
async function paidSession(edit: Record<string, unknown> = {}): Promise<{ user: TestUser; sessionId: string }> {
  const user = newUser();
  const ids = newIds(user.id);
  await query('insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)', [user.id, ids.customerId]);
  const t = nowSeconds();
  const session = checkoutCompletedEvent(ids, t).data.object as unknown as Record<string, unknown>;
  session['subscription'] = subscriptionEvent('customer.subscription.created', ids, t, { status: 'active', periodStart: t, periodEnd: t + 30 * DAY }).data.object;
  Object.assign(session, edit);
  const sessionId = String(session['id']);
  await postStripeObject(`/v1/checkout/sessions/${sessionId}`, session);
  return { user, sessionId };
}

/** A catalog of its own whose monthly Pro lookup key another app on the account took
 *  (its own product, transfer_lookup_key): made once, for the case that needs it. */
let takenOver: Promise<{ file: string; lookupKey: string }> | undefined;
function catalogTakenOver(): Promise<{ file: string; lookupKey: string }> {
  takenOver ??= (async () => {
    const { file, tag } = await uniqueCatalog();
    await runSetup(file);
    await takeLookupKey(`pro_monthly_${tag}`, { product: `other_app_${tag}`, amount: 900, currency: 'eur', interval: 'month' });
    return { file, lookupKey: `pro_monthly_${tag}` };
  })();
  return takenOver;
}

function authCases(op: string, method: 'GET' | 'POST', route: string): Case[] {
  const unauthorized = (name: string, init: Parameters<typeof request>[2]): Case => ({
    op,
    status: 401,
    name,
    request: () => request(method, route, init),
  });
  return [
    unauthorized('no Authorization header', {}),
    unauthorized('a Basic scheme', { authorization: 'Basic dXNlcjpwYXNz' }),
    unauthorized('a token that is not a JWT', { authorization: 'Bearer not-a-token' }),
    unauthorized('a token over 8 KB', { authorization: `Bearer ${'a'.repeat(6000)}.${'b'.repeat(6000)}.c` }),
    { op, status: 401, name: 'a token signed with another secret', request: () => request(method, route, { token: `${token().slice(0, -4)}AAAA` }) },
    { op, status: 401, name: 'an expired token', request: () => request(method, route, { token: token({ expiresIn: -60 }) }) },
    { op, status: 401, name: 'a token of another project (issuer)', request: () => request(method, route, { token: token({ issuer: 'https://other.supabase.co/auth/v1' }) }) },
    { op, status: 403, name: 'an anonymous user', request: () => request(method, route, { token: token({ extra: { is_anonymous: true } }) }) },
  ];
}

/** A team whose members have these roles (the first an owner); the users, in order. */
async function teamOf(...roles: ('owner' | 'admin' | 'member')[]): Promise<{ id: string; users: TestUser[] }> {
  const id = crypto.randomUUID();
  const users = roles.map(() => newUser());
  for (const [i, user] of users.entries()) {
    await query('insert into billing_team_members (team_id, user_id, role) values ($1, $2, $3)', [id, user.id, roles[i]]);
  }
  return { id, users };
}

/** A team of an owner and a member, on the shipped catalog's per-seat plan (business),
 *  which Stripe bills for its two members already. */
async function seatedTeam(): Promise<{ id: string; users: TestUser[] }> {
  const team = await teamOf('owner', 'member');
  const owner = team.users[0] as TestUser;
  const checkout = await handlerFor(CHECKOUT);
  const started = await withEnv(withCatalog(), async () => checkout?.(request('POST', CHECKOUT, { token: owner.token, body: JSON.stringify({ team: team.id, price: 'business_monthly' }) })));
  if (started?.status !== 200) throw new Error(`setup: checkout answered ${started?.status ?? 'by no function'}`);
  const [customer] = await query<{ stripe_customer_id: string }>('select stripe_customer_id from billing_customers where user_id = $1', [team.id]);
  const ids: Ids = { userId: owner.id, teamId: team.id, customerId: customer?.stripe_customer_id ?? '', subscriptionId: `sub_seated${team.id.slice(0, 8)}` };
  const t = nowSeconds();
  await withEnv(withCatalog(), () =>
    deliver(subscriptionEvent('customer.subscription.created', ids, t - DAY, { status: 'active', periodStart: t - DAY, periodEnd: t + 29 * DAY, productId: 'analytics_business', quantity: 2 })),
  );
  return team;
}

/** A user at their request limit for `action` (as any instance's requests left it). */
function rateLimitedCase(op: string, route: string, action: LimitedAction, body?: string): Case {
  return {
    op,
    status: 429,
    name: 'past the request limit',
    request: async () => {
      const user = newUser();
      await query('insert into billing_request_counts (subject_id, action, window_start, hits) values ($1, $2, now(), $3)', [user.id, action, REQUEST_LIMITS[action].limit]);
      return request('POST', route, { token: user.token, ...(body !== undefined && { body }) });
    },
  };
}

function methodCases(op: string, route: string, methods: readonly string[]): Case[] {
  return methods.map((method) => ({ op, status: 405, name: method, request: () => request(method, route, { token: newUser().token }) }));
}

const cases: Case[] = [
  // POST /api/stripe/checkout
  { op: `POST ${CHECKOUT}`, status: 200, name: 'a new user', request: () => request('POST', CHECKOUT, { token: newUser().token }) },
  {
    op: `POST ${CHECKOUT}`,
    status: 200,
    name: 'a user whose subscription was canceled',
    request: async () => {
      const user = await subscriber({}, (ids, t) => [subscriptionEvent('customer.subscription.deleted', ids, t - DAY, { status: 'canceled', periodStart: t - 10 * DAY, periodEnd: t - DAY, canceledAt: t - DAY, endedAt: t - DAY })]);
      return request('POST', CHECKOUT, { token: user.token });
    },
  },
  { op: `POST ${CHECKOUT}`, status: 400, name: 'an active subscriber', request: async () => request('POST', CHECKOUT, { token: (await subscriber()).token }) },
  {
    op: `POST ${CHECKOUT}`,
    status: 400,
    name: 'a past-due subscriber',
    request: async () => request('POST', CHECKOUT, { token: (await subscriber({ status: 'past_due' })).token }),
  },
  {
    op: `POST ${CHECKOUT}`,
    status: 200,
    name: 'a catalog price by lookup key',
    request: () => request('POST', CHECKOUT, { token: newUser().token, body: JSON.stringify({ price: 'business_yearly' }) }),
    env: withCatalog,
  },
  {
    op: `POST ${CHECKOUT}`,
    status: 400,
    name: 'a price not in the catalog',
    request: () => request('POST', CHECKOUT, { token: newUser().token, body: JSON.stringify({ price: 'enterprise_monthly' }) }),
    env: withCatalog,
  },
  ...authCases(`POST ${CHECKOUT}`, 'POST', CHECKOUT),
  {
    op: `POST ${CHECKOUT}`,
    status: 200,
    name: "a team's owner, for the team",
    request: async () => {
      const team = await teamOf('owner');
      return request('POST', CHECKOUT, { token: team.users[0]?.token ?? '', body: JSON.stringify({ team: team.id }) });
    },
  },
  {
    op: `POST ${CHECKOUT}`,
    status: 403,
    name: "a team's member, for the team",
    request: async () => {
      const team = await teamOf('owner', 'member');
      return request('POST', CHECKOUT, { token: team.users[1]?.token ?? '', body: JSON.stringify({ team: team.id }) });
    },
  },
  { op: `POST ${CHECKOUT}`, status: 400, name: 'a team that is not a team id', request: () => request('POST', CHECKOUT, { token: newUser().token, body: JSON.stringify({ team: 'acme' }) }) },
  rateLimitedCase(`POST ${CHECKOUT}`, CHECKOUT, 'checkout'),
  ...methodCases(`POST ${CHECKOUT}`, CHECKOUT, ['GET', 'HEAD', 'PUT', 'PATCH', 'DELETE']),
  {
    op: `POST ${CHECKOUT}`,
    status: 500,
    name: 'STRIPE_PRICE_ID not set',
    request: () => request('POST', CHECKOUT, { token: newUser().token }),
    env: () => ({ STRIPE_PRICE_ID: undefined }),
  },
  { op: `POST ${CHECKOUT}`, status: 500, name: 'Stripe unreachable', request: () => request('POST', CHECKOUT, { token: newUser().token }), env: () => ({ STRIPE_API_BASE: DOWN }) },
  {
    op: `POST ${CHECKOUT}`,
    status: 500,
    name: 'a catalog price whose lookup key another app took',
    request: async () => request('POST', CHECKOUT, { token: newUser().token, body: JSON.stringify({ price: (await catalogTakenOver()).lookupKey }) }),
    env: async () => ({ BILLING_CATALOG: (await catalogTakenOver()).file }),
  },
  { op: `OPTIONS ${CHECKOUT}`, status: 204, name: 'a preflight', request: () => preflight(CHECKOUT, 'POST') },
  {
    op: `OPTIONS ${CHECKOUT}`,
    status: 204,
    name: 'a preflight, with the server unconfigured',
    request: () => preflight(CHECKOUT, 'POST'),
    env: () => ({ SUPABASE_SERVICE_ROLE_KEY: undefined }),
  },

  // POST /api/stripe/portal
  { op: `POST ${PORTAL}`, status: 200, name: 'an active subscriber', request: async () => request('POST', PORTAL, { token: (await subscriber()).token }) },
  {
    op: `POST ${PORTAL}`,
    status: 200,
    name: 'a canceled subscriber',
    request: async () => {
      const user = await subscriber({}, (ids, t) => [subscriptionEvent('customer.subscription.deleted', ids, t - DAY, { status: 'canceled', periodStart: t - 10 * DAY, periodEnd: t - DAY, canceledAt: t - DAY, endedAt: t - DAY })]);
      return request('POST', PORTAL, { token: user.token });
    },
  },
  { op: `POST ${PORTAL}`, status: 400, name: 'a user who never subscribed', request: () => request('POST', PORTAL, { token: newUser().token }) },
  {
    op: `POST ${PORTAL}`,
    status: 400,
    name: 'a user who abandoned checkout (a customer, no subscription)',
    request: async () => {
      const user = newUser();
      const checkout = await handlerFor(CHECKOUT);
      const started = await checkout?.(request('POST', CHECKOUT, { token: user.token }));
      if (started?.status !== 200) throw new Error(`setup: checkout answered ${started?.status ?? 'by no function'}`);
      return request('POST', PORTAL, { token: user.token });
    },
  },
  ...authCases(`POST ${PORTAL}`, 'POST', PORTAL),
  {
    op: `POST ${PORTAL}`,
    status: 403,
    name: 'a team the caller is not in',
    request: async () => request('POST', PORTAL, { token: newUser().token, body: JSON.stringify({ team: (await teamOf('owner')).id }) }),
  },
  { op: `POST ${PORTAL}`, status: 400, name: 'a team that is not a team id', request: () => request('POST', PORTAL, { token: newUser().token, body: JSON.stringify({ team: 42 }) }) },
  rateLimitedCase(`POST ${PORTAL}`, PORTAL, 'portal'),
  ...methodCases(`POST ${PORTAL}`, PORTAL, ['GET', 'HEAD', 'PUT', 'PATCH', 'DELETE']),
  { op: `POST ${PORTAL}`, status: 500, name: 'URL not set', request: () => request('POST', PORTAL, { token: newUser().token }), env: () => ({ URL: undefined }) },
  { op: `POST ${PORTAL}`, status: 500, name: 'Stripe unreachable', request: async () => request('POST', PORTAL, { token: (await subscriber()).token }), env: () => ({ STRIPE_API_BASE: DOWN }) },
  { op: `OPTIONS ${PORTAL}`, status: 204, name: 'a preflight', request: () => preflight(PORTAL, 'POST') },

  // GET /api/stripe/subscription
  { op: `GET ${SUBSCRIPTION}`, status: 200, name: 'never subscribed: null', request: () => request('GET', SUBSCRIPTION, { token: newUser().token }) },
  {
    op: `GET ${SUBSCRIPTION}`,
    status: 200,
    name: "a team's member: the team's status and the team",
    request: async () => {
      const team = await teamOf('owner', 'member');
      return request('GET', `${SUBSCRIPTION}?team=${team.id}`, { token: team.users[1]?.token ?? '' });
    },
  },
  { op: `GET ${SUBSCRIPTION}`, status: 403, name: 'a team the caller is not in', request: async () => request('GET', `${SUBSCRIPTION}?team=${(await teamOf('owner')).id}`, { token: newUser().token }) },
  { op: `GET ${SUBSCRIPTION}`, status: 400, name: 'a team that is not a team id', request: () => request('GET', `${SUBSCRIPTION}?team=acme`, { token: newUser().token }) },
  {
    op: `GET ${SUBSCRIPTION}`,
    status: 200,
    name: 'active, renewal paid',
    request: async () => request('GET', SUBSCRIPTION, { token: (await subscriber({}, (ids, t) => [invoiceEvent('invoice.paid', ids, t - 10 * DAY + 60, { amount: 900 })])).token }),
  },
  {
    op: `GET ${SUBSCRIPTION}`,
    status: 200,
    name: 'past due, in the grace period, retry scheduled',
    request: async () => {
      const user = await subscriber({}, (ids, t) => [
        invoiceEvent('invoice.payment_failed', ids, t - DAY, { amount: 900, nextAttempt: t + 2 * DAY }),
        subscriptionEvent('customer.subscription.updated', ids, t - DAY, { status: 'past_due', periodStart: t - DAY, periodEnd: t + 29 * DAY }),
      ]);
      return request('GET', SUBSCRIPTION, { token: user.token });
    },
  },
  {
    op: `GET ${SUBSCRIPTION}`,
    status: 200,
    name: 'payment needs action',
    request: async () => request('GET', SUBSCRIPTION, { token: (await subscriber({}, (ids, t) => [invoiceEvent('invoice.payment_action_required', ids, t - DAY, { amount: 900 })])).token }),
  },
  {
    op: `GET ${SUBSCRIPTION}`,
    status: 200,
    name: 'trialing',
    request: async () => {
      const t = nowSeconds();
      return request('GET', SUBSCRIPTION, { token: (await subscriber({ status: 'trialing', trialStart: t - 10 * DAY, trialEnd: t + 4 * DAY, periodEnd: t + 4 * DAY })).token });
    },
  },
  {
    op: `GET ${SUBSCRIPTION}`,
    status: 200,
    name: 'canceling at period end',
    request: async () => request('GET', SUBSCRIPTION, { token: (await subscriber({ cancelAtPeriodEnd: true })).token }),
  },
  {
    op: `GET ${SUBSCRIPTION}`,
    status: 200,
    name: 'canceled',
    request: async () => {
      const user = await subscriber({}, (ids, t) => [subscriptionEvent('customer.subscription.deleted', ids, t - DAY, { status: 'canceled', periodStart: t - 10 * DAY, periodEnd: t - DAY, canceledAt: t - DAY, endedAt: t - DAY })]);
      return request('GET', SUBSCRIPTION, { token: user.token });
    },
  },
  ...authCases(`GET ${SUBSCRIPTION}`, 'GET', SUBSCRIPTION),
  ...methodCases(`GET ${SUBSCRIPTION}`, SUBSCRIPTION, ['HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']),
  {
    op: `GET ${SUBSCRIPTION}`,
    status: 500,
    name: 'SUPABASE_SERVICE_ROLE_KEY not set',
    request: () => request('GET', SUBSCRIPTION, { token: newUser().token }),
    env: () => ({ SUPABASE_SERVICE_ROLE_KEY: undefined }),
  },
  {
    op: `GET ${SUBSCRIPTION}`,
    status: 500,
    name: 'the database unreachable',
    request: () => request('GET', SUBSCRIPTION, { token: token({ issuer: issuerFor(DOWN) }) }),
    env: () => ({ SUPABASE_URL: DOWN }),
  },
  { op: `OPTIONS ${SUBSCRIPTION}`, status: 204, name: 'a preflight', request: () => preflight(SUBSCRIPTION, 'GET') },

  // GET /api/stripe/plans
  {
    op: `GET ${PLANS}`,
    status: 200,
    name: 'the catalog\'s plans',
    request: () => request('GET', PLANS),
    env: withCatalog,
  },
  { op: `GET ${PLANS}`, status: 200, name: 'no catalog: no plans', request: () => request('GET', PLANS) },
  ...methodCases(`GET ${PLANS}`, PLANS, ['HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']),
  { op: `GET ${PLANS}`, status: 500, name: 'STRIPE_SECRET_KEY not set', request: () => request('GET', PLANS), env: () => ({ STRIPE_SECRET_KEY: undefined }) },
  { op: `OPTIONS ${PLANS}`, status: 204, name: 'a preflight', request: () => preflight(PLANS, 'GET') },

  // POST /api/stripe/webhook
  {
    op: `POST ${WEBHOOK}`,
    status: 200,
    name: 'checkout.session.completed, applied',
    request: () => signedDelivery(JSON.stringify(checkoutCompletedEvent(newIds(crypto.randomUUID()), nowSeconds()))),
  },
  { op: `POST ${WEBHOOK}`, status: 200, name: 'a type we do not act on', request: () => signedDelivery(JSON.stringify(freshEvent('product.updated'))) },
  {
    op: `POST ${WEBHOOK}`,
    status: 200,
    name: 'a redelivered event',
    request: async () => {
      const event = checkoutCompletedEvent(newIds(crypto.randomUUID()), nowSeconds());
      await deliver(event);
      return signedDelivery(JSON.stringify(event));
    },
  },
  { op: `POST ${WEBHOOK}`, status: 400, name: 'no Stripe-Signature header', request: () => request('POST', WEBHOOK, { body: JSON.stringify(freshEvent('product.updated')) }) },
  {
    op: `POST ${WEBHOOK}`,
    status: 400,
    name: 'signed with another secret',
    request: () => signedDelivery(JSON.stringify(freshEvent('product.updated')), { secret: 'whsec_somebody_else' }),
  },
  {
    op: `POST ${WEBHOOK}`,
    status: 400,
    name: 'a signature older than 5 minutes',
    request: () => signedDelivery(JSON.stringify(freshEvent('product.updated')), { timestamp: nowSeconds() - 600 }),
  },
  {
    op: `POST ${WEBHOOK}`,
    status: 400,
    name: 'a body changed after signing',
    request: async () => {
      const signed = signedDelivery(JSON.stringify(freshEvent('product.updated')));
      return request('POST', WEBHOOK, { headers: { 'stripe-signature': signed.headers.get('stripe-signature') ?? '' }, body: `${await signed.text()} ` });
    },
  },
  { op: `POST ${WEBHOOK}`, status: 400, name: 'a garbage signature', request: () => request('POST', WEBHOOK, { headers: { 'stripe-signature': 'garbage' }, body: '{}' }) },
  { op: `POST ${WEBHOOK}`, status: 400, name: 'a signed body that is not JSON', request: () => signedDelivery('not json') },
  { op: `POST ${WEBHOOK}`, status: 400, name: 'a signed body that is JSON but not an event ({})', request: () => signedDelivery('{}') },
  { op: `POST ${WEBHOOK}`, status: 400, name: 'a signed body that is JSON null', request: () => signedDelivery('null') },
  {
    op: `POST ${WEBHOOK}`,
    status: 400,
    name: 'a signed event without data',
    request: () => signedDelivery(JSON.stringify({ id: 'evt_no_data', object: 'event', type: 'invoice.paid', created: nowSeconds(), livemode: false })),
  },
  { op: `POST ${WEBHOOK}`, status: 413, name: 'a signed event over 1 MB', request: () => signedDelivery(largeEvent(1_100_000)) },
  { op: `POST ${WEBHOOK}`, status: 413, name: 'an unsigned body over 1 MB', request: () => request('POST', WEBHOOK, { body: largeEvent(2_000_000) }) },
  ...methodCases(`POST ${WEBHOOK}`, WEBHOOK, ['GET', 'HEAD', 'PUT', 'PATCH', 'DELETE']),
  {
    op: `POST ${WEBHOOK}`,
    status: 500,
    name: 'STRIPE_WEBHOOK_SECRET not set',
    request: () => signedDelivery(JSON.stringify(freshEvent('product.updated'))),
    env: () => ({ STRIPE_WEBHOOK_SECRET: undefined }),
  },
  {
    op: `POST ${WEBHOOK}`,
    status: 500,
    name: 'the database unreachable while applying',
    request: () => signedDelivery(JSON.stringify(checkoutCompletedEvent(newIds(crypto.randomUUID()), nowSeconds()))),
    env: () => ({ SUPABASE_URL: DOWN }),
  },
  { op: `OPTIONS ${WEBHOOK}`, status: 204, name: 'a preflight', request: () => preflight(WEBHOOK, 'POST') },

  // POST /api/stripe/sync
  {
    op: `POST ${SYNC}`,
    status: 200,
    name: 'a paid session of the caller',
    request: async () => {
      const { user, sessionId } = await paidSession();
      return request('POST', SYNC, { token: user.token, body: JSON.stringify({ sessionId }) });
    },
  },
  {
    op: `POST ${SYNC}`,
    status: 400,
    name: 'a session not paid yet',
    request: async () => {
      const { user, sessionId } = await paidSession({ status: 'open', subscription: null, payment_status: 'unpaid' });
      return request('POST', SYNC, { token: user.token, body: JSON.stringify({ sessionId }) });
    },
  },
  { op: `POST ${SYNC}`, status: 400, name: 'no session id', request: () => request('POST', SYNC, { token: newUser().token, body: '{}' }) },
  {
    op: `POST ${SYNC}`,
    status: 404,
    name: "another user's session",
    request: async () => {
      const { sessionId } = await paidSession();
      return request('POST', SYNC, { token: newUser().token, body: JSON.stringify({ sessionId }) });
    },
  },
  ...authCases(`POST ${SYNC}`, 'POST', SYNC),
  rateLimitedCase(`POST ${SYNC}`, SYNC, 'sync', JSON.stringify({ sessionId: 'cs_test_limited0000' })),
  ...methodCases(`POST ${SYNC}`, SYNC, ['GET', 'HEAD', 'PUT', 'PATCH', 'DELETE']),
  {
    op: `POST ${SYNC}`,
    status: 500,
    name: 'Stripe unreachable',
    request: () => request('POST', SYNC, { token: newUser().token, body: JSON.stringify({ sessionId: 'cs_test_abc' }) }),
    env: () => ({ STRIPE_API_BASE: DOWN }),
  },
  { op: `OPTIONS ${SYNC}`, status: 204, name: 'a preflight', request: () => preflight(SYNC, 'POST') },

  // POST /api/stripe/seats
  {
    op: `POST ${SEATS}`,
    status: 200,
    name: 'a member of a team whose seats Stripe bills already',
    request: async () => {
      const team = await seatedTeam();
      return request('POST', SEATS, { token: team.users[1]?.token ?? '', body: JSON.stringify({ team: team.id }) });
    },
    env: withCatalog,
  },
  {
    op: `POST ${SEATS}`,
    status: 400,
    name: 'a team without a per-seat subscription',
    request: async () => {
      const team = await teamOf('owner');
      return request('POST', SEATS, { token: team.users[0]?.token ?? '', body: JSON.stringify({ team: team.id }) });
    },
    env: withCatalog,
  },
  { op: `POST ${SEATS}`, status: 400, name: 'a team that is not a team id', request: () => request('POST', SEATS, { token: newUser().token, body: JSON.stringify({ team: 'acme' }) }) },
  { op: `POST ${SEATS}`, status: 400, name: 'a body that is not JSON', request: () => request('POST', SEATS, { token: newUser().token, body: 'team=acme' }) },
  ...authCases(`POST ${SEATS}`, 'POST', SEATS),
  {
    op: `POST ${SEATS}`,
    status: 403,
    name: 'a team the caller is not in',
    request: async () => request('POST', SEATS, { token: newUser().token, body: JSON.stringify({ team: (await seatedTeam()).id }) }),
    env: withCatalog,
  },
  rateLimitedCase(`POST ${SEATS}`, SEATS, 'seats', JSON.stringify({ team: crypto.randomUUID() })),
  ...methodCases(`POST ${SEATS}`, SEATS, ['GET', 'HEAD', 'PUT', 'PATCH', 'DELETE']),
  {
    op: `POST ${SEATS}`,
    status: 500,
    name: 'STRIPE_SECRET_KEY not set',
    request: () => request('POST', SEATS, { token: newUser().token, body: JSON.stringify({ team: crypto.randomUUID() }) }),
    env: () => ({ STRIPE_SECRET_KEY: undefined }),
  },
  { op: `OPTIONS ${SEATS}`, status: 204, name: 'a preflight', request: () => preflight(SEATS, 'POST') },

  // /api/stripe/{anything else}
  ...(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const).map(
    (method): Case => ({ op: `${method} /api/stripe/{path}`, status: 404, name: 'an unknown endpoint', request: () => request(method, '/api/stripe/invoices', { token: newUser().token }) }),
  ),
  { op: 'GET /api/stripe/{path}', status: 404, name: 'without a token', request: () => request('GET', '/api/stripe/nope') },
  { op: 'GET /api/stripe/{path}', status: 404, name: 'a path below an endpoint', request: () => request('GET', '/api/stripe/subscription/extra', { token: newUser().token }) },
  { op: 'OPTIONS /api/stripe/{path}', status: 204, name: 'a preflight', request: () => preflight('/api/stripe/invoices', 'POST') },
];

const CONCRETE_PATHS = new Set(Object.keys(spec.paths).filter((p) => !p.includes('{')));

/** Whether `req` is a request to `op` (or, for a 405, to its path with another method). A
 *  path parameter here matches deeper paths too: the catch-all answers those as well. */
function targets(op: DocumentedOperation, req: Request, status?: number): boolean {
  const pathname = new URL(req.url).pathname;
  const template = new RegExp(`^${op.path.split(/\{[^}]+\}/).map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[^/]+(?:/[^/]+)*')}$`);
  const onPath = op.path.includes('{') ? template.test(pathname) && !CONCRETE_PATHS.has(pathname) : pathname === op.path;
  const method = req.method.toLowerCase();
  return onPath && (status === 405 ? method !== op.method : method === op.method);
}

const title = (c: Case) => `${c.op} ${c.status}: ${c.name}`;

/** Functions log one JSON line per request; a passing case's lines are noise. */
async function quietly<T>(run: () => Promise<T>): Promise<T> {
  const { log, warn, error } = console;
  console.log = console.warn = console.error = () => {};
  try {
    return await run();
  } finally {
    Object.assign(console, { log, warn, error });
  }
}

describe('docs/openapi.yaml, against the functions', () => {
  for (const c of cases) {
    it(title(c), async () => {
      const op = operationNamed(c.op);
      const req = await c.request();
      const pathname = new URL(req.url).pathname;
      expect(targets(op, req, c.status), 'the request goes to the operation the case names').toBe(true);
      const handler = await handlerFor(pathname);
      if (!handler) throw new Error(`no function serves ${pathname} (netlify.toml, config.path)`);
      const environment = (await c.env?.()) ?? {};
      const response = await quietly(() => withEnv(environment, () => handler(req)));
      expect(await conformance(op, c.status, req.method, response)).toEqual([]);
    });
  }
});

// ---------------------------------------------------------------------------------------
// The spec itself

/** Every AccessReason, and nothing else (the compiler checks both directions). */
const ACCESS_REASONS = [
  'active',
  'trialing',
  'canceling',
  'period_ended',
  'grace_period',
  'grace_expired',
  'no_subscription',
  'incomplete',
  'incomplete_expired',
  'canceled',
  'unpaid',
  'paused',
] as const satisfies readonly AccessReason[];
const PAYMENT_OUTCOMES = ['paid', 'failed', 'action_required'] as const satisfies readonly PaymentOutcome[];
type Missing<All, Listed> = [Exclude<All, Listed>] extends [never] ? true : Exclude<All, Listed>;
const everyAccessReasonListed: Missing<AccessReason, (typeof ACCESS_REASONS)[number]> = true;
const everyPaymentOutcomeListed: Missing<PaymentOutcome, (typeof PAYMENT_OUTCOMES)[number]> = true;

function schemaNamed(name: string): Schema {
  const schema = spec.components.schemas[name];
  if (!schema) throw new Error(`components/schemas/${name} is missing`);
  return schema;
}

interface DocumentedResponse {
  op: DocumentedOperation;
  status: string;
  value: ResponseObject;
  pointer: string;
}
const responses: DocumentedResponse[] = operations.flatMap((op) =>
  Object.entries(op.operation.responses).map(([status, response]) => ({ op, status, ...resolve(response, `${op.pointer}/responses/${status}`) })),
);

describe('docs/openapi.yaml, the document', () => {
  it('documents every operation and status that a case here exercises, and nothing else', () => {
    const documented = new Set(responses.map((r) => `${r.op.label} ${r.status}`));
    const exercised = new Set(cases.map((c) => `${c.op} ${c.status}`));
    expect([...documented].filter((key) => !exercised.has(key)), 'documented, but no case exercises it').toEqual([]);
    expect([...exercised].filter((key) => !documented.has(key)), 'exercised, but not documented').toEqual([]);
    const titles = new Set(cases.map(title));
    expect(titles.size, 'case titles are unique').toBe(cases.length);
  });

  it('routes every documented path to its own function, not the catch-all', async () => {
    const catchAll = await handlerFor('/api/stripe/no-such-endpoint');
    const misrouted: string[] = [];
    for (const p of CONCRETE_PATHS) {
      const handler = await handlerFor(p);
      if (!handler || handler === catchAll) misrouted.push(p);
    }
    expect(misrouted).toEqual([]);
  });

  it('documents 401 and 403 where the token is required, and 405 and 500 on every endpoint', () => {
    const missing = operations.flatMap((op) => {
      const wanted = [
        ...(op.operation.security?.some((requirement) => 'supabaseAccessToken' in requirement) ? ['401', '403'] : []),
        ...(CONCRETE_PATHS.has(op.path) && op.method !== 'options' ? ['405', '500'] : []),
      ];
      return wanted.filter((status) => !(status in op.operation.responses)).map((status) => `${op.label} ${status}`);
    });
    expect(missing).toEqual([]);
  });

  it('lists the CORS headers, as required, on every response', () => {
    const missing = responses.flatMap(({ op, status, value }) =>
      ['Access-Control-Allow-Origin', 'Access-Control-Allow-Methods', 'Access-Control-Allow-Headers'].flatMap((name) => {
        const header = value.headers?.[name];
        return header && resolve(header, '').value.required === true ? [] : [`${op.label} ${status}: ${name}`];
      }),
    );
    expect(missing).toEqual([]);
  });

  it('answers every error with exactly {error: string}', () => {
    const wrong = responses
      .filter((r) => Number(r.status) >= 400 && r.op.method !== 'head')
      .flatMap(({ op, status, value, pointer }) => {
        const schema = value.content?.['application/json'] ? `${pointer}/content/application~1json/schema` : undefined;
        if (!schema) return [`${op.label} ${status}: no application/json body`];
        const accepts = (body: unknown) => validatorAt(schema)(body);
        return accepts({}) || accepts({ error: 1 }) || accepts({ message: 'x' }) || accepts({ error: 'Internal server error', detail: 'x' })
          ? [`${op.label} ${status}: accepts a body that is not {error: string}`]
          : [];
      });
    expect(wrong).toEqual([]);
  });

  it('has examples that match their schemas', () => {
    const problems = responses.flatMap(({ op, status, value, pointer }) =>
      Object.entries(value.content ?? {}).flatMap(([type, media]) =>
        Object.entries(media.examples ?? {}).flatMap(([name, example]) =>
          schemaProblems(`${pointer}/content/${escapePointer(type)}/schema`, resolve(example, '').value.value, `${op.label} ${status} example ${name}:`),
        ),
      ),
    );
    for (const op of operations) {
      for (const [type, media] of Object.entries(op.operation.requestBody?.content ?? {})) {
        for (const [name, example] of Object.entries(media.examples ?? {})) {
          problems.push(...schemaProblems(`${op.pointer}/requestBody/content/${escapePointer(type)}/schema`, resolve(example, '').value.value, `${op.label} request example ${name}:`));
        }
      }
    }
    for (const [name, schema] of Object.entries(spec.components.schemas)) {
      for (const [i, example] of ((schema['examples'] as unknown[] | undefined) ?? []).entries()) {
        problems.push(...schemaProblems(`/components/schemas/${escapePointer(name)}`, example, `schema ${name} example ${i}:`));
      }
    }
    expect(problems).toEqual([]);
  });

  it('lists the statuses, access reasons and payment outcomes the code has', () => {
    expect(everyAccessReasonListed && everyPaymentOutcomeListed).toBe(true);
    expect(schemaNamed('SubscriptionStatus')['enum']).toEqual([...SUBSCRIPTION_STATUSES]);
    expect(schemaNamed('AccessReason')['enum']).toEqual([...ACCESS_REASONS]);
    const lastPayment = schemaNamed('LastPayment')['properties'] as Record<string, Schema>;
    expect(lastPayment['status']?.['enum']).toEqual([...PAYMENT_OUTCOMES]);
  });
});
