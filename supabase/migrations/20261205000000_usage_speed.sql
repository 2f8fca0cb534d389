-- Limits and usage, faster (docs/usage-bench.md), with the same answers.
--
-- * The access rule and the usage window were PL/pgSQL functions taking or returning a
--   record, called in every billing_limit, billing_usage_state and billing_track; in a
--   transaction of its own (as every billing_track through PostgREST is) each one's first
--   call also sets up its expressions. They are now SQL expressions the planner inlines
--   (billing_access_reason, billing_access_at, billing_plan_at, billing_window), defined
--   once here; billing_decide_access, billing_window_of and billing_limit_of answer from
--   them as before.
-- * The catalog row that applies (a trial's first, the plan's, the free entry's, or what
--   a declared key the entry omits means) is billing_plan_entry, which returns the
--   table's own row type. A trial carries limits only, as billing_sync_catalog writes
--   them; a constraint now says so, and a meter's row is the plan's own.
-- * billing_usage_state reads the state and the meter's row in one query, then the
--   current and the previous window; it asks whether the caller may see the subject
--   only when its answer is not 'ok' (what anyone else gets), and leaves the grace rule's
--   walk to billing_usage_status, which it needs only when the previous window ended
--   above the included amount.
-- * billing_track: one subject's calls on one meter queue on transaction-scoped advisory
--   locks (8 lanes) before the window's row, so that a commit wakes few waiters; waiting
--   on the row alone woke every waiter at each commit (at 32 clients, about 35 context
--   switches a call against 4 with one queue). It writes the window and then the key
--   with its result: each row once.
-- * billing_exceeded_limits: the limits a subject's counts already pass on a plan (or in
--   its trial): checkout's refusal, decided here, and read in checkout's one round trip
--   (billing_request_context's exceeded_limits).

-- The access rule ---------------------------------------------------------------------------

-- When a past-due subscription's grace ends: p_grace_days after the first failed payment
-- (or, without one, the start of the period whose renewal failed).
create function public.billing_grace_until(p_current_period_start timestamptz, p_payment_failed_at timestamptz, p_grace_days integer)
returns timestamptz
language sql stable parallel safe
as $$
  -- Whole days of 86,400 s: no time-zone or DST arithmetic.
  select coalesce(p_payment_failed_at, p_current_period_start) + make_interval(secs => p_grace_days * 86400)
$$;

-- THE access rule: why a subject with these facts has access at p_at, or why not. Plain
-- SQL without settings, so the planner inlines it into its callers' expressions.
create function public.billing_access_reason(
  p_status text,
  p_cancel_at_period_end boolean,
  p_current_period_start timestamptz,
  p_current_period_end timestamptz,
  p_payment_failed_at timestamptz,
  p_grace_days integer,
  p_at timestamptz
) returns text
language sql stable parallel safe
as $$
  select case
    when p_status is null then 'no_subscription'
    when p_status in ('active', 'trialing') then
      case
        when not coalesce(p_cancel_at_period_end, false) then p_status
        when p_current_period_end is null or p_at < p_current_period_end then 'canceling'
        else 'period_ended'
      end
    when p_status = 'past_due' then
      case when p_at < public.billing_grace_until(p_current_period_start, p_payment_failed_at, p_grace_days)
        then 'grace_period' else 'grace_expired' end
    else p_status
  end
$$;

-- Whether those facts give access at p_at: the reasons that do.
create function public.billing_access_at(
  p_status text,
  p_cancel_at_period_end boolean,
  p_current_period_start timestamptz,
  p_current_period_end timestamptz,
  p_payment_failed_at timestamptz,
  p_grace_days integer,
  p_at timestamptz
) returns boolean
language sql stable parallel safe
as $$
  select public.billing_access_reason(p_status, p_cancel_at_period_end, p_current_period_start, p_current_period_end,
    p_payment_failed_at, p_grace_days, p_at) in ('active', 'trialing', 'canceling', 'grace_period')
$$;

-- 20261201100000's function, answering from the rule above (test/access.test.ts and
-- test/entitlements.test.ts hold it to the same table of cases). security definer: signed-in
-- users may call it, and through it the rule's parts, which only its owner and the
-- service role execute.
create or replace function public.billing_decide_access(
  p_status text,
  p_cancel_at_period_end boolean,
  p_current_period_start timestamptz,
  p_current_period_end timestamptz,
  p_payment_failed_at timestamptz,
  p_grace_days integer,
  p_at timestamptz,
  out access boolean,
  out reason text,
  out grace_until timestamptz
)
language plpgsql immutable parallel safe
security definer
set search_path = ''
as $$
begin
  reason := public.billing_access_reason(p_status, p_cancel_at_period_end, p_current_period_start, p_current_period_end,
    p_payment_failed_at, p_grace_days, p_at);
  access := public.billing_access_at(p_status, p_cancel_at_period_end, p_current_period_start, p_current_period_end,
    p_payment_failed_at, p_grace_days, p_at);
  grace_until := case when p_status = 'past_due' then public.billing_grace_until(p_current_period_start, p_payment_failed_at, p_grace_days) end;
end;
$$;

-- The plan whose limits and meters apply to a subject in state p_state at p_at: its
-- plan while it has access, else null (the free entry). Grace days are read only for a
-- past-due subscription, the only one they matter to.
create function public.billing_plan_at(p_state public.billing_subject_state, p_at timestamptz) returns text
language sql stable parallel safe
as $$
  select case when p_state.plan is not null and public.billing_access_at(p_state.status, p_state.cancel_at_period_end,
      p_state.current_period_start, p_state.current_period_end, p_state.payment_failed_at,
      case when p_state.status = 'past_due' then public.billing_grace_days() end, p_at)
    then p_state.plan end
$$;

-- The catalog ------------------------------------------------------------------------------

-- A plan's trial has limits of its own, never meters (billing_sync_catalog writes
-- trial_limits only): a meter's row for a plan is the plan's own.
alter table public.billing_plan_limits add constraint billing_plan_limits_trial_limits_only check (not trial or kind = 'limit');

-- THE catalog row for p_kind p_key on p_plan (null: the free entry), in its trial
-- (p_trial) or not: the trial's own row first, then the plan's (or the free entry's);
-- for a key they omit but the catalog declares, a row of its meaning (unlimited, overage
-- allow, on a plan; 0, overage block, on the free entry); null for a key nothing declares.
-- Invoker, without settings: its callers are security definer functions, or the service
-- role's.
create function public.billing_plan_entry(p_plan text, p_trial boolean, p_kind text, p_key text)
returns public.billing_plan_limits
language plpgsql stable
as $$
declare
  l public.billing_plan_limits;
begin
  if p_plan is not null then
    if p_trial then
      select * into l from public.billing_plan_limits x where x.plan = p_plan and x.trial and x.kind = p_kind and x.key = p_key;
      if found then
        return l;
      end if;
    end if;
    select * into l from public.billing_plan_limits x where x.plan = p_plan and not x.trial and x.kind = p_kind and x.key = p_key;
  else
    select * into l from public.billing_plan_limits x where x.plan is null and not x.trial and x.kind = p_kind and x.key = p_key;
  end if;
  if found then
    return l;
  end if;
  if not exists (select 1 from public.billing_plan_limits x where x.kind = p_kind and x.key = p_key) then
    return null;
  end if;
  l.plan := p_plan;
  l.trial := false;
  l.kind := p_kind;
  l.key := p_key;
  l.value := case when p_plan is null then 0 end;
  l.overage := case when p_kind = 'meter' then case when p_plan is null then 'block' else 'allow' end end;
  return l;
end;
$$;

-- 20261204600000's function (billing_meter_claim reads it), from billing_plan_entry.
create or replace function public.billing_limit_of(
  p_state public.billing_subject_state, p_kind text, p_key text, p_at timestamptz,
  out declared boolean, out value bigint, out overage text,
  out margin_percent integer, out windows_over integer, out grace_days integer,
  out price_amount bigint, out price_currency text, out price_per bigint
)
language plpgsql stable
as $$
declare
  l public.billing_plan_limits := public.billing_plan_entry(public.billing_plan_at(p_state, p_at), p_state.status = 'trialing', p_kind, p_key);
begin
  declared := l.kind is not null;
  value := l.value;
  overage := l.overage;
  margin_percent := l.margin_percent;
  windows_over := l.windows_over;
  grace_days := l.grace_days;
  price_amount := l.price_amount;
  price_currency := l.price_currency;
  price_per := l.price_per;
end;
$$;

-- The caller may ask about p_subject (20261204600000's rule): one plain read of the
-- membership, not a condition holding a sub-select.
create or replace function public.billing_may_ask(p_subject uuid) returns boolean
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  v_uid uuid;
begin
  if current_setting('role') = 'service_role' then
    return true;
  end if;
  v_uid := coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid;
  if p_subject = v_uid then
    return true;
  end if;
  perform from public.billing_team_members m where m.team_id = p_subject and m.user_id = v_uid;
  if found then
    return true;
  end if;
  return current_setting('role') not in ('authenticated', 'anon') and public.billing_caller_sees_all();
end;
$$;

-- The subject's limit on p_key now; null = unlimited. Others than the caller and their
-- teams get the free answer.
create or replace function public.billing_limit(p_subject uuid, p_key text) returns bigint
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  s public.billing_subject_state;
  l public.billing_plan_limits;
begin
  if current_setting('role') = 'service_role' or public.billing_may_ask(p_subject) then
    select * into s from public.billing_subject_state x where x.subject_id = p_subject;
  end if;
  l := public.billing_plan_entry(public.billing_plan_at(s, public.billing_now()), s.status = 'trialing', 'limit', p_key);
  if l.kind is null then
    raise exception 'Unknown limit: %', p_key using errcode = 'invalid_parameter_value';
  end if;
  return l.value;
end;
$$;

-- Usage windows ----------------------------------------------------------------------------

-- The usage window containing p_at when it is not a subscription's monthly period: for an
-- annual price (or a time outside the recorded period) months anchored on p_anchor, the
-- period's start; without a subscription (p_anchor null), calendar months. Months in
-- UTC, computed on UTC timestamps (whatever the session's time zone), stepped from the
-- anchor (31 Jan, 28 Feb, 31 Mar: never drifting). PL/pgSQL: billing_window's common case
-- does not carry its expressions.
create function public.billing_window_months(p_anchor timestamptz, p_at timestamptz) returns tstzrange
language plpgsql immutable parallel safe
as $$
declare
  v_at timestamp := p_at at time zone 'UTC';
  v_anchor timestamp := p_anchor at time zone 'UTC';
  k integer;
begin
  if v_anchor is null then
    return tstzrange(date_trunc('month', v_at) at time zone 'UTC', (date_trunc('month', v_at) + interval '1 month') at time zone 'UTC');
  end if;
  k := (extract(year from v_at)::integer - extract(year from v_anchor)::integer) * 12
       + extract(month from v_at)::integer - extract(month from v_anchor)::integer;
  if v_anchor + make_interval(months => k) > v_at then
    k := k - 1;
  end if;
  return tstzrange((v_anchor + make_interval(months => k)) at time zone 'UTC', (v_anchor + make_interval(months => k + 1)) at time zone 'UTC');
end;
$$;

-- THE usage window containing p_at, for a subject whose subscription period and price
-- interval are these (all null without one): the subscription's period, unless the price
-- is annual (or p_at lies outside the period); else billing_window_months. Inlined by the
-- planner.
create function public.billing_window(p_period_start timestamptz, p_period_end timestamptz, p_price_interval text, p_at timestamptz)
returns tstzrange
language sql immutable parallel safe
as $$
  select case
    when p_price_interval is distinct from 'year' and p_at >= p_period_start and p_at < p_period_end then tstzrange(p_period_start, p_period_end)
    else public.billing_window_months(p_period_start, p_at)
  end
$$;

-- 20261204600000's functions, from billing_window.
create or replace function public.billing_window_of(p_state public.billing_subject_state, p_at timestamptz, out window_start timestamptz, out window_end timestamptz)
language plpgsql stable
as $$
declare
  w tstzrange := public.billing_window(p_state.current_period_start, p_state.current_period_end, p_state.price_interval, p_at);
begin
  window_start := lower(w);
  window_end := upper(w);
end;
$$;

create or replace function public.billing_usage_window(p_subject uuid, p_at timestamptz, out window_start timestamptz, out window_end timestamptz)
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  s public.billing_subject_state;
  w tstzrange;
begin
  select * into s from public.billing_subject_state x where x.subject_id = p_subject;
  w := public.billing_window(s.current_period_start, s.current_period_end, s.price_interval, p_at);
  window_start := lower(w);
  window_end := upper(w);
end;
$$;

-- The subject's use of p_meter in the current window (0 for others than the caller and
-- their teams).
create or replace function public.billing_usage(p_subject uuid, p_meter text) returns bigint
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  s public.billing_subject_state;
  v_used bigint;
begin
  if not exists (select 1 from public.billing_plan_limits l where l.kind = 'meter' and l.key = p_meter) then
    raise exception 'Unknown meter: %', p_meter using errcode = 'invalid_parameter_value';
  end if;
  if not (current_setting('role') = 'service_role' or public.billing_may_ask(p_subject)) then
    return 0;
  end if;
  select * into s from public.billing_subject_state x where x.subject_id = p_subject;
  select u.used into v_used from public.billing_usage_windows u
  where u.subject_id = p_subject and u.meter = p_meter
    and u.window_start = lower(public.billing_window(s.current_period_start, s.current_period_end, s.price_interval, public.billing_now()));
  return coalesce(v_used, 0);
end;
$$;

-- Usage states -----------------------------------------------------------------------------

-- What the current window's use says against the included amount, before the grace
-- rule: over (used > included), warning (at least 90% of included), ok.
create function public.billing_usage_level(p_used bigint, p_included bigint) returns text
language sql immutable parallel safe
as $$
  select case
    when p_used > p_included then 'over'
    when p_used > 0 and p_used * 10 >= p_included * 9 then 'warning'
    else 'ok'
  end
$$;

-- 20261204600000's rule, the first that holds: locked, grace, billing_usage_level's; an
-- unlimited meter is ok. The grace rule: a run of windows_over (2) windows in a row that
-- each ended above included + margin_percent (10%) starts grace_days (7) of grace when
-- its last window ends; after them the meter is locked until a window ends within the
-- included amount (a window without use does) or the plan includes enough for the
-- windows that ended. A billed meter (overage 'bill') is paid for past its included
-- amount: it has no grace nor lock, and `overage` estimates the current window's bill
-- ({units, amount, currency}); null for any other meter.
-- One query reads this window's use and whether the window before it ended where this
-- one starts, above the included amount: only then can the rule find a run, so only then
-- are the ended windows walked.
create or replace function public.billing_usage_status(p_subject uuid, p_meter text, out state text, out included bigint, out grace_ends_at timestamptz, out overage jsonb)
language plpgsql stable
as $$
declare
  v_now timestamptz := public.billing_now();
  v_may_ask boolean := current_setting('role') = 'service_role' or public.billing_may_ask(p_subject);
  s public.billing_subject_state;
  l public.billing_plan_limits;
  w tstzrange;
  r record;
  v_used bigint := 0;
  v_over_before boolean := false;
  v_next timestamptz;
  v_ends timestamptz[] := '{}';
  v_above boolean[] := '{}';
  v_run integer := 0;
  v_since timestamptz;
begin
  if v_may_ask then
    select * into s from public.billing_subject_state x where x.subject_id = p_subject;
  end if;
  l := public.billing_plan_entry(public.billing_plan_at(s, v_now), s.status = 'trialing', 'meter', p_meter);
  if l.kind is null then
    raise exception 'Unknown meter: %', p_meter using errcode = 'invalid_parameter_value';
  end if;
  included := l.value;
  if l.value is null then
    state := 'ok';
    return;
  end if;
  if v_may_ask then
    w := public.billing_window(s.current_period_start, s.current_period_end, s.price_interval, v_now);
    select coalesce((select b.used from public.billing_usage_windows b
                     where b.subject_id = p_subject and b.meter = p_meter and b.window_start = lower(w)), 0),
           coalesce((select b.window_end = lower(w) and b.used > l.value from public.billing_usage_windows b
                     where b.subject_id = p_subject and b.meter = p_meter and b.window_start < lower(w)
                     order by b.window_start desc limit 1), false)
      into v_used, v_over_before;
  end if;
  if l.overage = 'bill' then
    overage := jsonb_build_object(
      'units', greatest(v_used - l.value, 0),
      'amount', public.billing_overage_amount(v_used - l.value, l.price_amount, l.price_per),
      'currency', l.price_currency);
  end if;
  if v_over_before and l.overage is distinct from 'bill' then
    -- The ended windows over the included amount, back from the current one without a
    -- gap, then the earliest run among them that started grace.
    v_next := lower(w);
    for r in
      select u.window_start, u.window_end, u.used from public.billing_usage_windows u
      where u.subject_id = p_subject and u.meter = p_meter and u.window_start < lower(w)
      order by u.window_start desc
    loop
      exit when r.window_end <> v_next or r.used <= l.value;
      v_ends := array_prepend(r.window_end, v_ends);
      v_above := array_prepend(r.used * 100 > l.value * (100 + coalesce(l.margin_percent, 10)), v_above);
      v_next := r.window_start;
    end loop;
    for i in 1 .. cardinality(v_ends) loop
      v_run := case when v_above[i] then v_run + 1 else 0 end;
      if v_run >= coalesce(l.windows_over, 2) then
        v_since := v_ends[i];
        exit;
      end if;
    end loop;
    if v_since is not null then
      grace_ends_at := v_since + make_interval(secs => coalesce(l.grace_days, 7) * 86400);
      state := case when v_now < grace_ends_at then 'grace' else 'locked' end;
      return;
    end if;
  end if;
  state := public.billing_usage_level(v_used, l.value);
end;
$$;

-- billing_usage_status's state, by fewer steps: the state, the meter's row (billing_plan_entry
-- only for a meter the plan omits), the current and the previous window. Whether the caller may ask about the subject changes only an
-- answer other than 'ok' (anyone else gets the free answer, which has no use: 'ok'), so
-- only then is it asked. The grace rule's walk, needed only when the previous window
-- ended above the included amount, is billing_usage_status's.
create or replace function public.billing_usage_state(p_subject uuid, p_meter text) returns text
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := public.billing_now();
  s public.billing_subject_state;
  v_plan text;
  l public.billing_plan_limits;
  w tstzrange;
  r record;
  v_used bigint;
  v_state text;
begin
  select * into s from public.billing_subject_state x where x.subject_id = p_subject;
  v_plan := public.billing_plan_at(s, v_now);
  -- The plan's (or the free entry's) own row; billing_plan_entry says what a key it omits means.
  select * into l from public.billing_plan_limits x
  where x.plan is not distinct from v_plan and not x.trial and x.kind = 'meter' and x.key = p_meter;
  if not found then
    l := public.billing_plan_entry(v_plan, false, 'meter', p_meter);
    if l.kind is null then
      raise exception 'Unknown meter: %', p_meter using errcode = 'invalid_parameter_value';
    end if;
  end if;
  if l.value is null then
    return 'ok';
  end if;
  w := public.billing_window(s.current_period_start, s.current_period_end, s.price_interval, v_now);
  -- Two reads, not one scan from the current window back: its row is updated at every
  -- call, and such a scan would step over the row's dead index entries to reach the
  -- window before it.
  select b.used into v_used from public.billing_usage_windows b
  where b.subject_id = p_subject and b.meter = p_meter and b.window_start = lower(w);
  select b.window_end, b.used into r from public.billing_usage_windows b
  where b.subject_id = p_subject and b.meter = p_meter and b.window_start < lower(w)
  order by b.window_start desc limit 1;
  if r.window_end = lower(w) and r.used > l.value and l.overage is distinct from 'bill' then
    return (public.billing_usage_status(p_subject, p_meter)).state;
  end if;
  v_state := public.billing_usage_level(coalesce(v_used, 0), l.value);
  if v_state = 'ok' or current_setting('role') = 'service_role' or public.billing_may_ask(p_subject) then
    return v_state;
  end if;
  return 'ok';
end;
$$;

-- Metered usage --------------------------------------------------------------------------------

-- Records p_amount of p_meter for the subject at p_at, once per p_key (20261204600000's
-- contract). With overage block, an amount that would pass the included amount is
-- refused whole and leaves no trace (a retry with the same key may then succeed, after
-- an upgrade say).
-- The key is read without a lock: a repeat answers there. Otherwise the call queues
-- behind this subject's other calls on this meter (a transaction-scoped advisory lock,
-- released at commit), updates the window's row and inserts the key with its result;
-- the next call in its queue goes on when this one commits. Waiting on the window's row
-- alone, every waiter woke at each commit to find the row taken again. One queue would
-- stall whenever the call it hands the lock to waits for a CPU (a busy server), so there
-- are 8, by backend: at most 8 calls wait on the row, and a stalled queue holds up an
-- eighth of the calls. A call whose
-- key another call inserted meanwhile gives the window its amount back and answers as
-- the repeat it is. The hourly totals are not touched here: the key's row carries them
-- (billing_usage_hourly, billing_usage_fold).
create or replace function public.billing_track(
  p_subject uuid, p_meter text, p_amount bigint, p_key text, p_at timestamptz default public.billing_now()
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := public.billing_now();
  s public.billing_subject_state;
  v_plan text;
  l public.billing_plan_limits;
  w tstzrange;
  k record;
  v_used bigint;
  v_result jsonb;
begin
  if p_subject is null or p_key is null or p_amount is null or p_amount < 0 then
    raise exception 'billing_track needs a subject, a key and an amount of 0 or more' using errcode = 'invalid_parameter_value';
  end if;
  if p_at is null or p_at < v_now - interval '35 days' or p_at > v_now + interval '5 minutes' then
    raise exception 'Usage at % is more than 35 days old or more than 5 minutes ahead', p_at using errcode = 'invalid_parameter_value';
  end if;
  select * into s from public.billing_subject_state x where x.subject_id = p_subject;
  v_plan := public.billing_plan_at(s, v_now);
  -- The plan's (or the free entry's) own row; billing_plan_entry says what a key it omits means.
  select * into l from public.billing_plan_limits x
  where x.plan is not distinct from v_plan and not x.trial and x.kind = 'meter' and x.key = p_meter;
  if not found then
    l := public.billing_plan_entry(v_plan, false, 'meter', p_meter);
    if l.kind is null then
      raise exception 'Unknown meter: %', p_meter using errcode = 'invalid_parameter_value';
    end if;
  end if;
  w := public.billing_window(s.current_period_start, s.current_period_end, s.price_interval, p_at);
  loop
    select x.result, x.created_at into k from public.billing_usage_keys x
    where x.subject_id = p_subject and x.meter = p_meter and x.key = p_key;
    if k.created_at >= v_now - interval '48 hours' then
      -- A repeat: the first call's result.
      return k.result || '{"duplicate": true}';
    elsif k.created_at is not null then
      -- Older than 48 hours and not folded yet: its amount goes to its hour, and this call
      -- takes the key anew.
      with gone as (
        delete from public.billing_usage_keys x
        where x.subject_id = p_subject and x.meter = p_meter and x.key = p_key and x.created_at < v_now - interval '48 hours'
        returning x.hour, x.amount
      )
      insert into public.billing_usage_hours as h (subject_id, meter, hour, amount)
      select p_subject, p_meter, gone.hour, gone.amount from gone
      on conflict (subject_id, meter, hour) do update set amount = h.amount + excluded.amount;
    end if;
    -- An amount alone past the limit is refused without waiting.
    exit when l.value is not null and l.overage = 'block' and p_amount > l.value;
    -- The queue, in 8 lanes by backend; a transaction's first write only: one that has
    -- written before (a batch over many subjects, say) would hold a lock per subject and
    -- meter until its commit.
    if pg_current_xact_id_if_assigned() is null then
      perform pg_advisory_xact_lock(hashtextextended('billing_usage:' || p_subject::text || ':' || p_meter || ':' || (pg_backend_pid() % 8)::text, 0));
    end if;
    update public.billing_usage_windows u set used = u.used + p_amount, updated_at = now()
    where u.subject_id = p_subject and u.meter = p_meter and u.window_start = lower(w)
      and (l.value is null or l.overage is distinct from 'block' or p_amount = 0 or u.used + p_amount <= l.value)
    returning u.used into v_used;
    if v_used is null then
      -- No row yet, or the amount would pass the limit.
      insert into public.billing_usage_windows as u (subject_id, meter, window_start, window_end, used)
      values (p_subject, p_meter, lower(w), upper(w), p_amount)
      on conflict (subject_id, meter, window_start) do update set used = u.used + excluded.used, updated_at = now()
        where l.value is null or l.overage is distinct from 'block' or p_amount = 0 or u.used + excluded.used <= l.value
      returning u.used into v_used;
      -- Refused: nothing is recorded, not even the key.
      exit when v_used is null;
    end if;
    insert into public.billing_usage_keys (subject_id, meter, key, result, amount, hour, created_at)
    values (p_subject, p_meter, p_key, jsonb_build_object('allowed', true, 'used', v_used, 'limit', l.value, 'duplicate', false),
            p_amount, date_trunc('hour', p_at, 'UTC'), v_now)
    on conflict do nothing
    returning result into v_result;
    if v_result is not null then
      return v_result;
    end if;
    -- Another call took the key while this one waited: the amount goes back, and the
    -- key answers as a repeat.
    update public.billing_usage_windows u set used = u.used - p_amount, updated_at = now()
    where u.subject_id = p_subject and u.meter = p_meter and u.window_start = lower(w);
  end loop;
  return jsonb_build_object('allowed', false, 'limit', l.value, 'duplicate', false, 'used', coalesce((
    select u.used from public.billing_usage_windows u
    where u.subject_id = p_subject and u.meter = p_meter and u.window_start = lower(w)), 0));
end;
$$;

-- Checkout's limits ---------------------------------------------------------------------------

-- The limit keys whose counts the subject already passes on plan p_plan, in its trial
-- when p_trial (a trial's own limits apply first, so a checkout that starts one is held
-- to them), sorted by key: what checkout refuses a plan for (400 "Usage exceeds the
-- plan's limits: …"). Only keys a table is attached for have counts; a key the plan
-- leaves unlimited is never passed; no plan (a checkout without a catalog), none.
create function public.billing_exceeded_limits(p_subject uuid, p_plan text, p_trial boolean) returns text[]
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(array_agg(t.key order by t.key), '{}')
  from public.billing_limit_tables t
  join public.billing_limit_counts c on c.subject_id = p_subject and c.key = t.key
  where p_plan is not null and c.count > (public.billing_plan_entry(p_plan, coalesce(p_trial, false), 'limit', t.key)).value
$$;

-- Checkout's context -----------------------------------------------------------------------

-- 20261204700000's round trip, which for a checkout (p_plan: the plan bought; p_plan_trial:
-- whether it offers a trial) also says which limits the subject's counts already pass,
-- on the plan and in its trial (exceeded_limits {plan, trial}; null without p_plan):
-- checkout refuses by the one that applies, whether or not the trial starts, without a
-- second round trip. The rest as before.
drop function public.billing_request_context(uuid, uuid, text, integer, integer, text);
create function public.billing_request_context(
  p_caller uuid,
  p_team uuid,
  p_action text,
  p_limit integer,
  p_window_seconds integer,
  p_event_id text,
  p_plan text default null,
  p_plan_trial boolean default false
) returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_retry integer;
  v_role text;
  v_members integer;
  v_subject uuid := coalesce(p_team, p_caller);
  v_now timestamptz := public.billing_now();
  a public.billing_accounts;
  d record;
  v_caller_had_trial boolean;
begin
  if p_action is not null then
    v_retry := public.billing_count_request(p_caller, p_action, p_limit, p_window_seconds);
    if v_retry > 0 then
      return jsonb_build_object('retry_after', v_retry);
    end if;
  end if;
  if p_team is not null then
    select m.role into v_role from public.billing_team_members m where m.team_id = p_team and m.user_id = p_caller;
    if v_role is null then
      -- Not a member (or no such team): nothing more is said about it.
      return jsonb_build_object('retry_after', 0);
    end if;
    select count(*) into v_members from public.billing_team_members m where m.team_id = p_team;
  end if;
  select * into a from public.billing_accounts x where x.user_id = v_subject;
  -- No account reads as no subscription: every fact is null.
  v_caller_had_trial := exists (
    select 1 from public.billing_subscriptions t
    where t.for_this_product and t.trial_start is not null and (t.user_id = p_caller or t.buyer_id = p_caller));
  select * into d from public.billing_decide_access(a.status, coalesce(a.cancel_at_period_end, false),
    a.current_period_start, a.current_period_end, a.payment_failed_at, public.billing_grace_days(), v_now);
  return jsonb_build_object(
    'retry_after', 0,
    'role', v_role,
    'members', v_members,
    'account', case when a.user_id is not null then to_jsonb(a) end,
    'decision', jsonb_build_object(
      'access', d.access,
      'reason', d.reason,
      'grace_until', d.grace_until,
      'features', case when d.access then coalesce(a.features, '{}') else '{}' end),
    'limits', (
      select jsonb_object_agg(k.key, jsonb_build_object(
        'limit', public.billing_limit(v_subject, k.key),
        'used', case when t.key is not null then coalesce(c.count, 0) end))
      from (select distinct l.key from public.billing_plan_limits l where l.kind = 'limit') k
      left join public.billing_limit_tables t on t.key = k.key
      left join public.billing_limit_counts c on c.subject_id = v_subject and c.key = k.key),
    'usage', (
      select jsonb_object_agg(m.key, jsonb_build_object(
        'used', public.billing_usage(v_subject, m.key),
        'included', st.included,
        'window', jsonb_build_object('start', w.window_start, 'end', w.window_end),
        'state', st.state,
        'grace_ends_at', st.grace_ends_at,
        'overage', st.overage))
      from (select distinct l.key from public.billing_plan_limits l where l.kind = 'meter') m
      cross join public.billing_usage_window(v_subject, v_now) w
      cross join lateral public.billing_usage_status(v_subject, m.key) st),
    'caller_had_trial', v_caller_had_trial,
    'exceeded_limits', case when p_plan is not null then jsonb_build_object(
      'plan', public.billing_exceeded_limits(v_subject, p_plan, false),
      'trial', case when p_plan_trial then public.billing_exceeded_limits(v_subject, p_plan, true) end) end,
    'event_subject', (
      select c.user_id from public.stripe_events e
      join public.billing_customers c on c.stripe_customer_id = e.stripe_customer_id
      where p_event_id is not null and e.id = p_event_id and e.outcome not in ('failed', 'skipped', 'pending'))
  );
end;
$$;
revoke execute on function public.billing_request_context(uuid, uuid, text, integer, integer, text, text, boolean) from public, anon, authenticated;
grant execute on function public.billing_request_context(uuid, uuid, text, integer, integer, text, text, boolean) to service_role;

-- Grants -----------------------------------------------------------------------------------

revoke execute on function public.billing_grace_until(timestamptz, timestamptz, integer) from public, anon, authenticated;
revoke execute on function public.billing_access_reason(text, boolean, timestamptz, timestamptz, timestamptz, integer, timestamptz) from public, anon, authenticated;
revoke execute on function public.billing_access_at(text, boolean, timestamptz, timestamptz, timestamptz, integer, timestamptz) from public, anon, authenticated;
revoke execute on function public.billing_plan_at(public.billing_subject_state, timestamptz) from public, anon, authenticated;
revoke execute on function public.billing_plan_entry(text, boolean, text, text) from public, anon, authenticated;
revoke execute on function public.billing_window_months(timestamptz, timestamptz) from public, anon, authenticated;
revoke execute on function public.billing_window(timestamptz, timestamptz, text, timestamptz) from public, anon, authenticated;
revoke execute on function public.billing_usage_level(bigint, bigint) from public, anon, authenticated;
revoke execute on function public.billing_exceeded_limits(uuid, text, boolean) from public, anon, authenticated;
grant execute on function public.billing_grace_until(timestamptz, timestamptz, integer) to service_role;
grant execute on function public.billing_access_reason(text, boolean, timestamptz, timestamptz, timestamptz, integer, timestamptz) to service_role;
grant execute on function public.billing_access_at(text, boolean, timestamptz, timestamptz, timestamptz, integer, timestamptz) to service_role;
grant execute on function public.billing_plan_at(public.billing_subject_state, timestamptz) to service_role;
grant execute on function public.billing_plan_entry(text, boolean, text, text) to service_role;
grant execute on function public.billing_window_months(timestamptz, timestamptz) to service_role;
grant execute on function public.billing_window(timestamptz, timestamptz, text, timestamptz) to service_role;
grant execute on function public.billing_usage_level(bigint, bigint) to service_role;
grant execute on function public.billing_exceeded_limits(uuid, text, boolean) to service_role;
