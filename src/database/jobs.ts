// A scheduled job's paged pass (the event catch-up, the meter reporter and the meter
// reconcile): a run holds the job's lease in billing_jobs, does a page at a time, saves
// its cursor after each one and stops starting pages when its budget is spent, so that it
// ends within a scheduled function's 30 s; the next run goes on from the saved cursor.

import type { Json } from './database.types.ts';
import type { BillingStore } from './store.ts';

/** billing_jobs: a run's lease and the saved state of its pass. */
export type JobStore = Pick<BillingStore, 'acquireJob' | 'saveJob'>;

/** How a run ended, as every pass's summary says it. */
export interface PassSummary {
  /** 'paused': out of budget mid-pass (the next run goes on); 'busy': another run held
   *  the lease, and this one did nothing; 'failed': an error stopped it. */
  status: 'done' | 'paused' | 'busy' | 'failed';
  error?: string;
  durationMs: number;
}

export interface PassJob {
  name: string;
  /** Who runs, for the lease (e.g. the request id). */
  holder: string;
  leaseSeconds: number;
  /** No page is started after this long. */
  budgetMs: number;
}

/** The error of a run that found another holder of its lease at a save: it stops, and
 *  its summary is not stored (the job is the other run's now). */
export const LEASE_LOST = 'lease lost';

/** A pass, once its run holds the lease. */
export interface PassPages {
  /** What is saved for the next run; read at each save. */
  state(): Json;
  /** Does the next page: 'done' when it was the pass's last. */
  next(): Promise<'done' | 'more'>;
}

/** Runs a pass's pages under the job's lease. `open` reads the state the last run saved;
 *  `deadline` is when the budget ends (on performance.now()'s clock). The state is saved
 *  after every page; when the run ends (the pass is done, the budget is spent, or an error
 *  stopped it) the summary is saved with it and the lease released. A save that finds the
 *  lease taken ends the run 'failed' with LEASE_LOST, no page after it. */
export async function runLeasedPass<S extends PassSummary>(
  jobs: JobStore,
  job: PassJob,
  summary: S,
  open: (saved: Json, deadline: number) => PassPages,
): Promise<S> {
  const started = performance.now();
  const deadline = started + job.budgetMs;
  const finish = (status: PassSummary['status']) => {
    summary.status = status;
    summary.durationMs = Math.round(performance.now() - started);
    return summary;
  };

  const saved = await jobs.acquireJob(job.name, job.holder, job.leaseSeconds);
  if (saved === null) return finish('busy');
  let pass: PassPages | null = null;
  /** False: another run holds the lease now (ours ran out and was taken). */
  const save = (release: boolean) =>
    jobs.saveJob(job.name, job.holder, pass ? pass.state() : saved, release ? (summary as unknown as Json) : null, release);
  const leaseLost = () => {
    summary.error = LEASE_LOST;
    return finish('failed');
  };

  // The summary is complete (status, duration) before the releasing save stores it.
  const end = async (status: PassSummary['status']) => {
    finish(status);
    return (await save(true)) ? summary : leaseLost();
  };

  try {
    // Inside the try: a state it cannot open (a corrupt cursor) ends the run like any
    // failure, its summary saved and the lease released, the saved state kept.
    pass = open(saved, deadline);
    for (;;) {
      if ((await pass.next()) === 'done') return await end('done');
      if (performance.now() > deadline) return await end('paused');
      // Its next page would run beside the run that holds the lease now.
      if (!(await save(false))) return leaseLost();
    }
  } catch (error) {
    summary.error = error instanceof Error ? error.message : String(error);
    // What was finished stays finished; the next run retries the rest.
    finish('failed');
    await save(true).catch(() => {});
    return summary;
  }
}
