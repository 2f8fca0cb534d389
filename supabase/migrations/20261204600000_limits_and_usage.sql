-- Limits and usage, enforced by the database (docs/usage.md).
--
-- * billing_now(): the only clock the SQL below reads. A transaction may set
--   billing.now (set_config('billing.now', '…', true)) to walk windows in tests; the
--   setting is transaction-local, so it cannot leak to other sessions.
-- * billing_plan_limits: the catalog's limits (counts of stored things) and usage
--   meters per plan, a trial's own limits, and the free entry (plan null), written by
--   billing_sync_catalog. A key is declared when any row names it. A plan that omits a
--   key is unlimited on it; the free entry that omits one (or is missing) gives 0: a
--   subject without access is never unlimited by accident. A null value is an explicit
--   "unlimited".
-- * billing_subject_state (20261204100000) carries the plan and the price's interval,
--   so one primary key read tells a subject's plan, status and period.
-- * Attached limits: billing_attach_limit puts per-statement triggers on a product
--   table that keep billing_limit_counts (subject, key) and refuse a statement that
--   takes a subject past its limit. The count row is updated under its row lock, so
--   concurrent statements for one subject run one after the other and cannot overshoot.
-- * Meters: billing_track adds to the window and the hour containing p_at, once per key,
--   under a per-(subject, meter) lock; billing_usage reads the current window.

-- The clock --------------------------------------------------------------------------

create function public.billing_now() returns timestamptz
language sql stable parallel safe
set search_path = ''
as $$
  select coalesce(nullif(current_setting('billing.now', true), '')::timestamptz, now())
$$;

-- The catalog's limits and meters ------------------------------------------------------

create table public.billing_plan_limits (
  -- Null: the free entry (a subject without access).
  plan text references public.billing_plans (plan) on delete cascade,
  -- The plan's trial's own value, which wins over the plan's while trialing.
  trial boolean not null default false,
  kind text not null check (kind in ('limit', 'meter')),
  key text not null,
  -- A limit, or a meter's included amount; null = unlimited.
  value bigint check (value >= 0),
  overage text check ((kind = 'meter') = (overage is not null) and overage in ('block', 'allow', 'bill')),
  -- A meter's grace rule (billing_usage_state); null: the default there.
  margin_percent integer check (margin_percent >= 0),
  windows_over integer check (windows_over >= 1),
  grace_days integer check (grace_days >= 0),
  unique nulls not distinct (plan, trial, kind, key),
  check (plan is not null or not trial)
);
-- "Is this key declared at all": every lookup of a subject without its key asks it.
create index billing_plan_limits_key_idx on public.billing_plan_limits (kind, key);
alter table public.billing_plan_limits enable row level security;
create policy "Anyone signed in reads the limits" on public.billing_plan_limits for select to authenticated using (true);
revoke all on public.billing_plan_limits from anon, authenticated, public;
grant select on public.billing_plan_limits to authenticated;
grant all on public.billing_plan_limits to service_role;

-- 20261201100000's, plus the limits: payload plans[].limits {key: n}, plans[].usage
-- {meter: {included, overage, marginPercent?, windowsOver?, graceDays?}},
-- plans[].trial_limits {key: n}, and free {limits, usage}
-- (null or absent: no free entry). A synced plan's limits, and the free entry, are
-- replaced whole.
create or replace function public.billing_sync_catalog(p_catalog jsonb) returns void
language plpgsql
security invoker
set search_path = ''
as $$
begin
  insert into public.billing_plans (plan, stripe_product_id, name, features, position)
  select p ->> 'plan', p ->> 'product_id', p ->> 'name',
         array(select jsonb_array_elements_text(p -> 'features')), (ord - 1)::integer
  from jsonb_array_elements(p_catalog -> 'plans') with ordinality as x(p, ord)
  on conflict (plan) do update
    set stripe_product_id = excluded.stripe_product_id, name = excluded.name,
        features = excluded.features, position = excluded.position, updated_at = now();

  -- A lookup key moves to its new price: take it off the old one first.
  update public.billing_prices
    set lookup_key = null, updated_at = now()
    where lookup_key in (select q ->> 'lookup_key' from jsonb_array_elements(p_catalog -> 'prices') q)
      and stripe_price_id not in (select q ->> 'price_id' from jsonb_array_elements(p_catalog -> 'prices') q);

  insert into public.billing_prices (stripe_price_id, plan, lookup_key, interval, amount, currency)
  select q ->> 'price_id', q ->> 'plan', q ->> 'lookup_key', q ->> 'interval', (q ->> 'amount')::bigint, q ->> 'currency'
  from jsonb_array_elements(p_catalog -> 'prices') q
  on conflict (stripe_price_id) do update
    set plan = excluded.plan, lookup_key = excluded.lookup_key, interval = excluded.interval,
        amount = excluded.amount, currency = excluded.currency, updated_at = now();

  delete from public.billing_plan_limits l
  where l.plan is null or l.plan in (select p ->> 'plan' from jsonb_array_elements(p_catalog -> 'plans') p);

  insert into public.billing_plan_limits (plan, trial, kind, key, value, overage, margin_percent, windows_over, grace_days)
  select e.plan, e.trial, e.kind, k.key,
         case when e.kind = 'meter' then (k.value ->> 'included')::bigint else (k.value #>> '{}')::bigint end,
         case when e.kind = 'meter' then coalesce(k.value ->> 'overage', 'block') end,
         case when e.kind = 'meter' then (k.value ->> 'marginPercent')::integer end,
         case when e.kind = 'meter' then (k.value ->> 'windowsOver')::integer end,
         case when e.kind = 'meter' then (k.value ->> 'graceDays')::integer end
  from (
    select p ->> 'plan' as plan, false as trial, 'limit' as kind, p -> 'limits' as entries
    from jsonb_array_elements(p_catalog -> 'plans') p
    union all
    select p ->> 'plan', true, 'limit', p -> 'trial_limits' from jsonb_array_elements(p_catalog -> 'plans') p
    union all
    select p ->> 'plan', false, 'meter', p -> 'usage' from jsonb_array_elements(p_catalog -> 'plans') p
    union all
    select null, false, 'limit', p_catalog -> 'free' -> 'limits'
    union all
    select null, false, 'meter', p_catalog -> 'free' -> 'usage'
  ) e
  cross join lateral jsonb_each(case when jsonb_typeof(e.entries) = 'object' then e.entries else '{}' end) k;
end;
$$;

-- A subject's limits ---------------------------------------------------------------------

-- The value of a limit or meter for the subject at p_at, without asking who calls:
-- the plan's (its trial's first, while trialing) when the subject has access, else the
-- free entry's. declared: whether any catalog row names the key.
-- Whether the caller may ask about p_subject: the rule the access functions of
-- 20261204100000 apply inline (service_role, or a role that sees every row, about
-- anyone; a signed-in user about themselves and their teams). Anyone else gets the
-- free answer.
create function public.billing_may_ask(p_subject uuid) returns boolean
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
  if p_subject = v_uid or exists (select 1 from public.billing_team_members m where m.team_id = p_subject and m.user_id = v_uid) then
    return true;
  end if;
  return current_setting('role') not in ('authenticated', 'anon') and public.billing_caller_sees_all();
end;
$$;
revoke execute on function public.billing_may_ask(uuid) from public, anon, authenticated;
grant execute on function public.billing_may_ask(uuid) to service_role;

create function public.billing_limit_of(
  p_subject uuid, p_kind text, p_key text, p_at timestamptz, p_free boolean,
  out declared boolean, out value bigint, out overage text,
  out margin_percent integer, out windows_over integer, out grace_days integer
)
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  s public.billing_subject_state;
begin
  declared := exists (select 1 from public.billing_plan_limits l where l.kind = p_kind and l.key = p_key);
  if not declared then
    return;
  end if;
  if not p_free then
    select * into s from public.billing_subject_state where subject_id = p_subject;
  end if;
  if s.plan is not null and (public.billing_decide_access(s.status, s.cancel_at_period_end, s.current_period_start,
      s.current_period_end, s.payment_failed_at, case when s.status = 'past_due' then public.billing_grace_days() end, p_at)).access then
    select l.value, l.overage, l.margin_percent, l.windows_over, l.grace_days
      into value, overage, margin_percent, windows_over, grace_days
    from public.billing_plan_limits l
    where l.plan = s.plan and l.kind = p_kind and l.key = p_key and (not l.trial or s.status = 'trialing')
    order by l.trial desc
    limit 1;
    if not found then
      value := null; overage := case when p_kind = 'meter' then 'allow' end;
    end if;
    return;
  end if;
  select l.value, l.overage, l.margin_percent, l.windows_over, l.grace_days
    into value, overage, margin_percent, windows_over, grace_days
  from public.billing_plan_limits l
  where l.plan is null and l.kind = p_kind and l.key = p_key;
  if not found then
    value := 0; overage := case when p_kind = 'meter' then 'block' end;
  end if;
end;
$$;

-- The subject's limit on p_key now; null = unlimited. Others than the caller and their
-- teams get the free answer.
create function public.billing_limit(p_subject uuid, p_key text) returns bigint
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  r record;
begin
  select * into r from public.billing_limit_of(p_subject, 'limit', p_key, public.billing_now(), not public.billing_may_ask(p_subject));
  if not r.declared then
    raise exception 'Unknown limit: %', p_key using errcode = 'invalid_parameter_value';
  end if;
  return r.value;
end;
$$;

-- Usage windows ------------------------------------------------------------------------

-- The usage window containing p_at: the subscription's period; for an annual price (or
-- a time outside the recorded period) months anchored on the period's start; without a
-- subscription, calendar months. Months in UTC, stepped from the anchor (31 Jan, 28 Feb,
-- 31 Mar: never drifting).
create function public.billing_usage_window(p_subject uuid, p_at timestamptz, out window_start timestamptz, out window_end timestamptz)
language plpgsql stable
security definer
set search_path = ''
set timezone = 'UTC'
as $$
declare
  s public.billing_subject_state;
  k integer;
begin
  select * into s from public.billing_subject_state where subject_id = p_subject;
  if s.current_period_start is null then
    window_start := date_trunc('month', p_at);
    window_end := window_start + interval '1 month';
    return;
  end if;
  if s.price_interval is distinct from 'year' and s.current_period_end is not null
     and p_at >= s.current_period_start and p_at < s.current_period_end then
    window_start := s.current_period_start;
    window_end := s.current_period_end;
    return;
  end if;
  k := (extract(year from p_at)::integer - extract(year from s.current_period_start)::integer) * 12
       + extract(month from p_at)::integer - extract(month from s.current_period_start)::integer;
  if s.current_period_start + make_interval(months => k) > p_at then
    k := k - 1;
  end if;
  window_start := s.current_period_start + make_interval(months => k);
  window_end := s.current_period_start + make_interval(months => k + 1);
end;
$$;

create table public.billing_usage_windows (
  subject_id uuid not null,
  meter text not null,
  window_start timestamptz not null,
  window_end timestamptz not null,
  used bigint not null,
  updated_at timestamptz not null default now(),
  primary key (subject_id, meter, window_start)
);

-- Hourly totals, kept 35 days (for reports and for Stripe's meters).
create table public.billing_usage_hours (
  subject_id uuid not null,
  meter text not null,
  hour timestamptz not null,
  amount bigint not null,
  primary key (subject_id, meter, hour)
);

-- Idempotency keys, kept at least 48 hours, with the result their first call answered.
create table public.billing_usage_keys (
  subject_id uuid not null,
  meter text not null,
  key text not null,
  result jsonb not null,
  created_at timestamptz not null,
  primary key (subject_id, meter, key)
);
create index billing_usage_keys_created_idx on public.billing_usage_keys (subject_id, meter, created_at);

alter table public.billing_usage_windows enable row level security;
alter table public.billing_usage_hours enable row level security;
alter table public.billing_usage_keys enable row level security;
revoke all on public.billing_usage_windows, public.billing_usage_hours, public.billing_usage_keys from anon, authenticated, public;
grant select on public.billing_usage_windows, public.billing_usage_hours, public.billing_usage_keys to service_role;

-- Records p_amount of p_meter for the subject at p_at, once per p_key. With overage
-- block, an amount that would pass the included amount is refused whole and leaves no
-- trace (a retry with the same key may then succeed, after an upgrade say).
create function public.billing_track(
  p_subject uuid, p_meter text, p_amount bigint, p_key text, p_at timestamptz default public.billing_now()
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := public.billing_now();
  l record;
  w record;
  v_used bigint;
  v_result jsonb;
begin
  if p_subject is null or p_key is null or p_amount is null or p_amount < 0 then
    raise exception 'billing_track needs a subject, a key and an amount of 0 or more' using errcode = 'invalid_parameter_value';
  end if;
  if p_at is null or p_at < v_now - interval '35 days' or p_at > v_now + interval '5 minutes' then
    raise exception 'Usage at % is more than 35 days old or more than 5 minutes ahead', p_at using errcode = 'invalid_parameter_value';
  end if;
  select * into l from public.billing_limit_of(p_subject, 'meter', p_meter, v_now, false);
  if not l.declared then
    raise exception 'Unknown meter: %', p_meter using errcode = 'invalid_parameter_value';
  end if;

  -- One call at a time per subject and meter: the key check, the limit check and the
  -- write see each other's results.
  perform pg_advisory_xact_lock(hashtextextended('billing_usage:' || p_subject::text || ':' || p_meter, 0));
  -- What this subject and meter no longer need goes first, so an expired key counts anew.
  delete from public.billing_usage_keys k
  where k.subject_id = p_subject and k.meter = p_meter and k.created_at < v_now - interval '48 hours';
  delete from public.billing_usage_hours h
  where h.subject_id = p_subject and h.meter = p_meter and h.hour < v_now - interval '35 days' - interval '1 hour';
  select k.result || '{"duplicate": true}' into v_result
  from public.billing_usage_keys k where k.subject_id = p_subject and k.meter = p_meter and k.key = p_key;
  if found then
    return v_result;
  end if;

  select * into w from public.billing_usage_window(p_subject, p_at);
  select coalesce(max(u.used), 0) into v_used
  from public.billing_usage_windows u
  where u.subject_id = p_subject and u.meter = p_meter and u.window_start = w.window_start;
  if l.value is not null and l.overage = 'block' and p_amount > 0 and v_used + p_amount > l.value then
    return jsonb_build_object('allowed', false, 'used', v_used, 'limit', l.value, 'duplicate', false);
  end if;

  insert into public.billing_usage_windows as u (subject_id, meter, window_start, window_end, used)
  values (p_subject, p_meter, w.window_start, w.window_end, p_amount)
  on conflict (subject_id, meter, window_start) do update set used = u.used + excluded.used, updated_at = now();
  insert into public.billing_usage_hours as h (subject_id, meter, hour, amount)
  values (p_subject, p_meter, date_trunc('hour', p_at, 'UTC'), p_amount)
  on conflict (subject_id, meter, hour) do update set amount = h.amount + excluded.amount;
  v_result := jsonb_build_object('allowed', true, 'used', v_used + p_amount, 'limit', l.value, 'duplicate', false);
  insert into public.billing_usage_keys (subject_id, meter, key, result, created_at)
  values (p_subject, p_meter, p_key, v_result, v_now);
  return v_result;
end;
$$;

-- The subject's use of p_meter in the current window (0 for others than the caller and
-- their teams).
create function public.billing_usage(p_subject uuid, p_meter text) returns bigint
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  w record;
begin
  if not exists (select 1 from public.billing_plan_limits l where l.kind = 'meter' and l.key = p_meter) then
    raise exception 'Unknown meter: %', p_meter using errcode = 'invalid_parameter_value';
  end if;
  if not public.billing_may_ask(p_subject) then
    return 0;
  end if;
  select * into w from public.billing_usage_window(p_subject, public.billing_now());
  return coalesce((
    select u.used from public.billing_usage_windows u
    where u.subject_id = p_subject and u.meter = p_meter and u.window_start = w.window_start
  ), 0);
end;
$$;

-- Against the plan now, the first that holds: locked, grace, over (used > included),
-- warning (at least 90% of included), ok; an unlimited meter is ok. The grace rule: a
-- run of windows_over (2) windows in a row that each ended above included +
-- margin_percent (10%) starts grace_days (7) of grace when its last window ends; after
-- them the meter is locked until a window ends within the included amount (a window
-- without use does) or the plan includes enough for the windows that ended.
create function public.billing_usage_status(p_subject uuid, p_meter text, out state text, out included bigint, out grace_ends_at timestamptz)
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := public.billing_now();
  v_used bigint := public.billing_usage(p_subject, p_meter);
  v_may_ask boolean := public.billing_may_ask(p_subject);
  l record;
  w record;
  r record;
  v_next timestamptz;
  v_ends timestamptz[] := '{}';
  v_above boolean[] := '{}';
  v_run integer := 0;
  v_since timestamptz;
begin
  select * into l from public.billing_limit_of(p_subject, 'meter', p_meter, v_now, not v_may_ask);
  included := l.value;
  if l.value is null then
    state := 'ok';
    return;
  end if;
  if v_may_ask then
    -- The ended windows over the included amount, back from the current one without a
    -- gap, then the earliest run among them that started grace.
    select * into w from public.billing_usage_window(p_subject, v_now);
    v_next := w.window_start;
    for r in
      select u.window_start, u.window_end, u.used from public.billing_usage_windows u
      where u.subject_id = p_subject and u.meter = p_meter and u.window_start < w.window_start
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
  state := case
    when v_used > l.value then 'over'
    when v_used > 0 and v_used * 10 >= l.value * 9 then 'warning'
    else 'ok'
  end;
end;
$$;

create function public.billing_usage_state(p_subject uuid, p_meter text) returns text
language sql stable
security definer
set search_path = ''
as $$
  select (public.billing_usage_status(p_subject, p_meter)).state
$$;

revoke execute on function public.billing_usage_status(uuid, text) from public, anon, authenticated;
grant execute on function public.billing_usage_status(uuid, text) to service_role;

-- Attached limits --------------------------------------------------------------------------

create table public.billing_limit_counts (
  subject_id uuid not null,
  key text not null,
  count bigint not null check (count >= 0),
  primary key (subject_id, key)
);
-- The tables attached, one per key, so a truncate knows which counts it empties.
create table public.billing_limit_tables (
  key text primary key,
  table_name regclass not null,
  subject_column name not null
);
alter table public.billing_limit_counts enable row level security;
alter table public.billing_limit_tables enable row level security;
revoke all on public.billing_limit_counts, public.billing_limit_tables from anon, authenticated, public;
grant select on public.billing_limit_counts, public.billing_limit_tables to service_role;

-- After a statement on an attached table (tg_argv: key, subject column): moves the
-- counts of the subjects it touched, in subject order (no deadlock between statements
-- touching several), each under its row lock until commit, and refuses a subject that
-- grew past its limit. Statement triggers run after the table's own row-level security
-- checks, so a refused insert never gets here.
create function public.billing_limit_count() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key text := tg_argv[0];
  v_column text := tg_argv[1];
  v_now timestamptz := public.billing_now();
  d record;
  v_count bigint;
  l record;
begin
  if tg_op = 'TRUNCATE' then
    delete from public.billing_limit_counts c where c.key = v_key;
    return null;
  end if;
  for d in execute format(
    'select subject, sum(delta)::bigint as delta from (%s) t where subject is not null group by subject having sum(delta) <> 0 order by subject',
    case tg_op
      when 'INSERT' then format('select %I as subject, 1 as delta from new_rows', v_column)
      when 'DELETE' then format('select %I as subject, -1 as delta from old_rows', v_column)
      else format('select %1$I as subject, 1 as delta from new_rows union all select %1$I, -1 from old_rows', v_column)
    end)
  loop
    insert into public.billing_limit_counts (subject_id, key, count) values (d.subject, v_key, 0)
    on conflict do nothing;
    update public.billing_limit_counts c set count = greatest(c.count + d.delta, 0)
    where c.subject_id = d.subject and c.key = v_key
    returning c.count into v_count;
    if d.delta > 0 then
      select * into l from public.billing_limit_of(d.subject, 'limit', v_key, v_now, false);
      if l.declared and l.value is not null and v_count > l.value then
        raise exception 'Plan limit reached: %', v_key
          using errcode = 'check_violation',
                detail = format('key=%s limit=%s count=%s', v_key, l.value, v_count);
      end if;
    end if;
  end loop;
  return null;
end;
$$;

-- Counts what p_table holds per subject now and attaches the triggers, for any key (the
-- catalog may declare it later: until then, nothing is refused).
create function public.billing_limit_attach(p_table regclass, p_key text, p_subject_column text) returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_type regtype;
  v_name text := 'billing_limit_' || p_key;
begin
  select a.atttypid::regtype into v_type
  from pg_catalog.pg_attribute a
  where a.attrelid = p_table and a.attname = p_subject_column and a.attnum > 0 and not a.attisdropped;
  if v_type is distinct from 'uuid'::regtype then
    raise exception '% has no uuid column %', p_table, p_subject_column using errcode = 'invalid_parameter_value';
  end if;
  if exists (select 1 from public.billing_limit_tables t where t.key = p_key and t.table_name <> p_table) then
    raise exception 'Limit % is already attached to another table', p_key using errcode = 'invalid_parameter_value';
  end if;
  -- No writes while counting: the triggers take over from the count exactly.
  execute format('lock table %s in share row exclusive mode', p_table);
  insert into public.billing_limit_tables as t (key, table_name, subject_column) values (p_key, p_table, p_subject_column)
  on conflict (key) do update set subject_column = excluded.subject_column;
  delete from public.billing_limit_counts c where c.key = p_key;
  execute format(
    'insert into public.billing_limit_counts (subject_id, key, count) select %1$I, %2$L, count(*) from %3$s where %1$I is not null group by 1',
    p_subject_column, p_key, p_table);
  execute format('drop trigger if exists %I on %s', v_name || '_insert', p_table);
  execute format('drop trigger if exists %I on %s', v_name || '_update', p_table);
  execute format('drop trigger if exists %I on %s', v_name || '_delete', p_table);
  execute format('drop trigger if exists %I on %s', v_name || '_truncate', p_table);
  execute format('create trigger %I after insert on %s referencing new table as new_rows
    for each statement execute function public.billing_limit_count(%L, %L)', v_name || '_insert', p_table, p_key, p_subject_column);
  execute format('create trigger %I after update on %s referencing old table as old_rows new table as new_rows
    for each statement execute function public.billing_limit_count(%L, %L)', v_name || '_update', p_table, p_key, p_subject_column);
  execute format('create trigger %I after delete on %s referencing old table as old_rows
    for each statement execute function public.billing_limit_count(%L, %L)', v_name || '_delete', p_table, p_key, p_subject_column);
  execute format('create trigger %I after truncate on %s
    for each statement execute function public.billing_limit_count(%L, %L)', v_name || '_truncate', p_table, p_key, p_subject_column);
end;
$$;

-- The product's call: by the table's owner or the service role, for a key the catalog
-- declares as a limit.
create function public.billing_attach_limit(p_table regclass, p_key text, p_subject_column text) returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_caller text := case current_setting('role') when 'none' then session_user else current_setting('role') end;
begin
  if v_caller <> 'service_role' and not exists (
    select 1 from pg_catalog.pg_class c
    where c.oid = p_table and pg_catalog.pg_has_role(v_caller, c.relowner, 'USAGE')
  ) then
    raise exception 'Only the owner of % or the service role may attach a limit to it', p_table using errcode = 'insufficient_privilege';
  end if;
  if not exists (select 1 from public.billing_plan_limits l where l.kind = 'limit' and l.key = p_key) then
    raise exception 'Unknown limit: %', p_key using errcode = 'invalid_parameter_value';
  end if;
  perform public.billing_limit_attach(p_table, p_key, p_subject_column);
end;
$$;

-- A member cap (plans' "limits": {"members": n}) on the teams.
select public.billing_limit_attach('public.billing_team_members', 'members', 'team_id');

-- Grants ---------------------------------------------------------------------------------

revoke execute on function public.billing_now() from public, anon, authenticated;
revoke execute on function public.billing_limit(uuid, text) from public, anon;
revoke execute on function public.billing_usage(uuid, text) from public, anon;
revoke execute on function public.billing_usage_state(uuid, text) from public, anon;
grant execute on function public.billing_now() to service_role;
grant execute on function public.billing_limit(uuid, text) to authenticated, service_role;
grant execute on function public.billing_usage(uuid, text) to authenticated, service_role;
grant execute on function public.billing_usage_state(uuid, text) to authenticated, service_role;

revoke execute on function public.billing_track(uuid, text, bigint, text, timestamptz) from public, anon, authenticated;
revoke execute on function public.billing_attach_limit(regclass, text, text) from public, anon, authenticated;
revoke execute on function public.billing_limit_of(uuid, text, text, timestamptz, boolean) from public, anon, authenticated;
revoke execute on function public.billing_usage_window(uuid, timestamptz) from public, anon, authenticated;
revoke execute on function public.billing_limit_count() from public, anon, authenticated;
revoke execute on function public.billing_limit_attach(regclass, text, text) from public, anon, authenticated;
grant execute on function public.billing_track(uuid, text, bigint, text, timestamptz) to service_role;
grant execute on function public.billing_attach_limit(regclass, text, text) to service_role;
grant execute on function public.billing_usage_window(uuid, timestamptz) to service_role;
