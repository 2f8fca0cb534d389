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
-- * Meters: billing_track adds to the window containing p_at, once per key; the key's
--   row carries the amount and the hour, which billing_usage_fold later moves into the
--   hourly totals (billing_usage_hourly reads both); billing_usage reads the current
--   window.
-- * Billed overage (overage 'bill'): what goes past included is tolerated, never
--   refused nor locked, and billed through a Stripe meter; billing_plan_limits keeps its
--   price (per package of price_per units, rounded up) and billing_usage_status
--   estimates the current window's bill (billing_overage_amount, the rounding once).

-- The clock --------------------------------------------------------------------------

-- Without settings, so the planner inlines it where it is read.
create function public.billing_now() returns timestamptz
language sql stable parallel safe
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
  -- A billed meter's price: amount (smallest currency unit) per package of price_per units.
  price_amount bigint check (price_amount >= 0),
  price_currency text,
  price_per bigint check (price_per >= 1),
  check ((overage is not distinct from 'bill') = (price_amount is not null)
         and (price_amount is null) = (price_currency is null) and (price_amount is null) = (price_per is null)),
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
-- {meter: {included, overage, marginPercent?, windowsOver?, graceDays?, price?: {amount,
-- currency, per}}},
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

  insert into public.billing_plan_limits (plan, trial, kind, key, value, overage, margin_percent, windows_over, grace_days,
                                          price_amount, price_currency, price_per)
  select e.plan, e.trial, e.kind, k.key,
         case when e.kind = 'meter' then (k.value ->> 'included')::bigint else (k.value #>> '{}')::bigint end,
         case when e.kind = 'meter' then coalesce(k.value ->> 'overage', 'block') end,
         case when e.kind = 'meter' then (k.value ->> 'marginPercent')::integer end,
         case when e.kind = 'meter' then (k.value ->> 'windowsOver')::integer end,
         case when e.kind = 'meter' then (k.value ->> 'graceDays')::integer end,
         case when e.kind = 'meter' then (k.value #>> '{price,amount}')::bigint end,
         case when e.kind = 'meter' then k.value #>> '{price,currency}' end,
         case when e.kind = 'meter' and k.value ? 'price' then coalesce((k.value #>> '{price,per}')::bigint, 1) end
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

-- The value of a limit or meter (p_kind) for a subject in state p_state (its
-- billing_subject_state row; all null for a subject without one, or one the caller may
-- not ask about) at p_at: with access (billing_decide_access), the plan's, its trial's
-- first while trialing, and unlimited (a meter: overage allow) where the plan omits the
-- key; without, the free entry's, 0 (a meter: overage block) where it omits the key.
-- declared: whether any catalog row names the key.
-- Its callers read the state once and pass it; security invoker without settings (its
-- callers are security definer functions, or the service role's), so a call costs no
-- switch of user or search_path; exact lookups of the unique (plan, trial, kind, key).
create function public.billing_limit_of(
  p_state public.billing_subject_state, p_kind text, p_key text, p_at timestamptz,
  out declared boolean, out value bigint, out overage text,
  out margin_percent integer, out windows_over integer, out grace_days integer,
  out price_amount bigint, out price_currency text, out price_per bigint
)
language plpgsql stable
as $$
declare
  v_plan text;
begin
  if p_state.plan is not null and (public.billing_decide_access(p_state.status, p_state.cancel_at_period_end,
      p_state.current_period_start, p_state.current_period_end, p_state.payment_failed_at,
      case when p_state.status = 'past_due' then public.billing_grace_days() end, p_at)).access then
    v_plan := p_state.plan;
  end if;
  if v_plan is not null and p_state.status = 'trialing' then
    select l.value, l.overage, l.margin_percent, l.windows_over, l.grace_days, l.price_amount, l.price_currency, l.price_per
      into value, overage, margin_percent, windows_over, grace_days, price_amount, price_currency, price_per
    from public.billing_plan_limits l
    where l.plan = v_plan and l.trial and l.kind = p_kind and l.key = p_key;
    if found then
      declared := true;
      return;
    end if;
  end if;
  -- The plan's row, or (v_plan null) the free entry's.
  select l.value, l.overage, l.margin_percent, l.windows_over, l.grace_days, l.price_amount, l.price_currency, l.price_per
    into value, overage, margin_percent, windows_over, grace_days, price_amount, price_currency, price_per
  from public.billing_plan_limits l
  where l.plan is not distinct from v_plan and not l.trial and l.kind = p_kind and l.key = p_key;
  if found then
    declared := true;
    return;
  end if;
  declared := exists (select 1 from public.billing_plan_limits l where l.kind = p_kind and l.key = p_key);
  if v_plan is not null then
    value := null; overage := case when p_kind = 'meter' then 'allow' end;
  else
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
  s public.billing_subject_state;
  l record;
begin
  if public.billing_may_ask(p_subject) then
    select * into s from public.billing_subject_state x where x.subject_id = p_subject;
  end if;
  l := public.billing_limit_of(s, 'limit', p_key, public.billing_now());
  if not l.declared then
    raise exception 'Unknown limit: %', p_key using errcode = 'invalid_parameter_value';
  end if;
  return l.value;
end;
$$;

-- Usage windows ------------------------------------------------------------------------

-- The usage window containing p_at for a subject in state p_state (as billing_limit_of):
-- the subscription's period; for an annual price (or a time outside the recorded period)
-- months anchored on the period's start; without a subscription, calendar months. Months
-- in UTC, computed on UTC timestamps (whatever the session's time zone, so no setting is
-- needed), stepped from the anchor (31 Jan, 28 Feb, 31 Mar: never drifting).
create function public.billing_window_of(p_state public.billing_subject_state, p_at timestamptz, out window_start timestamptz, out window_end timestamptz)
language plpgsql stable
as $$
declare
  v_at timestamp := p_at at time zone 'UTC';
  v_anchor timestamp := p_state.current_period_start at time zone 'UTC';
  k integer;
begin
  if v_anchor is null then
    window_start := date_trunc('month', v_at) at time zone 'UTC';
    window_end := (date_trunc('month', v_at) + interval '1 month') at time zone 'UTC';
    return;
  end if;
  if p_state.price_interval is distinct from 'year' and p_state.current_period_end is not null
     and p_at >= p_state.current_period_start and p_at < p_state.current_period_end then
    window_start := p_state.current_period_start;
    window_end := p_state.current_period_end;
    return;
  end if;
  k := (extract(year from v_at)::integer - extract(year from v_anchor)::integer) * 12
       + extract(month from v_at)::integer - extract(month from v_anchor)::integer;
  if v_anchor + make_interval(months => k) > v_at then
    k := k - 1;
  end if;
  window_start := (v_anchor + make_interval(months => k)) at time zone 'UTC';
  window_end := (v_anchor + make_interval(months => k + 1)) at time zone 'UTC';
end;
$$;

-- The subject's usage window containing p_at.
create function public.billing_usage_window(p_subject uuid, p_at timestamptz, out window_start timestamptz, out window_end timestamptz)
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  s public.billing_subject_state;
  w record;
begin
  select * into s from public.billing_subject_state x where x.subject_id = p_subject;
  w := public.billing_window_of(s, p_at);
  window_start := w.window_start;
  window_end := w.window_end;
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

-- Idempotency keys, kept at least 48 hours, with the result their first call answered,
-- and the amount and the hour (of p_at) they counted: until billing_usage_fold moves them
-- into billing_usage_hours, the hourly totals are read from them too
-- (billing_usage_hourly).
create table public.billing_usage_keys (
  subject_id uuid not null,
  meter text not null,
  key text not null,
  result jsonb not null,
  amount bigint not null,
  hour timestamptz not null,
  created_at timestamptz not null,
  primary key (subject_id, meter, key)
);
create index billing_usage_keys_created_idx on public.billing_usage_keys (created_at);

-- Hourly totals of the keys billing_usage_fold has folded, kept 35 days (and an hour).
create table public.billing_usage_hours (
  subject_id uuid not null,
  meter text not null,
  hour timestamptz not null,
  amount bigint not null,
  primary key (subject_id, meter, hour)
);

-- THE read of hourly totals (for reports and for Stripe's meters): the folded hours plus
-- the keys not folded yet.
create view public.billing_usage_hourly with (security_invoker = true) as
  select t.subject_id, t.meter, t.hour, sum(t.amount)::bigint as amount
  from (
    select h.subject_id, h.meter, h.hour, h.amount from public.billing_usage_hours h
    union all
    select k.subject_id, k.meter, k.hour, k.amount from public.billing_usage_keys k
  ) t
  group by t.subject_id, t.meter, t.hour;

alter table public.billing_usage_windows enable row level security;
alter table public.billing_usage_hours enable row level security;
alter table public.billing_usage_keys enable row level security;
revoke all on public.billing_usage_windows, public.billing_usage_hours, public.billing_usage_keys, public.billing_usage_hourly from anon, authenticated, public;
grant select on public.billing_usage_windows, public.billing_usage_hours, public.billing_usage_keys, public.billing_usage_hourly to service_role;

-- Records p_amount of p_meter for the subject at p_at, once per p_key. With overage
-- block, an amount that would pass the included amount is refused whole and leaves no
-- trace (a retry with the same key may then succeed, after an upgrade say).
-- What one subject's calls wait for each other for is one statement: the update of the
-- window's row (with the key's result), whose lock is held until commit. Everything
-- else is done before it: the limit and the window, then the key's insert, which only
-- a call with the same key waits for (a repeat finds the key there and answers without
-- a lock). The hourly totals are not touched here: the key's row carries them
-- (billing_usage_hourly, billing_usage_fold).
create function public.billing_track(
  p_subject uuid, p_meter text, p_amount bigint, p_key text, p_at timestamptz default public.billing_now()
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := public.billing_now();
  v_expired timestamptz := v_now - interval '48 hours';
  v_hour timestamptz := date_trunc('hour', p_at, 'UTC');
  s public.billing_subject_state;
  l record;
  w record;
  k public.billing_usage_keys;
  v_blocks boolean;
  v_result jsonb;
begin
  if p_subject is null or p_key is null or p_amount is null or p_amount < 0 then
    raise exception 'billing_track needs a subject, a key and an amount of 0 or more' using errcode = 'invalid_parameter_value';
  end if;
  if p_at is null or p_at < v_now - interval '35 days' or p_at > v_now + interval '5 minutes' then
    raise exception 'Usage at % is more than 35 days old or more than 5 minutes ahead', p_at using errcode = 'invalid_parameter_value';
  end if;
  select * into s from public.billing_subject_state x where x.subject_id = p_subject;
  l := public.billing_limit_of(s, 'meter', p_meter, v_now);
  if not l.declared then
    raise exception 'Unknown meter: %', p_meter using errcode = 'invalid_parameter_value';
  end if;
  w := public.billing_window_of(s, p_at);
  v_blocks := l.value is not null and l.overage = 'block' and p_amount > 0;

  -- The key first, before the window's row, so that the calls of one subject wait for
  -- each other only at that row: the key's insert waits only for a call with the same
  -- key (and then finds it).
  loop
    insert into public.billing_usage_keys (subject_id, meter, key, result, amount, hour, created_at)
    values (p_subject, p_meter, p_key, '{}', p_amount, v_hour, v_now)
    on conflict do nothing;
    exit when found;
    -- A repeat: the first call's result, unless the key is older than 48 hours.
    select * into k from public.billing_usage_keys x where x.subject_id = p_subject and x.meter = p_meter and x.key = p_key;
    if found and k.created_at >= v_expired then
      return k.result || '{"duplicate": true}';
    elsif found then
      select * into k from public.billing_usage_keys x
      where x.subject_id = p_subject and x.meter = p_meter and x.key = p_key and x.created_at < v_expired
      for update;
      if found then
        -- Expired and not folded yet: its amount goes to its hour, and this call takes the key.
        insert into public.billing_usage_hours as h (subject_id, meter, hour, amount)
        values (p_subject, p_meter, k.hour, k.amount)
        on conflict (subject_id, meter, hour) do update set amount = h.amount + excluded.amount;
        update public.billing_usage_keys x set result = '{}', amount = p_amount, hour = v_hour, created_at = v_now
        where x.subject_id = p_subject and x.meter = p_meter and x.key = p_key;
        exit;
      end if;
    end if;
    -- Folded (or taken) meanwhile: again.
  end loop;

  -- An amount alone past the limit is refused without a lock.
  if not (v_blocks and p_amount > l.value) then
    -- The window's row, and the key's result, in one statement: from here to the commit
    -- this subject's other calls wait. A plain update when the row is there: a waiter
    -- then follows the row to its new version when the holder commits, where an insert's
    -- on conflict would start over (and every waiter with it).
    with win as (
      update public.billing_usage_windows u set used = u.used + p_amount, updated_at = now()
      where u.subject_id = p_subject and u.meter = p_meter and u.window_start = w.window_start
        and (not v_blocks or u.used + p_amount <= l.value)
      returning u.used
    )
    update public.billing_usage_keys x
    set result = jsonb_build_object('allowed', true, 'used', win.used, 'limit', l.value, 'duplicate', false)
    from win
    where x.subject_id = p_subject and x.meter = p_meter and x.key = p_key
    returning x.result into v_result;
    if v_result is not null then
      return v_result;
    end if;
    -- No row yet, or the amount would pass the limit.
    with win as (
      insert into public.billing_usage_windows as u (subject_id, meter, window_start, window_end, used)
      values (p_subject, p_meter, w.window_start, w.window_end, p_amount)
      on conflict (subject_id, meter, window_start) do update set used = u.used + excluded.used, updated_at = now()
        where not v_blocks or u.used + excluded.used <= l.value
      returning u.used
    )
    update public.billing_usage_keys x
    set result = jsonb_build_object('allowed', true, 'used', win.used, 'limit', l.value, 'duplicate', false)
    from win
    where x.subject_id = p_subject and x.meter = p_meter and x.key = p_key
    returning x.result into v_result;
    if v_result is not null then
      return v_result;
    end if;
  end if;
  -- Refused: nothing is recorded, not even the key.
  delete from public.billing_usage_keys x where x.subject_id = p_subject and x.meter = p_meter and x.key = p_key;
  return jsonb_build_object('allowed', false, 'limit', l.value, 'duplicate', false, 'used', coalesce((
    select u.used from public.billing_usage_windows u
    where u.subject_id = p_subject and u.meter = p_meter and u.window_start = w.window_start), 0));
end;
$$;

-- Moves the keys older than 48 hours into billing_usage_hours, removes the hours older
-- than 35 days and an hour, and the usage windows no state can read any more (below).
-- Run hourly by the reconcile job (src/billing/reconcile.ts); safe beside billing_track
-- and beside another run (a key is deleted once; its amount moves with its deletion).
-- A window no one can read: billing_track writes only windows that end within the last
-- 35 days (p_at is at most 35 days old), so older windows are final; and
-- billing_usage_status walks back from the current window only through windows that
-- each end where the next starts and are above the included amount, so it never reaches
-- a window that starts before a final one it must stop at: one with no use, or one that
-- no window ends where it starts.
-- Answers {"keys_folded", "hours_removed", "windows_removed"}.
create function public.billing_usage_fold() returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := public.billing_now();
  v_final timestamptz := v_now - interval '35 days';
  keys_folded bigint;
  hours_removed bigint;
  windows_removed bigint;
begin
  -- The grouping reads every deleted key before the first hour is written, so a fold
  -- never holds an hour's row while waiting for a key's.
  with gone as (
    delete from public.billing_usage_keys k where k.created_at < v_now - interval '48 hours'
    returning k.subject_id, k.meter, k.hour, k.amount
  ), sums as (
    select g.subject_id, g.meter, g.hour, sum(g.amount)::bigint as amount, count(*) as keys
    from gone g group by g.subject_id, g.meter, g.hour
  ), folded as (
    insert into public.billing_usage_hours as h (subject_id, meter, hour, amount)
    select s.subject_id, s.meter, s.hour, s.amount from sums s order by s.subject_id, s.meter, s.hour
    on conflict (subject_id, meter, hour) do update set amount = h.amount + excluded.amount
  )
  select coalesce(sum(s.keys), 0) into keys_folded from sums s;

  delete from public.billing_usage_hours h where h.hour < v_final - interval '1 hour';
  get diagnostics hours_removed = row_count;

  delete from public.billing_usage_windows w
  where w.window_end < v_final and exists (
    select 1 from public.billing_usage_windows b
    where b.subject_id = w.subject_id and b.meter = w.meter and b.window_start > w.window_start and b.window_end < v_final
      and (b.used = 0 or not exists (
        select 1 from public.billing_usage_windows p
        where p.subject_id = b.subject_id and p.meter = b.meter and p.window_end = b.window_start)));
  get diagnostics windows_removed = row_count;
  return jsonb_build_object('keys_folded', keys_folded, 'hours_removed', hours_removed, 'windows_removed', windows_removed);
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
  s public.billing_subject_state;
  w record;
begin
  if not exists (select 1 from public.billing_plan_limits l where l.kind = 'meter' and l.key = p_meter) then
    raise exception 'Unknown meter: %', p_meter using errcode = 'invalid_parameter_value';
  end if;
  if not public.billing_may_ask(p_subject) then
    return 0;
  end if;
  select * into s from public.billing_subject_state x where x.subject_id = p_subject;
  w := public.billing_window_of(s, public.billing_now());
  return coalesce((
    select u.used from public.billing_usage_windows u
    where u.subject_id = p_subject and u.meter = p_meter and u.window_start = w.window_start
  ), 0);
end;
$$;

-- What p_units past the included amount cost at p_amount per package of p_per units:
-- whole packages, a started one counted (Stripe's transform_quantity round up). The
-- status's estimate, and the rule the meter's price applies at Stripe.
create function public.billing_overage_amount(p_units bigint, p_amount bigint, p_per bigint) returns bigint
language sql immutable parallel safe
set search_path = ''
as $$
  select ((greatest(p_units, 0) + p_per - 1) / p_per) * p_amount
$$;

-- Against the plan now, the first that holds: locked, grace, over (used > included),
-- warning (at least 90% of included), ok; an unlimited meter is ok. The grace rule: a
-- run of windows_over (2) windows in a row that each ended above included +
-- margin_percent (10%) starts grace_days (7) of grace when its last window ends; after
-- them the meter is locked until a window ends within the included amount (a window
-- without use does) or the plan includes enough for the windows that ended. A billed
-- meter (overage 'bill') is paid for past its included amount: it has no grace nor
-- lock, and `overage` estimates the current window's bill ({units, amount, currency});
-- null for any other meter.
-- The state is read once; one query reads the window's use and whether the window
-- before it ended where it starts above the included amount: only then can the rule
-- find a run, so only then are the ended windows walked. Security invoker without
-- settings (its callers, billing_usage_state and billing_request_context, set both), so
-- a call costs no second switch of user and search_path.
create function public.billing_usage_status(p_subject uuid, p_meter text, out state text, out included bigint, out grace_ends_at timestamptz, out overage jsonb)
language plpgsql stable
as $$
declare
  v_now timestamptz := public.billing_now();
  v_may_ask boolean := public.billing_may_ask(p_subject);
  s public.billing_subject_state;
  l record;
  w record;
  v_used bigint := 0;
  v_over_before boolean := false;
  r record;
  v_next timestamptz;
  v_ends timestamptz[] := '{}';
  v_above boolean[] := '{}';
  v_run integer := 0;
  v_since timestamptz;
begin
  if v_may_ask then
    select * into s from public.billing_subject_state x where x.subject_id = p_subject;
  end if;
  l := public.billing_limit_of(s, 'meter', p_meter, v_now);
  if not l.declared then
    raise exception 'Unknown meter: %', p_meter using errcode = 'invalid_parameter_value';
  end if;
  included := l.value;
  if l.value is null then
    state := 'ok';
    return;
  end if;
  if v_may_ask then
    w := public.billing_window_of(s, v_now);
    select coalesce((select u.used from public.billing_usage_windows u
                     where u.subject_id = p_subject and u.meter = p_meter and u.window_start = w.window_start), 0),
           coalesce((select b.window_end = w.window_start and b.used > l.value from public.billing_usage_windows b
                     where b.subject_id = p_subject and b.meter = p_meter and b.window_start < w.window_start
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
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  return (public.billing_usage_status(p_subject, p_meter)).state;
end;
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
  s public.billing_subject_state;
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
      select * into s from public.billing_subject_state x where x.subject_id = d.subject;
      l := public.billing_limit_of(s, 'limit', v_key, v_now);
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
revoke execute on function public.billing_overage_amount(bigint, bigint, bigint) from public, anon, authenticated;
grant execute on function public.billing_overage_amount(bigint, bigint, bigint) to service_role;
revoke execute on function public.billing_limit(uuid, text) from public, anon;
revoke execute on function public.billing_usage(uuid, text) from public, anon;
revoke execute on function public.billing_usage_state(uuid, text) from public, anon;
grant execute on function public.billing_now() to service_role;
grant execute on function public.billing_limit(uuid, text) to authenticated, service_role;
grant execute on function public.billing_usage(uuid, text) to authenticated, service_role;
grant execute on function public.billing_usage_state(uuid, text) to authenticated, service_role;

revoke execute on function public.billing_track(uuid, text, bigint, text, timestamptz) from public, anon, authenticated;
revoke execute on function public.billing_attach_limit(regclass, text, text) from public, anon, authenticated;
revoke execute on function public.billing_limit_of(public.billing_subject_state, text, text, timestamptz) from public, anon, authenticated;
revoke execute on function public.billing_window_of(public.billing_subject_state, timestamptz) from public, anon, authenticated;
revoke execute on function public.billing_usage_window(uuid, timestamptz) from public, anon, authenticated;
revoke execute on function public.billing_usage_fold() from public, anon, authenticated;
revoke execute on function public.billing_limit_count() from public, anon, authenticated;
revoke execute on function public.billing_limit_attach(regclass, text, text) from public, anon, authenticated;
grant execute on function public.billing_track(uuid, text, bigint, text, timestamptz) to service_role;
grant execute on function public.billing_attach_limit(regclass, text, text) to service_role;
grant execute on function public.billing_usage_window(uuid, timestamptz) to service_role;
grant execute on function public.billing_limit_of(public.billing_subject_state, text, text, timestamptz) to service_role;
grant execute on function public.billing_window_of(public.billing_subject_state, timestamptz) to service_role;
grant execute on function public.billing_usage_fold() to service_role;
