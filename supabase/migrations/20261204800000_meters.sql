-- Overage billed through Stripe Billing Meters, exactly once (docs/meters.md).
--
-- * billing_meter_reports: the outbox. One row per meter event we mean Stripe to have:
--   the subject, meter and hour it reports, its deterministic identifier and value,
--   written (claimed, 'pending') BEFORE it is sent and marked 'sent' after Stripe
--   accepted it. A crash in between leaves it pending; the next claim, once the lease
--   has run out, hands out the SAME identifier again, which Stripe deduplicates for 24 h.
--   After 23 h a pending row is never resent: the reconcile decides from Stripe's event
--   summaries whether it arrived ('sent') or not ('void', and the usage is reported again
--   under a new identifier).
-- * What is due: per usage window (billing_usage_window), the overage is the units past
--   the included amount, cumulated hour by hour over the hourly totals
--   (billing_usage_hourly, the one read of them). Each hour is due what makes the
--   reported total up to it reach the overage up to it, never less than nothing: late
--   usage for an hour already reported becomes a correction with the next identifier of
--   that hour; an included amount that grew after a report takes nothing back.
-- * Stripe takes event timestamps from the past 35 days. Nothing is sent older than
--   34 days (a resend up to 23 h later stays inside): an older hour is sent at that
--   earliest time, and the row says so (late) for the log.
-- * Every function reads the time through billing_now().

create table public.billing_meter_reports (
  identifier text primary key,
  subject_id uuid not null,
  meter text not null,
  -- The hour whose usage it reports (a reconcile's repair: the hour it is dated in).
  hour timestamptz not null,
  -- 1: the hour's first event; 2 and on: corrections, and repairs dated in that hour.
  seq integer not null check (seq >= 1),
  -- 'usage': the reporter's (and the invoice flush's); 'reconcile': a repair of what
  -- Stripe lacks, which the reporter's own sums never count.
  kind text not null check (kind in ('usage', 'reconcile')),
  customer_id text not null,
  value bigint not null check (value > 0),
  -- The timestamp sent: the hour, or the earliest Stripe still takes.
  event_at timestamptz not null,
  late boolean not null default false,
  -- pending: claimed, maybe sent; sent: Stripe accepted it; failed: Stripe refused it
  -- (a 400: not retried, logged at error); void: never arrived, or canceled.
  state text not null default 'pending' check (state in ('pending', 'sent', 'failed', 'void')),
  claimed_at timestamptz not null,
  lease_holder text,
  lease_until timestamptz,
  attempts integer not null default 0,
  sent_at timestamptz,
  error text,
  unique (subject_id, meter, hour, seq)
);
-- A subject's meter's pending rows: every claim asks for them.
create index billing_meter_reports_pending_idx on public.billing_meter_reports (subject_id, meter) where state = 'pending';
create index billing_meter_reports_event_at_idx on public.billing_meter_reports (event_at);
alter table public.billing_meter_reports enable row level security;
revoke all on public.billing_meter_reports from anon, authenticated, public;
grant select on public.billing_meter_reports to service_role;

-- The row as the sender needs it.
create function public.billing_meter_row(r public.billing_meter_reports) returns jsonb
language sql immutable
set search_path = ''
as $$
  select jsonb_build_object('identifier', r.identifier, 'subject', r.subject_id, 'meter', r.meter, 'hour', r.hour,
    'kind', r.kind, 'customer', r.customer_id, 'value', r.value, 'timestamp', extract(epoch from r.event_at)::bigint,
    'late', r.late, 'attempts', r.attempts)
$$;

-- The identifier of a subject's meter's hour's seq-th event: the same on every resend.
create function public.billing_meter_identifier(p_subject uuid, p_meter text, p_hour timestamptz, p_seq integer) returns text
language sql immutable
set search_path = ''
as $$
  select 'bm_' || replace(p_subject::text, '-', '') || '_' || p_meter || '_' || to_char(p_hour at time zone 'UTC', 'YYYYMMDDHH24')
         || case when p_seq > 1 then '_' || p_seq else '' end
$$;

-- The subject's usage windows, newest first, back from the one containing p_now: those
-- that start at or after p_since (p_whole: every hour still kept, as the claim needs),
-- or else those that end after it (the reconcile's).
create function public.billing_meter_windows(p_subject uuid, p_now timestamptz, p_since timestamptz, p_whole boolean)
returns table (window_start timestamptz, window_end timestamptz)
language plpgsql stable
-- Two or three windows: without this the planner expects 1,000 and scans every hour.
rows 3
security definer
set search_path = ''
as $$
declare
  w record;
begin
  select * into w from public.billing_usage_window(p_subject, p_now);
  while (p_whole and w.window_start >= p_since) or (not p_whole and w.window_end > p_since) loop
    window_start := w.window_start;
    window_end := w.window_end;
    return next;
    select * into w from public.billing_usage_window(p_subject, w.window_start - interval '1 microsecond');
  end loop;
end;
$$;

-- Claims what is due for one subject's billed meter (under its lock), re-leases its
-- pending rows whose lease ran out (within 23 h of their claim), and returns both.
-- p_through: hours before it count (the reporter: complete hours; the flush: all).
create function public.billing_meter_claim_meter(
  p_subject uuid, p_customer text, p_meter text, p_included bigint, p_through timestamptz, p_holder text, p_lease_seconds integer
) returns setof jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := public.billing_now();
  v_lease timestamptz := v_now + make_interval(secs => p_lease_seconds);
  v_windows tstzrange[];
  v_from timestamptz;
begin
  -- The flush and the reporter may claim for the same subject at once: one at a time.
  perform pg_advisory_xact_lock(hashtextextended('billing_meter:' || p_subject::text || ':' || p_meter, 0));

  return query
  update public.billing_meter_reports r
    set lease_holder = p_holder, lease_until = v_lease, attempts = r.attempts + 1
  where r.subject_id = p_subject and r.meter = p_meter and r.state = 'pending'
    and (r.lease_until is null or r.lease_until < v_now) and r.claimed_at > v_now - interval '23 hours'
  returning public.billing_meter_row(r);

  select array_agg(tstzrange(w.window_start, w.window_end)), min(w.window_start) into v_windows, v_from
  from public.billing_meter_windows(p_subject, v_now, v_now - interval '35 days', true) w;
  -- Rows of hours no claim can reach again (identifiers are never reused: they name the hour).
  delete from public.billing_meter_reports r
  where r.subject_id = p_subject and r.meter = p_meter and r.hour < v_now - interval '60 days' and r.state <> 'pending';

  return query
  with hours as (
    -- One index range of the subject's meter's hours, each tagged with its window.
    select lower(w) as window_start, h.hour, h.amount
    from public.billing_usage_hourly h
    cross join lateral (select x from unnest(v_windows) x where x @> h.hour) t(w)
    where h.subject_id = p_subject and h.meter = p_meter and h.hour >= v_from and h.hour < p_through
  ),
  reported as (
    select r.hour,
           coalesce(sum(r.value) filter (where r.kind = 'usage' and r.state <> 'void'), 0) as value,
           max(r.seq) as seq
    from public.billing_meter_reports r
    where r.subject_id = p_subject and r.meter = p_meter and r.hour >= v_from
    group by r.hour
  ),
  cumulated as (
    select hours.window_start, hours.hour, coalesce(reported.seq, 0) as seq,
           greatest(0, sum(hours.amount) over w - p_included) as over_through,
           sum(coalesce(reported.value, 0)) over w as reported_through
    from hours left join reported using (hour)
    window w as (partition by hours.window_start order by hours.hour rows unbounded preceding)
  ),
  owed as (
    -- The reported total up to each hour is raised to the overage up to it, never lowered.
    select c.*, greatest(0, max(c.over_through - c.reported_through) over w) as raised
    from cumulated c
    window w as (partition by c.window_start order by c.hour rows unbounded preceding)
  ),
  due as (
    select o.hour, o.seq + 1 as seq, o.raised - coalesce(lag(o.raised) over (partition by o.window_start order by o.hour), 0) as value
    from owed o
  ),
  claimed as (
    insert into public.billing_meter_reports as r
      (identifier, subject_id, meter, hour, seq, kind, customer_id, value, event_at, late, claimed_at, lease_holder, lease_until, attempts)
    select public.billing_meter_identifier(p_subject, p_meter, d.hour, d.seq), p_subject, p_meter, d.hour, d.seq, 'usage',
           p_customer, d.value, greatest(d.hour, v_now - interval '34 days'), d.hour < v_now - interval '34 days',
           v_now, p_holder, v_lease, 1
    from due d
    where d.value > 0
    returning r.*
  )
  select public.billing_meter_row(claimed) from claimed;
end;
$$;

-- One batch of the reporter (subjects with a live customer, in id order after p_after),
-- or the invoice flush (p_customer: that customer's subject, the current hour too).
-- Returns {rows, subjects, meters, last}: what to send, how many subjects and billed
-- meters were read, and the last subject (the next batch starts after it).
create function public.billing_meter_claim(
  p_holder text, p_lease_seconds integer, p_after uuid, p_limit integer, p_customer text default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := public.billing_now();
  v_through timestamptz := case when p_customer is null then date_trunc('hour', v_now, 'UTC') else v_now + interval '1 hour' end;
  v_rows jsonb := '[]';
  v_subjects integer := 0;
  v_meters integer := 0;
  v_last uuid;
  s record;
  m record;
begin
  for s in
    select c.user_id, c.stripe_customer_id from public.billing_customers c
    where c.deleted_at is null
      and case when p_customer is null then c.user_id > coalesce(p_after, '00000000-0000-0000-0000-000000000000'::uuid)
               else c.stripe_customer_id = p_customer end
    order by c.user_id
    limit p_limit
  loop
    v_subjects := v_subjects + 1;
    v_last := s.user_id;
    for m in
      select k.key, l.value
      from (select distinct b.key from public.billing_plan_limits b where b.kind = 'meter' and b.overage = 'bill') k
      cross join lateral public.billing_limit_of(
        (select st from public.billing_subject_state st where st.subject_id = s.user_id), 'meter', k.key, v_now) l
      where l.overage = 'bill' and l.value is not null
    loop
      v_meters := v_meters + 1;
      v_rows := v_rows || coalesce((
        select jsonb_agg(x) from public.billing_meter_claim_meter(s.user_id, s.stripe_customer_id, m.key, m.value, v_through, p_holder, p_lease_seconds) x
      ), '[]');
    end loop;
  end loop;
  return jsonb_build_object('rows', v_rows, 'subjects', v_subjects, 'meters', v_meters, 'last', v_last);
end;
$$;

-- Stripe accepted these identifiers (whoever holds them now: an accepted event is sent).
create function public.billing_meter_sent(p_identifiers text[]) returns integer
language sql
security definer
set search_path = ''
as $$
  with done as (
    update public.billing_meter_reports
      set state = 'sent', sent_at = public.billing_now(), lease_holder = null, lease_until = null, error = null
    where identifier = any(p_identifiers) and state = 'pending'
    returning 1
  )
  select count(*)::integer from done
$$;

-- A send that did not get through: p_failed (Stripe refused it: a 400) ends the row at
-- 'failed'; otherwise its lease ends after p_retry_seconds and the next claim resends it.
create function public.billing_meter_release(p_identifier text, p_error text, p_failed boolean, p_retry_seconds integer) returns void
language sql
security definer
set search_path = ''
as $$
  update public.billing_meter_reports
    set state = case when p_failed then 'failed' else state end, error = p_error,
        lease_holder = null, lease_until = public.billing_now() + make_interval(secs => p_retry_seconds)
  where identifier = p_identifier and state = 'pending'
$$;

-- The reconcile ------------------------------------------------------------------------

-- The windows to compare with Stripe, for a page of subjects (after p_after, in id
-- order): per subject, meter, customer and the usage window its events are dated in
-- (those of the past 34 days), what Stripe should hold. A window with a row in flight
-- (pending and younger than 23 h) or sent within p_settle_seconds is left for a later
-- run: Stripe's summaries trail its events. Returns {windows, subjects, last}.
create function public.billing_meter_reconcile_windows(p_settle_seconds integer, p_after uuid, p_limit integer)
returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  with subjects as (
    select c.user_id from public.billing_customers c
    where c.user_id > coalesce(p_after, '00000000-0000-0000-0000-000000000000'::uuid)
    order by c.user_id
    limit p_limit
  ),
  dated as (
    select r.*, w.window_start, w.window_end
    from subjects s
    cross join lateral (select distinct r.meter from public.billing_meter_reports r where r.subject_id = s.user_id) m
    cross join lateral public.billing_meter_windows(s.user_id, public.billing_now(), public.billing_now() - interval '34 days', false) w
    join public.billing_meter_reports r
      on r.subject_id = s.user_id and r.meter = m.meter and r.hour >= w.window_start - interval '35 days'
     and r.event_at >= greatest(w.window_start, public.billing_now() - interval '34 days') and r.event_at < w.window_end
  ),
  windows as (
    select subject_id, meter, customer_id, window_start, window_end,
           bool_or(state = 'pending' and claimed_at > public.billing_now() - interval '23 hours') as in_flight,
           coalesce(max(sent_at) > public.billing_now() - make_interval(secs => p_settle_seconds), false) as settling,
           coalesce(sum(value) filter (where state = 'sent' and kind = 'usage'), 0) as expected
    from dated
    group by subject_id, meter, customer_id, window_start, window_end
  )
  select jsonb_build_object(
    'windows', (select coalesce(jsonb_agg(jsonb_build_object('subject', subject_id, 'meter', meter, 'customer', customer_id,
                  'windowStart', window_start, 'windowEnd', window_end,
                  'inFlight', in_flight, 'settling', settling, 'expected', expected) order by subject_id, meter, window_start), '[]') from windows),
    'subjects', (select count(*) from subjects),
    'last', (select user_id from subjects order by user_id desc limit 1))
$$;

-- What the reconcile does about one window, given Stripe's total for it. Under the
-- subject's meter lock:
-- 1. Pending rows older than 23 h (never confirmed; Stripe no longer dedupes them): if
--    Stripe holds at least what we know it has plus them, they arrived ('sent');
--    otherwise they did not ('void'; the reporter reports that usage again).
-- 2. Stripe short of the usage we sent: a repair row (kind 'reconcile') for the
--    difference, dated in the window, to send now; 'unrepaired' while a repair of the
--    window is younger than 23 h (Stripe did not count that one either).
-- 3. Stripe over it: our repairs sent within 23 h, newest first while they fit, to cancel
--    (meter event adjustments); what is left cannot be taken back: 'excess'.
create function public.billing_meter_reconcile_decide(
  p_subject uuid, p_meter text, p_customer text, p_window_start timestamptz, p_window_end timestamptz,
  p_stripe bigint, p_holder text, p_lease_seconds integer
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := public.billing_now();
  v_sent bigint;
  v_repairs bigint;
  v_stale bigint;
  v_confirmed text[] := '{}';
  v_voided text[] := '{}';
  v_cancel jsonb := '[]';
  v_left bigint;
  v_diff bigint;
  v_at timestamptz;
  v_hour timestamptz;
  v_repair public.billing_meter_reports;
  r record;
begin
  perform pg_advisory_xact_lock(hashtextextended('billing_meter:' || p_subject::text || ':' || p_meter, 0));
  create temp table if not exists pg_temp.billing_meter_window on commit drop as
    select * from public.billing_meter_reports where false;
  delete from pg_temp.billing_meter_window;
  insert into pg_temp.billing_meter_window
    select x.* from public.billing_meter_reports x
    where x.subject_id = p_subject and x.meter = p_meter and x.customer_id = p_customer
      and x.event_at >= p_window_start and x.event_at < p_window_end;

  select coalesce(sum(value) filter (where state = 'sent' and kind = 'usage'), 0),
         coalesce(sum(value) filter (where state = 'sent' and kind = 'reconcile'), 0),
         coalesce(sum(value) filter (where state = 'pending' and claimed_at <= v_now - interval '23 hours'), 0)
    into v_sent, v_repairs, v_stale
  from pg_temp.billing_meter_window;

  if v_stale > 0 then
    if p_stripe >= v_sent + v_repairs + v_stale then
      update public.billing_meter_reports set state = 'sent', sent_at = v_now, lease_holder = null, lease_until = null,
             error = 'confirmed by the reconcile'
      where identifier in (select identifier from pg_temp.billing_meter_window where state = 'pending' and claimed_at <= v_now - interval '23 hours');
      select array_agg(identifier) into v_confirmed from pg_temp.billing_meter_window where state = 'pending' and claimed_at <= v_now - interval '23 hours';
      v_sent := v_sent + coalesce((select sum(value) from pg_temp.billing_meter_window
                                   where state = 'pending' and claimed_at <= v_now - interval '23 hours' and kind = 'usage'), 0);
      v_repairs := v_repairs + coalesce((select sum(value) from pg_temp.billing_meter_window
                                   where state = 'pending' and claimed_at <= v_now - interval '23 hours' and kind = 'reconcile'), 0);
    else
      update public.billing_meter_reports set state = 'void', lease_holder = null, lease_until = null,
             error = 'not at Stripe after 23 h (the reconcile)'
      where identifier in (select identifier from pg_temp.billing_meter_window where state = 'pending' and claimed_at <= v_now - interval '23 hours');
      select array_agg(identifier) into v_voided from pg_temp.billing_meter_window where state = 'pending' and claimed_at <= v_now - interval '23 hours';
    end if;
  end if;

  v_diff := p_stripe - v_sent;
  -- A repair Stripe did not count either (a meter error: no such meter or customer) is not
  -- followed by another while it could still be canceled: one repair a window per 23 h.
  if v_diff < 0 and exists (select 1 from pg_temp.billing_meter_window
                            where kind = 'reconcile' and state in ('pending', 'sent') and claimed_at > v_now - interval '23 hours') then
    return jsonb_build_object('decision', 'unrepaired', 'difference', v_diff, 'stripe', p_stripe, 'expected', v_sent,
      'confirmed', to_jsonb(v_confirmed), 'voided', to_jsonb(v_voided));
  end if;
  if v_diff < 0 then
    -- Dated at the window's last report (or now, if sooner), and never older than 34 days.
    select greatest(least(max(event_at), v_now), v_now - interval '34 days') into v_at from pg_temp.billing_meter_window;
    v_at := coalesce(v_at, greatest(p_window_start, v_now - interval '34 days'));
    v_hour := date_trunc('hour', v_at, 'UTC');
    insert into public.billing_meter_reports as x
      (identifier, subject_id, meter, hour, seq, kind, customer_id, value, event_at, claimed_at, lease_holder, lease_until, attempts)
    select public.billing_meter_identifier(p_subject, p_meter, v_hour, n.seq), p_subject, p_meter, v_hour, n.seq, 'reconcile',
           p_customer, -v_diff, v_at, v_now, p_holder, v_now + make_interval(secs => p_lease_seconds), 1
    from (select coalesce(max(seq), 0) + 1 as seq from public.billing_meter_reports
          where subject_id = p_subject and meter = p_meter and hour = v_hour) n
    returning x.* into v_repair;
    return jsonb_build_object('decision', 'repair', 'difference', v_diff, 'stripe', p_stripe, 'expected', v_sent,
      'confirmed', to_jsonb(v_confirmed), 'voided', to_jsonb(v_voided), 'repair', public.billing_meter_row(v_repair));
  end if;
  v_left := v_diff;
  if v_diff > 0 then
    for r in
      select identifier, value from pg_temp.billing_meter_window
      where kind = 'reconcile' and state = 'sent' and sent_at > v_now - interval '23 hours'
      order by sent_at desc, identifier desc
    loop
      if r.value <= v_left then
        v_cancel := v_cancel || jsonb_build_object('identifier', r.identifier, 'value', r.value);
        v_left := v_left - r.value;
      end if;
    end loop;
  end if;
  return jsonb_build_object('decision', case when v_diff = 0 then 'match' when v_left = 0 then 'cancel' else 'excess' end,
    'difference', v_diff, 'stripe', p_stripe, 'expected', v_sent, 'excess', v_left,
    'confirmed', to_jsonb(v_confirmed), 'voided', to_jsonb(v_voided), 'cancel', v_cancel);
end;
$$;

-- Stripe canceled these (meter event adjustments): they no longer count.
create function public.billing_meter_void(p_identifiers text[], p_reason text) returns void
language sql
security definer
set search_path = ''
as $$
  update public.billing_meter_reports set state = 'void', error = p_reason, lease_holder = null, lease_until = null
  where identifier = any(p_identifiers) and state = 'sent'
$$;

-- invoice.created, recorded in the inbox as any event: applied (usage flushed) or
-- skipped (nothing billed on that customer), with the number of events flushed.
create function public.billing_meter_record_flush(
  p_event_id text, p_event_type text, p_event_created timestamptz, p_livemode boolean, p_api_version text,
  p_customer_id text, p_outcome text, p_reason text
) returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_outcome text;
begin
  if p_outcome not in ('applied', 'skipped') then
    raise exception 'billing_meter_record_flush records applied or skipped, not %', p_outcome;
  end if;
  insert into public.stripe_events as e
    (id, type, livemode, stripe_created_at, api_version, stripe_customer_id, outcome, reason)
  values (p_event_id, p_event_type, p_livemode, p_event_created, p_api_version, p_customer_id, p_outcome, p_reason)
  on conflict (id) do update
    set attempts = e.attempts + 1, last_received_at = now(),
        outcome = case when e.outcome = 'failed' then excluded.outcome else e.outcome end,
        reason = case when e.outcome = 'failed' then excluded.reason else e.reason end
  returning e.outcome into v_outcome;
  return v_outcome;
end;
$$;

revoke execute on function public.billing_meter_row(public.billing_meter_reports) from public, anon, authenticated;
revoke execute on function public.billing_meter_identifier(uuid, text, timestamptz, integer) from public, anon, authenticated;
revoke execute on function public.billing_meter_windows(uuid, timestamptz, timestamptz, boolean) from public, anon, authenticated;
revoke execute on function public.billing_meter_claim_meter(uuid, text, text, bigint, timestamptz, text, integer) from public, anon, authenticated;
revoke execute on function public.billing_meter_claim(text, integer, uuid, integer, text) from public, anon, authenticated;
revoke execute on function public.billing_meter_sent(text[]) from public, anon, authenticated;
revoke execute on function public.billing_meter_release(text, text, boolean, integer) from public, anon, authenticated;
revoke execute on function public.billing_meter_reconcile_windows(integer, uuid, integer) from public, anon, authenticated;
revoke execute on function public.billing_meter_reconcile_decide(uuid, text, text, timestamptz, timestamptz, bigint, text, integer) from public, anon, authenticated;
revoke execute on function public.billing_meter_void(text[], text) from public, anon, authenticated;
revoke execute on function public.billing_meter_record_flush(text, text, timestamptz, boolean, text, text, text, text) from public, anon, authenticated;
grant execute on function public.billing_meter_claim(text, integer, uuid, integer, text) to service_role;
grant execute on function public.billing_meter_sent(text[]) to service_role;
grant execute on function public.billing_meter_release(text, text, boolean, integer) to service_role;
grant execute on function public.billing_meter_reconcile_windows(integer, uuid, integer) to service_role;
grant execute on function public.billing_meter_reconcile_decide(uuid, text, text, timestamptz, timestamptz, bigint, text, integer) to service_role;
grant execute on function public.billing_meter_void(text[], text) to service_role;
grant execute on function public.billing_meter_record_flush(text, text, timestamptz, boolean, text, text, text, text) to service_role;
