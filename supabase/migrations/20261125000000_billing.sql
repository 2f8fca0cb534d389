-- Billing state mirrored from Stripe.
--
-- Stripe is the source of truth; these tables are the product's own record of it,
-- written only by the service role (the webhook and the checkout function) and
-- readable by a signed-in user for their own rows.
--
-- Writes only move forward: every Stripe object row remembers the `created` time
-- of the event that last set it, and an event that is not newer changes nothing.
-- Each event id is recorded in `stripe_events` in the same transaction that applies
-- it, so a redelivered event is a no-op and a failed one leaves no trace.

create table public.billing_customers (
  -- Supabase auth user id (auth.users.id). No foreign key, so the billing schema
  -- can be applied before or without the auth schema; see README.
  user_id uuid primary key,
  -- One Stripe customer per user, created once by checkout and reused.
  stripe_customer_id text not null unique,
  email text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- Set by `customer.deleted`: the customer no longer exists in Stripe.
  deleted_at timestamptz
);

create table public.billing_subscriptions (
  stripe_subscription_id text primary key,
  stripe_customer_id text not null,
  -- Known from the checkout session, the subscription's metadata.userId, or the
  -- customer link; null until one of those has been seen.
  user_id uuid,
  status text check (status in (
    'incomplete', 'incomplete_expired', 'trialing', 'active',
    'past_due', 'canceled', 'unpaid', 'paused'
  )),
  price_id text,
  quantity integer,
  current_period_start timestamptz,
  current_period_end timestamptz,
  cancel_at_period_end boolean not null default false,
  cancel_at timestamptz,
  canceled_at timestamptz,
  ended_at timestamptz,
  trial_start timestamptz,
  trial_end timestamptz,
  -- `created` of the Stripe subscription itself.
  stripe_created_at timestamptz,
  -- The event whose snapshot the subscription columns above hold. Null while the
  -- row holds only what checkout.session.completed said (a provisional 'active').
  state_event_created timestamptz,
  state_event_id text,
  -- Outcome of the newest invoice event for this subscription.
  latest_invoice_id text,
  last_payment_status text check (last_payment_status in ('paid', 'failed', 'action_required')),
  last_payment_at timestamptz,
  last_payment_amount bigint,
  last_payment_currency text,
  hosted_invoice_url text,
  next_payment_attempt timestamptz,
  -- First failed payment of the current delinquency; the grace period counts from here.
  payment_failed_at timestamptz,
  invoice_event_created timestamptz,
  invoice_event_id text,
  -- From customer.subscription.trial_will_end, so a reminder can be sent later.
  trial_will_end_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create index billing_subscriptions_user_id_idx on public.billing_subscriptions (user_id);
create index billing_subscriptions_customer_idx on public.billing_subscriptions (stripe_customer_id);

-- Every Stripe event we accepted, applied or not, so that each id is processed once.
create table public.stripe_events (
  id text primary key,
  type text not null,
  livemode boolean not null,
  stripe_created_at timestamptz not null,
  -- 'applied', 'stale' (older than the state already held) or 'ignored' (nothing to do)
  outcome text not null,
  processed_at timestamptz not null default now()
);

-- One row per user: their Stripe customer and the subscription that matters now
-- (a live one if any, else the newest). The dashboard and checkout read this.
create view public.billing_accounts with (security_invoker = true) as
select
  u.user_id,
  coalesce(c.stripe_customer_id, s.stripe_customer_id) as stripe_customer_id,
  s.stripe_subscription_id,
  s.status,
  s.price_id,
  s.quantity,
  s.current_period_start,
  s.current_period_end,
  s.cancel_at_period_end,
  s.cancel_at,
  s.canceled_at,
  s.ended_at,
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
  s.updated_at as subscription_updated_at
from (
  select user_id from public.billing_customers
  union
  select user_id from public.billing_subscriptions where user_id is not null
) u
left join public.billing_customers c on c.user_id = u.user_id
left join lateral (
  select *
  from public.billing_subscriptions s
  where s.user_id = u.user_id
  order by
    (s.status in ('canceled', 'incomplete_expired')) asc nulls first,
    s.stripe_created_at desc nulls last,
    s.created_at desc
  limit 1
) s on true;

-- Row-level security: a signed-in user reads only their own rows; nobody but the
-- service role (which bypasses RLS) writes.
alter table public.billing_customers enable row level security;
alter table public.billing_subscriptions enable row level security;
alter table public.stripe_events enable row level security;

create policy "Users read their own customer link" on public.billing_customers
  for select to authenticated using ((select auth.uid()) = user_id);
create policy "Users read their own subscriptions" on public.billing_subscriptions
  for select to authenticated using ((select auth.uid()) = user_id);

-- Supabase grants everything on new public objects to anon and authenticated by
-- default; take that back and grant only what the policies above are for.
revoke all on public.billing_customers, public.billing_subscriptions, public.stripe_events,
  public.billing_accounts from anon, authenticated, public;
grant select on public.billing_customers, public.billing_subscriptions, public.billing_accounts
  to authenticated;
grant all on public.billing_customers, public.billing_subscriptions, public.stripe_events,
  public.billing_accounts to service_role;

-- Link a user to their Stripe customer, once. Returns the customer id that is stored
-- after the call: the caller's on the first call, the earlier one on any later call,
-- so two concurrent checkouts of a new user agree on one customer.
create function public.billing_link_customer(
  p_user_id uuid,
  p_stripe_customer_id text,
  p_email text
) returns text
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_customer text;
begin
  insert into public.billing_customers (user_id, stripe_customer_id, email)
  values (p_user_id, p_stripe_customer_id, p_email)
  on conflict (user_id) do nothing;

  select stripe_customer_id into v_customer
  from public.billing_customers
  where user_id = p_user_id;

  return v_customer;
end;
$$;

-- Apply one Stripe event, at most once, in one transaction.
--
-- p_change is the event reduced (in TypeScript, src/billing/events.ts) to the fields
-- we store; its `kind` says which. Returns the outcome recorded for the event:
-- 'applied', 'stale', 'ignored', or 'duplicate' when the id was processed before
-- (in which case nothing is written).
create function public.billing_apply_event(
  p_event_id text,
  p_event_type text,
  p_event_created timestamptz,
  p_livemode boolean,
  p_change jsonb
) returns text
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_kind text := p_change ->> 'kind';
  v_outcome text := 'ignored';
  v_user uuid;
  v_customer text;
  v_subscription text;
begin
  -- Serialise deliveries of the same event id: the second waits here for the first
  -- to commit and then sees the row; if the first rolled back, the second applies.
  insert into public.stripe_events (id, type, livemode, stripe_created_at, outcome)
  values (p_event_id, p_event_type, p_livemode, p_event_created, 'pending')
  on conflict (id) do nothing;
  if not found then
    return 'duplicate';
  end if;

  if v_kind = 'checkout_completed' then
    v_user := (p_change ->> 'user_id')::uuid;
    v_customer := p_change ->> 'customer_id';
    v_subscription := p_change ->> 'subscription_id';

    -- The customer that paid is the user's customer. Normally checkout already
    -- stored this same link; a conflicting owner of the customer id raises here
    -- (unique violation), the transaction rolls back and Stripe retries.
    insert into public.billing_customers (user_id, stripe_customer_id, email)
    values (v_user, v_customer, p_change ->> 'email')
    on conflict (user_id) do update
      set stripe_customer_id = excluded.stripe_customer_id,
          deleted_at = null,
          updated_at = now()
      where public.billing_customers.stripe_customer_id is distinct from excluded.stripe_customer_id;

    -- The session does not carry the subscription's status: record 'active'
    -- provisionally (state_event_created stays null), so that any subscription
    -- event, whenever it arrives, replaces it.
    insert into public.billing_subscriptions (
      stripe_subscription_id, stripe_customer_id, user_id, status, stripe_created_at
    ) values (
      v_subscription, v_customer, v_user, 'active', p_event_created
    )
    on conflict (stripe_subscription_id) do update
      set user_id = excluded.user_id,
          updated_at = now();

    -- Subscription events that arrived before this link now belong to the user.
    update public.billing_subscriptions
      set user_id = v_user, updated_at = now()
      where stripe_customer_id = v_customer and user_id is null;

    v_outcome := 'applied';
  end if;

  update public.stripe_events set outcome = v_outcome where id = p_event_id;
  return v_outcome;
end;
$$;

-- Billing functions are for the service role only.
revoke execute on function public.billing_link_customer(uuid, text, text) from public, anon, authenticated;
revoke execute on function public.billing_apply_event(text, text, timestamptz, boolean, jsonb) from public, anon, authenticated;
grant execute on function public.billing_link_customer(uuid, text, text) to service_role;
grant execute on function public.billing_apply_event(text, text, timestamptz, boolean, jsonb) to service_role;
