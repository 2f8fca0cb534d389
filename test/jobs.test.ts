// A scheduled job's paged pass under its lease (src/database/jobs.ts), against the real
// database: what an operator reads in billing_jobs.last_summary is how the run ended.

import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadJobConfig } from '../src/config/config.ts';
import { runLeasedPass, type PassSummary } from '../src/database/jobs.ts';
import { createStore } from '../src/database/store.ts';
import { query } from './support/stack.ts';

const store = () => createStore(loadJobConfig(process.env).store);
const newSummary = (): PassSummary => ({ status: 'done', durationMs: 0 });

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

  it('a throw while opening the pass (a saved cursor it cannot read) ends it failed: summary stored, lease released, the saved state kept', async () => {
    const name = `test-pass-${randomBytes(4).toString('hex')}`;
    const job = { name, holder: 'test', leaseSeconds: 60, budgetMs: 60_000 };
    const first = await runLeasedPass(store(), job, newSummary(), () => ({
      state: () => ({ cursor: 'corrupt' }),
      next: () => Promise.resolve('done' as const),
    }));
    expect(first.status).toBe('done');

    let pages = 0;
    const failed = await runLeasedPass(store(), job, newSummary(), (saved) => {
      if (typeof saved === 'object' && saved !== null && 'cursor' in saved && saved.cursor === 'corrupt') throw new Error('unreadable cursor');
      return {
        state: () => ({}),
        next: () => {
          pages += 1;
          return Promise.resolve('done' as const);
        },
      };
    });
    expect(failed).toMatchObject({ status: 'failed', error: 'unreadable cursor' });
    expect(pages).toBe(0);
    expect(await stored(name)).toEqual({ locked_by: null, state: { cursor: 'corrupt' }, last_summary: { ...failed } });
  });

  it('a run whose lease another holder took over stops after that page, failed with "lease lost", and pages no further', async () => {
    const name = `test-pass-${randomBytes(4).toString('hex')}`;
    const job = { name, holder: 'test', leaseSeconds: 60, budgetMs: 60_000 };
    let pages = 0;
    const ended = await runLeasedPass(store(), job, newSummary(), () => ({
      state: () => ({ pages }),
      next: async () => {
        pages += 1;
        // The lease ran out under this run and the next holder took the job.
        if (pages === 2) await query(`update billing_jobs set locked_by = 'someone-else' where name = $1`, [name]);
        return pages >= 5 ? 'done' : 'more';
      },
    }));
    expect(ended).toMatchObject({ status: 'failed', error: 'lease lost' });
    expect(pages).toBe(2);
    // The other holder's: this run wrote nothing after it lost the lease.
    expect(await stored(name)).toMatchObject({ locked_by: 'someone-else', state: { pages: 1 } });

    // Taken during its last page: not 'done', since neither its state nor its summary was saved.
    const last = `test-pass-${randomBytes(4).toString('hex')}`;
    const lastPage = await runLeasedPass(store(), { ...job, name: last }, newSummary(), () => ({
      state: () => ({}),
      next: async () => {
        await query(`update billing_jobs set locked_by = 'someone-else' where name = $1`, [last]);
        return 'done';
      },
    }));
    expect(lastPage).toMatchObject({ status: 'failed', error: 'lease lost' });
    expect(await stored(last)).toMatchObject({ locked_by: 'someone-else', last_summary: null });
  });
});
