-- The scheduled jobs (catch-up, reconcile) and what they ask of the event inbox (which
-- 20261201000000 sets up: every verified delivery on record, and what became of it).
--
-- * billing_jobs: one row per scheduled job: a lease so that two runs never overlap,
--   and the job's cursor, so a run that stops at Netlify's limit resumes next time.

create table public.billing_jobs (
  name text primary key,
  -- Held by a run until it ends or this passes (a run that died).
  locked_until timestamptz,
  locked_by text,
  -- The job's own cursor and counters, as it last saved them.
  state jsonb not null default '{}',
  last_run_at timestamptz,
  last_summary jsonb
);
alter table public.billing_jobs enable row level security;
revoke all on public.billing_jobs from anon, authenticated, public;
grant all on public.billing_jobs to service_role;

-- Takes the job's lease if nobody holds it; returns its state, or null if it is held.
create function public.billing_job_acquire(p_name text, p_holder text, p_lease_seconds integer)
returns jsonb
language sql
security invoker
set search_path = ''
as $$
  insert into public.billing_jobs as j (name, locked_until, locked_by)
  values (p_name, now() + make_interval(secs => p_lease_seconds), p_holder)
  on conflict (name) do update
    set locked_until = excluded.locked_until, locked_by = excluded.locked_by
    where j.locked_until is null or j.locked_until < now()
  returning state;
$$;

-- Saves the job's state and, when p_release, lets the lease go. Only the holder can.
create function public.billing_job_save(p_name text, p_holder text, p_state jsonb, p_summary jsonb, p_release boolean)
returns boolean
language sql
security invoker
set search_path = ''
as $$
  update public.billing_jobs
    set state = p_state,
        last_summary = coalesce(p_summary, last_summary),
        last_run_at = case when p_release then now() else last_run_at end,
        locked_until = case when p_release then null else locked_until end,
        locked_by = case when p_release then null else locked_by end
    where name = p_name and locked_by = p_holder
  returning true;
$$;

-- Which of these events the ledger holds (applied, stale, skipped, ...), so the
-- catch-up sends only the others (never seen, or failed) through the apply.
create function public.billing_events_known(p_event_ids text[])
returns setof text
language sql
stable
security invoker
set search_path = ''
as $$
  select id from public.stripe_events
  where id = any(p_event_ids) and outcome not in ('failed', 'pending');
$$;

revoke execute on function public.billing_job_acquire(text, text, integer) from public, anon, authenticated;
revoke execute on function public.billing_job_save(text, text, jsonb, jsonb, boolean) from public, anon, authenticated;
revoke execute on function public.billing_events_known(text[]) from public, anon, authenticated;
grant execute on function public.billing_job_acquire(text, text, integer) to service_role;
grant execute on function public.billing_job_save(text, text, jsonb, jsonb, boolean) to service_role;
grant execute on function public.billing_events_known(text[]) to service_role;
