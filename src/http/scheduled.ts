// The one place a Netlify Scheduled Function meets the lib: lazy dependencies, one
// summary line per run, and a failure logged rather than thrown. Netlify invokes a
// scheduled function with a POST it makes itself (body: {"next_run": …}); nobody reads
// the answer, so the log line is what an on-call engineer sees.

import { randomUUID } from 'node:crypto';
import type { Env } from '../config/config.ts';
import { createLogger, describeError, type LogFields } from '../core/log.ts';
import type { FunctionHandler } from './endpoint.ts';

export interface ScheduledJobSpec<Deps, Summary extends { status: string }> {
  /** Short name for logs, e.g. "catch-up". */
  name: string;
  /** Builds config and clients. Runs on each invocation (one a quarter-hour), not at import. */
  deps: (env: Env) => Deps;
  /** `holder` names this run, for the job's lease. */
  run: (deps: Deps, run: { holder: string }) => Promise<Summary>;
}

/** Summary statuses that are a failure of the run (logged at error, answered 500). */
const FAILED = new Set(['failed']);

export function defineScheduledJob<Deps, Summary extends { status: string }>(
  spec: ScheduledJobSpec<Deps, Summary>,
  environment: () => Env = () => process.env,
): FunctionHandler {
  return async (): Promise<Response> => {
    const started = performance.now();
    const log = createLogger({ fn: spec.name });
    const holder = `${spec.name}-${randomUUID()}`;
    let facts: LogFields;
    let ok: boolean;
    try {
      const summary = await spec.run(spec.deps(environment()), { holder });
      facts = flatten(summary);
      ok = !FAILED.has(summary.status);
    } catch (error) {
      facts = { status: 'failed', ...describeError(error) };
      ok = false;
    }
    const line = { ...facts, durationMs: Math.round(performance.now() - started) };
    if (ok) log.info('scheduled run', line);
    else log.error('scheduled run failed', line);
    return new Response(JSON.stringify(line), { status: ok ? 200 : 500, headers: { 'Content-Type': 'application/json' } });
  };
}

function flatten(summary: object): LogFields {
  const out: LogFields = {};
  for (const [key, value] of Object.entries(summary)) {
    if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) out[key] = value as string | number | boolean | null;
  }
  return out;
}
