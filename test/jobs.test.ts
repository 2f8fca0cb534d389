// A scheduled job's paged pass under its lease (src/database/jobs.ts), against the real
// database: what an operator reads in billing_jobs.last_summary is how the run ended.

import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadJobConfig } from '../src/config/config.ts';
import { runLeasedPass, type PassSummary } from '../src/database/jobs.ts';
import { createStore } from '../src/database/store.ts';
import { query } from './support/stack.ts';

const store = () => createStore(loadJobConfig(process.env).store);

async function stored(name: string): Promise<{ locked_by: string | null; state: unknown; last_summary: unknown }> {
  const [row] = await query<{ locked_by: string | null; state: unknown; last_summary: unknown }>(
    'select locked_by, state, last_summary from billing_jobs where name = $1', [name]);
  if (!row) throw new Error(`no billing_jobs row for ${name}`);
  return row;
}

describe('runLeasedPass', () => {
  it('stores the summary of a paused, a failed and a done run as each ended, and the cursor it reached', async () => {
    const name = `test-pass-${randomBytes(4).toString('hex')}`;
    const job = (budgetMs: number) => ({ name, holder: 'test', leaseSeconds: 60, budgetMs });
    let cursor = 0;
    const pages = (fail: boolean) => (saved: unknown) => {
      cursor = typeof saved === 'object' && saved !== null && 'cursor' in saved ? Number(saved.cursor) : 0;
      return {
        state: () => ({ cursor }),
        next: () => {
          if (fail) return Promise.reject(new Error('Stripe said no'));
          cursor += 1;
          return Promise.resolve(cursor >= 3 ? ('done' as const) : ('more' as const));
        },
      };
    };
    const summary = (): PassSummary => ({ status: 'done', durationMs: 0 });

    const paused = await runLeasedPass(store(), job(0), summary(), pages(false));
    expect(paused.status).toBe('paused');
    expect(await stored(name)).toEqual({ locked_by: null, state: { cursor: 1 }, last_summary: { ...paused } });

    const failed = await runLeasedPass(store(), job(60_000), summary(), pages(true));
    expect(failed).toMatchObject({ status: 'failed', error: 'Stripe said no' });
    expect(await stored(name)).toEqual({ locked_by: null, state: { cursor: 1 }, last_summary: { ...failed } });

    const done = await runLeasedPass(store(), job(60_000), summary(), pages(false));
    expect(done.status).toBe('done');
    expect(await stored(name)).toEqual({ locked_by: null, state: { cursor: 3 }, last_summary: { ...done } });
  });
});
