-- billing:setup may run for two deploys (or two sites on one database) at once. Each
-- billing_sync_catalog deletes the limits it replaces and inserts them again; two at once
-- both inserted the free entry's rows and one failed on billing_plan_limits' unique key
-- (test/usage.test.ts, "billing:setup of two sites on one database at once"). Now they
-- take turns: 20261204600000's function, with a transaction-scoped advisory lock first.

create or replace function public.billing_sync_catalog(p_catalog jsonb) returns void
language plpgsql
security invoker
set search_path = ''
as $$
begin
  -- One sync at a time: each replaces the free entry's rows (and a plan's) by a delete
  -- and an insert, and a second sync between them would insert the same keys again.
  perform pg_advisory_xact_lock(hashtext('public.billing_sync_catalog'));

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
