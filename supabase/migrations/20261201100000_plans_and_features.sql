-- Plans and features: the catalog (billing-catalog.json) as the database knows it, the
-- features a user has now, and functions the product's own policies can call.
--
-- * billing_plans / billing_prices: the catalog's plans (with the features each grants)
--   and the Stripe prices of each, written by `npm run billing:setup` (through
--   billing_sync_catalog) after it has pushed the catalog to Stripe. A subscription's
--   plan is the plan of its product; its interval that of its price.
-- * billing_customer_entitlements: Stripe's own list of a customer's active features
--   (entitlements.active_entitlement_summary.updated), newest event wins. When it is
--   newer than the subscription's state, it is what the user has; otherwise their
--   plan's features are.
-- * billing_subscription_schedules: what a subscription schedule changes next (the
--   portal's downgrade at the period's end), newest event wins.
-- * billing_accounts, as this backend reads it: the subscription for this product
--   (20261201000000's for_this_product), its plan, interval and features, had_trial,
--   and the scheduled change.
-- * billing_decide_access: the access rule (decideAccess in src/billing/access.ts),
--   for SQL. billing_has_access, billing_features and billing_has_feature apply it to
--   the user's account. They are security invoker: row-level security on the billing
--   tables shows an authenticated user only their own rows, so any other user id
--   answers false (or no features); the service role may ask about anyone.

create table public.billing_plans (
  plan text primary key,
  stripe_product_id text not null unique,
  name text not null,
  features text[] not null default '{}',
  -- The catalog's order (a pricing table's).
  position integer not null,
  updated_at timestamptz not null default now()
);

create table public.billing_prices (
  stripe_price_id text primary key,
  plan text not null references public.billing_plans (plan) on delete cascade,
  -- Null for a price whose lookup key moved to a newer price (a changed amount).
  lookup_key text unique,
  interval text not null check (interval in ('day', 'week', 'month', 'year')),
  amount bigint,
  currency text,
  updated_at timestamptz not null default now()
);

create table public.billing_customer_entitlements (
  stripe_customer_id text primary key,
  -- Feature lookup keys (the catalog's feature keys, as billing:setup names them in Stripe).
  features text[] not null,
  event_created timestamptz not null,
  event_id text not null,
  updated_at timestamptz not null default now()
);

alter table public.billing_plans enable row level security;
alter table public.billing_prices enable row level security;
alter table public.billing_customer_entitlements enable row level security;

-- The catalog is public (it is the pricing table); entitlements are the customer's own.
create policy "Anyone signed in reads the plans" on public.billing_plans for select to authenticated using (true);
create policy "Anyone signed in reads the prices" on public.billing_prices for select to authenticated using (true);
create policy "Users read their own entitlements" on public.billing_customer_entitlements
  for select to authenticated using (exists (
    select 1 from public.billing_subscriptions s
    where s.stripe_customer_id = billing_customer_entitlements.stripe_customer_id and s.user_id = (select auth.uid())
  ));

revoke all on public.billing_plans, public.billing_prices, public.billing_customer_entitlements from anon, authenticated, public;
grant select on public.billing_plans, public.billing_prices, public.billing_customer_entitlements to authenticated;
grant all on public.billing_plans, public.billing_prices, public.billing_customer_entitlements to service_role;

-- Subscription schedules: what Stripe will change on a subscription, and when. The
-- billing portal makes one for a downgrade at the period's end (the catalog's portal
-- configuration schedules downgrades), so the status can say "Business until 25 Dec,
-- then Pro" before it happens. One row per subscription (Stripe allows one schedule on
-- a subscription): the change its newest event says comes next, or none, ordered by
-- (event created, event id) like everything else.
create table public.billing_subscription_schedules (
  stripe_subscription_id text primary key,
  stripe_schedule_id text not null,
  stripe_customer_id text not null,
  status text not null,
  -- Null: the schedule will change nothing more (released, canceled, completed, or in
  -- its last phase).
  next_price_id text,
  next_change_at timestamptz,
  event_created timestamptz not null,
  event_id text not null,
  updated_at timestamptz not null default now()
);
alter table public.billing_subscription_schedules enable row level security;
create policy "Users read their own schedules" on public.billing_subscription_schedules
  for select to authenticated using (exists (
    select 1 from public.billing_subscriptions s
    where s.stripe_subscription_id = billing_subscription_schedules.stripe_subscription_id and s.user_id = (select auth.uid())
  ));
revoke all on public.billing_subscription_schedules from anon, authenticated, public;
grant select on public.billing_subscription_schedules to authenticated;
grant all on public.billing_subscription_schedules to service_role;

create function public.billing_apply_schedule(
  p_event_id text,
  p_event_type text,
  p_event_created timestamptz,
  p_livemode boolean,
  p_api_version text,
  p_change jsonb
) returns jsonb
language plpgsql
security invoker
set search_path = ''
set lock_timeout = '3s'
as $$
declare
  s jsonb := p_change -> 'schedule';
  v_rows integer;
begin
  if not public.billing_event_begin(p_event_id, p_event_type, p_event_created, p_livemode, p_api_version, s ->> 'customer_id') then
    return jsonb_build_object('outcome', 'duplicate');
  end if;
  insert into public.billing_subscription_schedules as cur (
    stripe_subscription_id, stripe_schedule_id, stripe_customer_id, status,
    next_price_id, next_change_at, event_created, event_id
  ) values (
    s ->> 'subscription_id', s ->> 'schedule_id', s ->> 'customer_id', s ->> 'status',
    s ->> 'next_price_id', (s ->> 'next_change_at')::timestamptz, p_event_created, p_event_id
  )
  on conflict (stripe_subscription_id) do update
    set stripe_schedule_id = excluded.stripe_schedule_id, stripe_customer_id = excluded.stripe_customer_id,
        status = excluded.status, next_price_id = excluded.next_price_id, next_change_at = excluded.next_change_at,
        event_created = excluded.event_created, event_id = excluded.event_id, updated_at = now()
    where (excluded.event_created, excluded.event_id collate "C") > (cur.event_created, cur.event_id collate "C");
  get diagnostics v_rows = row_count;
  return public.billing_event_finish(p_event_id, case when v_rows = 1 then 'applied' else 'stale' end, null);
end;
$$;

revoke execute on function public.billing_apply_schedule(text, text, timestamptz, boolean, text, jsonb) from public, anon, authenticated;
grant execute on function public.billing_apply_schedule(text, text, timestamptz, boolean, text, jsonb) to service_role;

-- The user's account, as this backend reads it: the subscription that matters is one
-- for this product (for_this_product), with its plan, interval and features, whether the
-- user ever had a trial, and what a schedule will change next. A deleted customer's
-- subscription has no change to come.
drop view public.billing_accounts;
create view public.billing_accounts with (security_invoker = true) as
select
  u.user_id,
  coalesce(c.stripe_customer_id, case when sd.stripe_customer_id is null then s.stripe_customer_id end) as stripe_customer_id,
  sd.stripe_customer_id as deleted_customer_id,
  s.stripe_subscription_id,
  case when sd.stripe_customer_id is null then s.status else 'canceled' end as status,
  s.price_id,
  s.product_id,
  s.quantity,
  s.current_period_start,
  s.current_period_end,
  s.cancel_at_period_end and sd.stripe_customer_id is null as cancel_at_period_end,
  s.cancel_at,
  coalesce(s.canceled_at, sd.deleted_at) as canceled_at,
  coalesce(s.ended_at, sd.deleted_at) as ended_at,
  s.trial_start,
  s.trial_end,
  s.last_payment_status,
  s.last_payment_at,
  s.last_payment_amount,
  s.last_payment_currency,
  s.hosted_invoice_url,
  s.next_payment_attempt,
  s.payment_failed_at,
  s.trial_will_end_at,
  s.created_at as subscription_recorded_at,
  s.updated_at as subscription_updated_at,
  p.plan,
  pr.interval as price_interval,
  case
    when s.stripe_subscription_id is null then '{}'::text[]
    when e.event_created is not null and (s.state_event_created is null or e.event_created > s.state_event_created) then e.features
    else coalesce(p.features, '{}'::text[])
  end as features,
  exists (
    select 1 from public.billing_subscriptions t
    where t.user_id = u.user_id and t.for_this_product and t.trial_start is not null
  ) as had_trial,
  -- What a schedule will change next (a downgrade at the period's end), with that
  -- price's plan and interval.
  sc.next_price_id as scheduled_price_id,
  sc.next_change_at as scheduled_change_at,
  scp.plan as scheduled_plan,
  scp.interval as scheduled_interval
from (
  select user_id from public.billing_customers
  union
  select user_id from public.billing_subscriptions where user_id is not null
) u
left join public.billing_customers c on c.user_id = u.user_id
left join lateral (
  select s.*
  from public.billing_subscriptions s
  where s.user_id = u.user_id and s.status is not null and s.for_this_product
  order by
    (s.status in ('canceled', 'incomplete_expired')
      or exists (select 1 from public.billing_deleted_customers x where x.stripe_customer_id = s.stripe_customer_id)) asc,
    s.stripe_created_at desc nulls last,
    s.created_at desc
  limit 1
) s on true
left join public.billing_deleted_customers sd on sd.stripe_customer_id = s.stripe_customer_id
left join public.billing_plans p on p.stripe_product_id = s.product_id
left join public.billing_prices pr on pr.stripe_price_id = s.price_id
left join public.billing_customer_entitlements e on e.stripe_customer_id = s.stripe_customer_id
left join public.billing_subscription_schedules sc
  on sc.stripe_subscription_id = s.stripe_subscription_id and sc.next_price_id is not null and sd.stripe_customer_id is null
left join public.billing_prices scp on scp.stripe_price_id = sc.next_price_id;

revoke all on public.billing_accounts from anon, authenticated, public;
grant select on public.billing_accounts to authenticated;
grant all on public.billing_accounts to service_role;

-- Days of access after the first failed payment, for SQL: the database setting
-- billing.grace_days (`alter database postgres set billing.grace_days = '10'`), else 7,
-- BILLING_GRACE_DAYS's default. Set both to the same number.
create function public.billing_grace_days() returns integer
language sql stable parallel safe
set search_path = ''
as $$
  select coalesce(nullif(current_setting('billing.grace_days', true), '')::integer, 7)
$$;

-- decideAccess (src/billing/access.ts), line for line. test/entitlements.test.ts runs
-- one table of cases, and random facts, through both and requires the same answers.
create function public.billing_decide_access(
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
set search_path = ''
as $$
declare
  v_since timestamptz;
begin
  grace_until := null;
  if p_status is null then
    access := false; reason := 'no_subscription';
  elsif p_status in ('active', 'trialing') then
    if p_cancel_at_period_end then
      if p_current_period_end is null or p_at < p_current_period_end then
        access := true; reason := 'canceling';
      else
        access := false; reason := 'period_ended';
      end if;
    else
      access := true; reason := p_status;
    end if;
  elsif p_status = 'past_due' then
    -- Without a recorded failure, the renewal that failed started the current period.
    v_since := coalesce(p_payment_failed_at, p_current_period_start);
    if v_since is null then
      access := false; reason := 'grace_expired';
    else
      -- Whole days of 86,400 s, as in TypeScript: no time-zone or DST arithmetic.
      grace_until := v_since + make_interval(secs => p_grace_days * 86400);
      if p_at < grace_until then
        access := true; reason := 'grace_period';
      else
        access := false; reason := 'grace_expired';
      end if;
    end if;
  else
    access := false; reason := p_status;
  end if;
end;
$$;

-- Whether the user may use the product now. For an authenticated caller, only their own
-- id can answer true (row-level security hides every other account).
create function public.billing_has_access(p_user_id uuid) returns boolean
language sql stable
security invoker
set search_path = ''
as $$
  select coalesce((
    select (public.billing_decide_access(
      a.status, a.cancel_at_period_end, a.current_period_start, a.current_period_end,
      a.payment_failed_at, public.billing_grace_days(), now())).access
    from public.billing_accounts a
    where a.user_id = p_user_id
  ), false)
$$;

-- The feature keys the user has now: none without access (the same rule as the API's).
create function public.billing_features(p_user_id uuid) returns text[]
language sql stable
security invoker
set search_path = ''
as $$
  select coalesce((
    select case
      when (public.billing_decide_access(
        a.status, a.cancel_at_period_end, a.current_period_start, a.current_period_end,
        a.payment_failed_at, public.billing_grace_days(), now())).access
      then a.features
      else '{}'::text[]
    end
    from public.billing_accounts a
    where a.user_id = p_user_id
  ), '{}'::text[])
$$;

create function public.billing_has_feature(p_user_id uuid, p_feature text) returns boolean
language sql stable
security invoker
set search_path = ''
as $$
  select p_feature = any (public.billing_features(p_user_id))
$$;

-- The catalog, as billing:setup found or made it in Stripe: plans and prices are
-- upserted and never deleted here (a subscriber to a plan or price retired from the
-- catalog keeps what it granted until they switch; delete such rows by hand).
create function public.billing_sync_catalog(p_catalog jsonb) returns void
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
end;
$$;

-- entitlements.active_entitlement_summary.updated: recorded like any event (once per
-- id; a failed one is retried), and the newest summary per customer kept.

create function public.billing_apply_entitlements(
  p_event_id text,
  p_event_type text,
  p_event_created timestamptz,
  p_livemode boolean,
  p_api_version text,
  p_customer_id text,
  p_features text[]
) returns jsonb
language plpgsql
security invoker
set search_path = ''
set lock_timeout = '3s'
as $$
declare
  v_rows integer;
begin
  if not public.billing_event_begin(p_event_id, p_event_type, p_event_created, p_livemode, p_api_version, p_customer_id) then
    return jsonb_build_object('outcome', 'duplicate');
  end if;
  insert into public.billing_customer_entitlements as cur (stripe_customer_id, features, event_created, event_id)
  values (p_customer_id, p_features, p_event_created, p_event_id)
  on conflict (stripe_customer_id) do update
    set features = excluded.features, event_created = excluded.event_created,
        event_id = excluded.event_id, updated_at = now()
    where (excluded.event_created, excluded.event_id collate "C") > (cur.event_created, cur.event_id collate "C");
  get diagnostics v_rows = row_count;
  return public.billing_event_finish(p_event_id, case when v_rows = 1 then 'applied' else 'stale' end, null);
end;
$$;

revoke execute on function public.billing_grace_days() from public, anon;
revoke execute on function public.billing_decide_access(text, boolean, timestamptz, timestamptz, timestamptz, integer, timestamptz) from public, anon;
revoke execute on function public.billing_has_access(uuid) from public, anon;
revoke execute on function public.billing_features(uuid) from public, anon;
revoke execute on function public.billing_has_feature(uuid, text) from public, anon;
grant execute on function public.billing_grace_days() to authenticated, service_role;
grant execute on function public.billing_decide_access(text, boolean, timestamptz, timestamptz, timestamptz, integer, timestamptz) to authenticated, service_role;
grant execute on function public.billing_has_access(uuid) to authenticated, service_role;
grant execute on function public.billing_features(uuid) to authenticated, service_role;
grant execute on function public.billing_has_feature(uuid, text) to authenticated, service_role;

revoke execute on function public.billing_sync_catalog(jsonb) from public, anon, authenticated;
revoke execute on function public.billing_apply_entitlements(text, text, timestamptz, boolean, text, text, text[]) from public, anon, authenticated;
grant execute on function public.billing_sync_catalog(jsonb) to service_role;
grant execute on function public.billing_apply_entitlements(text, text, timestamptz, boolean, text, text, text[]) to service_role;
