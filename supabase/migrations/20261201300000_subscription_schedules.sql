-- Subscription schedules: what Stripe will change on a subscription, and when. The
-- billing portal makes one for a downgrade at the period's end (the catalog's portal
-- configuration schedules downgrades), so the status can say "Business until 25 Dec,
-- then Pro" before it happens.
--
-- One row per subscription (Stripe allows one schedule on a subscription): the change
-- its newest event says comes next, or none. Ordered like everything else: only a
-- greater (event created, event id) replaces what is held, so any delivery order ends
-- in the newest event's word.

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

-- The view as 20261201100000 left it, with the scheduled change appended. A deleted
-- customer's subscription has no change to come.
create or replace view public.billing_accounts with (security_invoker = true) as
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
  -- Appended by this migration.
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
  -- Appended by 20261201300000: what a schedule will change next (a downgrade at the
  -- period's end), with that price's plan and interval.
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
