// The local stack's stand-in for a product reporting usage, and its movable clock, so a
// person can walk a meter through warning, over, grace and locked in the example
// dashboard (or with `npm run usage:add`):
//
//   POST /__dev/usage {"meter", "amount", "team"?}   billing_track for the caller, or a team
//        they are in, with a new idempotency key: {subject, meter, key, result}
//   GET  /__dev/clock                                 the billing clock: {now, offsetSeconds}
//   POST /__dev/clock {"advanceDays"} | {"endWindow": true, "team"?} | {"reset": true}
//        moves it forward (or back to the real time): {now, offsetSeconds}
//
// The caller is the user of an access token of this stack. Calls go through PostgREST as
// service_role, as a product's server makes them (billing_track is the service role's
// only). The clock is billing_dev_clock (scripts/stack/dev-clock.sql), there only in a
// stack started with devClock (npm run dev): elsewhere /__dev/clock answers 404.
// Nothing under netlify/, src/ or public/ serves these routes, so no deploy has them.

import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { callerOf, createServiceRest, devHandler, jsonBody, Refusal, UUID, type DevRouteOptions } from './dev-routes.ts';

export const DEV_USAGE_PATH = '/__dev/usage';
export const DEV_CLOCK_PATH = '/__dev/clock';

/** The most one call adds, and the most days one call moves the clock. */
const MAX_AMOUNT = 1_000_000_000;
const MAX_DAYS = 400;

export function createDevUsage(opts: DevRouteOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const rest = createServiceRest(opts);

  /** The caller, or the team they name if they are in it. */
  const subjectOf = async (callerId: string, team: unknown): Promise<string> => {
    if (team === undefined || team === null || team === '') return callerId;
    if (typeof team !== 'string' || !UUID.test(team)) throw new Refusal(400, '"team" must be a team id');
    const rows = await rest('GET', `/billing_team_members?team_id=eq.${team.toLowerCase()}&user_id=eq.${callerId}&select=role`);
    if (rows.error) throw new Error(`PostgREST answered ${rows.status}: ${rows.error.message ?? ''}`);
    if (!Array.isArray(rows.body) || rows.body.length === 0) throw new Refusal(403, 'Not a member of this team');
    return team.toLowerCase();
  };

  const track = async (req: IncomingMessage): Promise<[number, unknown]> => {
    const caller = callerOf(req, opts);
    const body = await jsonBody(req);
    const { meter, amount } = body;
    if (typeof meter !== 'string' || meter === '' || typeof amount !== 'number' || !Number.isSafeInteger(amount) || amount < 0 || amount > MAX_AMOUNT) {
      throw new Refusal(400, `Send {"meter": "<a meter of the catalog>", "amount": <0 to ${MAX_AMOUNT}>, "team"?: "<team id>"}`);
    }
    const subject = await subjectOf(caller.id, body['team']);
    // A new key each call: each report counts (a product would name the minute it reports).
    const key = `dev:${randomUUID()}`;
    const answer = await rest('POST', '/rpc/billing_track', { p_subject: subject, p_meter: meter, p_amount: amount, p_key: key });
    if (answer.error?.code === '22023') throw new Refusal(400, answer.error.message ?? 'Unknown meter');
    if (answer.error) throw new Error(`billing_track failed (${answer.status}): ${answer.error.message ?? ''}`);
    return [200, { subject, meter, key, result: answer.body }];
  };

  const clock = async (req: IncomingMessage): Promise<[number, unknown]> => {
    const caller = callerOf(req, opts);
    let args: Record<string, unknown> = {};
    if (req.method === 'POST') {
      const body = await jsonBody(req);
      const days = body['advanceDays'];
      if (body['reset'] === true) args = { p_reset: true };
      else if (body['endWindow'] === true) args = { p_end_window_of: await subjectOf(caller.id, body['team']) };
      else if (typeof days === 'number' && Number.isInteger(days) && days >= 0 && days <= MAX_DAYS) args = { p_advance_seconds: days * 86_400 };
      else throw new Refusal(400, `Send {"advanceDays": <0 to ${MAX_DAYS}>}, {"endWindow": true, "team"?: "<team id>"} or {"reset": true}`);
    }
    const answer = await rest('POST', '/rpc/billing_dev_clock', args);
    // PostgREST's "no such function": the stack was started without the dev clock.
    if (answer.status === 404) throw new Refusal(404, 'This stack\'s billing clock does not move: start the stack with devClock (npm run dev does)');
    if (answer.error) throw new Error(`billing_dev_clock failed (${answer.status}): ${answer.error.message ?? ''}`);
    return [200, answer.body];
  };

  return devHandler(async (req, path) => {
    const method = req.method ?? 'GET';
    if (path === DEV_USAGE_PATH) {
      if (method !== 'POST') throw new Refusal(405, 'Method not allowed');
      return track(req);
    }
    if (path === DEV_CLOCK_PATH) {
      if (method !== 'GET' && method !== 'POST') throw new Refusal(405, 'Method not allowed');
      return clock(req);
    }
    throw new Refusal(404, 'No such route');
  });
}

/** Whether a request's path is one of these routes. */
export function isDevUsagePath(path: string): boolean {
  return path === DEV_USAGE_PATH || path === DEV_CLOCK_PATH;
}
