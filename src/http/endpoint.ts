// The one place where HTTP meets the billing lib: preflight, method check, lazy
// dependencies, the error-to-JSON mapping and one log line per request.

import { ConfigError, type Env } from '../config/config.ts';
import { HttpError, MethodNotAllowedError } from '../core/errors.ts';
import { createLogger, describeError, type LogFields, type Logger } from '../core/log.ts';
import { createCors, type Cors, type HttpMethod } from './cors.ts';

export interface RequestScope {
  readonly log: Logger;
  /** Adds facts (user id, event id, outcome) to this request's summary log line. */
  annotate(fields: LogFields): void;
}

export interface JsonResult {
  status?: number;
  body: unknown;
  /** Extra headers for this answer, e.g. a Cache-Control other than no-store. */
  headers?: Record<string, string>;
}

export interface EndpointSpec<Deps> {
  /** Short name for logs, e.g. "checkout". */
  name: string;
  methods: readonly HttpMethod[];
  /** The environment variables `deps` reads; a change in any of them rebuilds the deps. */
  envVars: readonly string[];
  /** Builds config and clients. Runs on the first request, not at import. `log` is for
   *  what the deps report outside any one request (e.g. a cached read of Stripe). */
  deps: (env: Env, log: Logger) => Deps;
  run: (req: Request, deps: Deps, scope: RequestScope) => Promise<JsonResult>;
}

export type FunctionHandler = (req: Request, context?: unknown) => Promise<Response>;

export function jsonResponse(status: number, body: unknown, headers: Record<string, string>, extra: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', ...extra },
  });
}

export function defineEndpoint<Deps>(
  spec: EndpointSpec<Deps>,
  environment: () => Env = () => process.env,
): FunctionHandler {
  const cors: Cors = createCors(spec.methods);
  let cached: { key: string; deps: Deps } | undefined;

  const depsFor = (env: Env): Deps => {
    const key = JSON.stringify(spec.envVars.map((name) => env[name] ?? null));
    if (cached?.key !== key) cached = { key, deps: spec.deps(env, createLogger({ fn: spec.name })) };
    return cached.deps;
  };

  return async (req: Request): Promise<Response> => {
    if (req.method === 'OPTIONS') {
      return new Response(null, { status: 204, headers: { ...cors.headers, ...cors.preflight } });
    }

    const started = performance.now();
    const facts: LogFields = { fn: spec.name, method: req.method };
    const log = createLogger({ fn: spec.name });
    const scope: RequestScope = { log, annotate: (fields) => Object.assign(facts, fields) };

    let response: Response;
    try {
      if (!(spec.methods as readonly string[]).includes(req.method)) {
        throw new MethodNotAllowedError(cors.allow);
      }
      const result = await spec.run(req, depsFor(environment()), scope);
      response = jsonResponse(result.status ?? 200, result.body, cors.headers, result.headers);
    } catch (error) {
      response = errorResponse(error, cors);
      // A 5xx HttpError (Plan unavailable) is ours to fix: its log line says which.
      if (!(error instanceof HttpError) || error.status >= 500) Object.assign(facts, describeError(error));
    }

    const summary = { ...facts, status: response.status, durationMs: Math.round(performance.now() - started) };
    if (response.status >= 500) log.error('request failed', summary);
    else log.info('request', summary);
    return response;
  };
}

// The log line (see above) carries the real error; the caller learns only its class.
function errorResponse(error: unknown, cors: Cors): Response {
  if (error instanceof HttpError) {
    return jsonResponse(error.status, { error: error.message }, { ...cors.headers, ...error.headers });
  }
  if (error instanceof ConfigError) {
    return jsonResponse(500, { error: 'Billing is not configured on this server' }, cors.headers);
  }
  return jsonResponse(500, { error: 'Internal server error' }, cors.headers);
}
