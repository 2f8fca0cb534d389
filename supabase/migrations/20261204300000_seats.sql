-- Seats: a per-seat plan's Stripe quantity follows its team's membership.
--
-- A catalog plan may be sold per seat (billing-catalog.json: "seats": {"min": 1}). Its
-- team's subscription is then billed for max(members, min) seats: checkout starts there,
-- and after every membership change src/teams/seats.ts sets the subscription item's
-- quantity to that number, absolutely (never read-then-increment), from POST
-- /api/stripe/seats, the scheduled stripe-seat-sync and the reconcile. What it needs
-- from the database:
--
-- * billing_subscriptions.stripe_item_id: the subscription item of our product, the one
--   a quantity update names. It is part of the subscription's state and moves with it:
--   billing_apply_subscription_event applies a subscription event through
--   billing_apply_event (untouched) and then writes the item id only if that event's
--   state is the row's state now (state_event_id), so a stale event changes nothing.
--   Rows from before this migration have none until their next event; seats.ts reads
--   the subscription from Stripe then.
-- * billing_team_versions: a version per team, bumped once per statement that changes
--   its rows (statement-level triggers; the teams' locks of 20261204100000 already order
--   concurrent statements on one team). Each Stripe update carries the idempotency key
--   billing-seats-<subscription>-v<version>: one key per membership version.
-- * billing_seat_syncs: one row per subscription, a lease so that one update at most is
--   in flight per subscription across every function instance. billing_seat_claim reads
--   the team's subscription, member count and version and, in the same statement that
--   takes the lease, decides: when Stripe's quantity (billing_subscriptions.quantity, as
--   Stripe last reported it) already is the wanted one, nothing is sent and a lease the
--   caller held is released; otherwise the caller gets the lease (free, expired, or
--   already its own) and the number of this send for the version. A holder claims again
--   after each update, so it releases only once the count it last read is billed: a
--   change committed while its update was in flight is sent by the same holder, and a
--   caller that found the lease taken may answer at once. A failed send is recorded
--   (billing_seat_release) with a retry time that doubles per failure; the scheduled run
--   asks billing_seats_due for what still differs and is not leased or backing off.
--   A second send for one version (after a failure, whose 500 Stripe keeps under its
--   idempotency key, or to heal a quantity changed in Stripe) gets a key of its own:
--   billing-seats-<subscription>-v<version>-<n>. Every send sets an absolute quantity,
--   so repeating one changes nothing.
-- * Which plans are per seat is the catalog's to say (code); the functions take it as
--   p_plans, {"<product id>": <min>, …}.

-- The item our quantity updates name --------------------------------------------------

alter table public.billing_subscriptions add column stripe_item_id text;

-- billing_apply_event, then the item id the same snapshot carries (only while its state is
-- the row's). The webhook, sync, catch-up and reconcile apply subscription snapshots here.
create function public.billing_apply_subscription_event(
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
as $$
declare
  v_result jsonb;
  v_item text := p_change -> 'subscription' ->> 'item_id';
begin
  v_result := public.billing_apply_event(p_event_id, p_event_type, p_event_created, p_livemode, p_api_version, p_change);
  -- Checked first: an update that matches no row still runs the table's statement
  -- triggers, and nearly every event names the item the row already has.
  if v_item is not null and exists (
    select 1 from public.billing_subscriptions
    where stripe_subscription_id = p_change -> 'subscription' ->> 'id'
      and state_event_id = p_event_id
      and stripe_item_id is distinct from v_item
  ) then
    update public.billing_subscriptions
      set stripe_item_id = v_item
      where stripe_subscription_id = p_change -> 'subscription' ->> 'id'
        and state_event_id = p_event_id;
  end if;
  return v_result;
end;
$$;

-- Membership versions -------------------------------------------------------------------

create table public.billing_team_versions (
  team_id uuid primary key,
  version bigint not null default 1,
  changed_at timestamptz not null default now()
);
alter table public.billing_team_versions enable row level security;
revoke all on public.billing_team_versions from anon, authenticated, public;
grant all on public.billing_team_versions to service_role;

create function public.billing_team_bump_versions() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    insert into public.billing_team_versions as v (team_id)
    select distinct team_id from new_rows
    on conflict (team_id) do update set version = v.version + 1, changed_at = now();
  elsif tg_op = 'UPDATE' then
    insert into public.billing_team_versions as v (team_id)
    select team_id from old_rows union select team_id from new_rows
    on conflict (team_id) do update set version = v.version + 1, changed_at = now();
  else
    insert into public.billing_team_versions as v (team_id)
    select distinct team_id from old_rows
    on conflict (team_id) do update set version = v.version + 1, changed_at = now();
  end if;
  return null;
end;
$$;

create trigger billing_team_members_version_insert
  after insert on public.billing_team_members referencing new table as new_rows
  for each statement execute function public.billing_team_bump_versions();
create trigger billing_team_members_version_update
  after update on public.billing_team_members referencing old table as old_rows new table as new_rows
  for each statement execute function public.billing_team_bump_versions();
create trigger billing_team_members_version_delete
  after delete on public.billing_team_members referencing old table as old_rows
  for each statement execute function public.billing_team_bump_versions();

-- Teams that exist already start at version 1.
insert into public.billing_team_versions (team_id)
select distinct team_id from public.billing_team_members
on conflict (team_id) do nothing;

-- Seat syncs ------------------------------------------------------------------------------

create table public.billing_seat_syncs (
  stripe_subscription_id text primary key,
  team_id uuid not null,
  -- Who may send an update now, until when (null: nobody).
  holder text,
  lease_until timestamptz,
  -- The membership version of the latest claim to send, and how many sends it had: the
  -- idempotency key's version and suffix.
  send_version bigint,
  sends integer not null default 0,
  -- Failures since the last time Stripe's quantity was right, the last one's message,
  -- and when the scheduled run may try again.
  failures integer not null default 0,
  last_error text,
  retry_at timestamptz,
  updated_at timestamptz not null default now()
);
alter table public.billing_seat_syncs enable row level security;
revoke all on public.billing_seat_syncs from anon, authenticated, public;
grant all on public.billing_seat_syncs to service_role;

-- Statuses whose quantity Stripe lets us change and bills.
create function public.billing_seat_status(p_status text) returns boolean
language sql immutable parallel safe
set search_path = ''
as $$
  select p_status in ('active', 'trialing', 'past_due', 'unpaid')
$$;

-- The team's seats now and, when Stripe's quantity is not the wanted one, the lease for
-- p_holder if nobody else holds it; when it is, p_holder's lease ends here. Answers
-- {subscription_id, product_id, item_id, per_seat, billed, members, wanted, version, claimed, send}:
-- per_seat false (and no lease) without a live subscription of a plan in p_plans.
create function public.billing_seat_claim(p_team uuid, p_holder text, p_lease_seconds integer, p_plans jsonb)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
set lock_timeout = '3s'
as $$
declare
  v_members integer;
  v_version bigint;
  v_subscription text;
  v_status text;
  v_product text;
  v_billed integer;
  v_item text;
  v_min integer;
  v_wanted integer;
  v_send integer;
begin
  select count(*)::integer into v_members from public.billing_team_members m where m.team_id = p_team;
  v_version := coalesce((select v.version from public.billing_team_versions v where v.team_id = p_team), 0);
  -- The subscription that matters, as the status shows it (a deleted customer's is canceled).
  select a.stripe_subscription_id, a.status, a.product_id, a.quantity
    into v_subscription, v_status, v_product, v_billed
    from public.billing_accounts a where a.user_id = p_team;
  v_min := (p_plans ->> v_product)::integer;
  if v_subscription is null or v_min is null or not public.billing_seat_status(v_status) then
    return jsonb_build_object('subscription_id', v_subscription, 'product_id', v_product, 'per_seat', false, 'billed', v_billed,
      'members', v_members, 'version', v_version, 'claimed', false);
  end if;
  select s.stripe_item_id into v_item from public.billing_subscriptions s where s.stripe_subscription_id = v_subscription;
  v_wanted := greatest(v_members, v_min);

  insert into public.billing_seat_syncs (stripe_subscription_id, team_id) values (v_subscription, p_team)
  on conflict (stripe_subscription_id) do nothing;
  if v_billed is distinct from v_wanted then
    -- Concurrent claims queue on the row; the first takes it, the others then find it held.
    update public.billing_seat_syncs q
      set holder = p_holder,
          lease_until = now() + make_interval(secs => p_lease_seconds),
          sends = case when q.send_version = v_version then q.sends + 1 else 1 end,
          send_version = v_version,
          updated_at = now()
      where q.stripe_subscription_id = v_subscription
        and (q.holder is null or q.holder = p_holder or q.lease_until <= now())
      returning q.sends into v_send;
  else
    update public.billing_seat_syncs q
      set holder = null, lease_until = null, failures = 0, last_error = null, retry_at = null, updated_at = now()
      where q.stripe_subscription_id = v_subscription
        and (q.holder is null or q.holder = p_holder or q.lease_until <= now())
        and (q.holder is not null or q.failures > 0 or q.retry_at is not null);
  end if;
  return jsonb_build_object('subscription_id', v_subscription, 'product_id', v_product, 'item_id', v_item, 'per_seat', true, 'billed', v_billed,
    'members', v_members, 'wanted', v_wanted, 'version', v_version, 'claimed', v_send is not null, 'send', v_send);
end;
$$;

-- Ends p_holder's lease before the quantity is right: out of time, or (p_error) a failed
-- send, after which the scheduled run waits p_retry_seconds, doubled per failure since
-- the quantity was last right, up to an hour.
create function public.billing_seat_release(p_subscription text, p_holder text, p_error text, p_retry_seconds integer)
returns void
language sql
volatile
security invoker
set search_path = ''
as $$
  update public.billing_seat_syncs q
    set holder = null,
        lease_until = null,
        failures = q.failures + case when p_error is null then 0 else 1 end,
        last_error = coalesce(left(p_error, 500), q.last_error),
        retry_at = case when p_error is null then q.retry_at
                        else now() + make_interval(secs => least(p_retry_seconds * power(2, least(q.failures, 12)), 3600)) end,
        updated_at = now()
    where q.stripe_subscription_id = p_subscription and q.holder = p_holder
$$;

-- The teams whose per-seat subscription's quantity is not their wanted one, not leased and
-- not backing off, oldest retry first; of p_subscriptions only, when given.
create function public.billing_seats_due(p_plans jsonb, p_subscriptions text[], p_limit integer)
returns uuid[]
language sql
stable
security invoker
set search_path = ''
as $$
  select coalesce(array_agg(d.team_id), '{}') from (
    select s.user_id as team_id
    from public.billing_subscriptions s
    join public.billing_team_versions v on v.team_id = s.user_id
    left join public.billing_seat_syncs q on q.stripe_subscription_id = s.stripe_subscription_id
    where s.for_this_product
      and p_plans ? s.product_id
      and public.billing_seat_status(s.status)
      and (p_subscriptions is null or s.stripe_subscription_id = any (p_subscriptions))
      and not exists (select 1 from public.billing_deleted_customers x where x.stripe_customer_id = s.stripe_customer_id)
      and s.quantity is distinct from greatest(
        (select count(*)::integer from public.billing_team_members m where m.team_id = s.user_id),
        (p_plans ->> s.product_id)::integer)
      and (q.holder is null or q.lease_until <= now())
      and (q.retry_at is null or q.retry_at <= now())
    order by q.retry_at nulls first, s.stripe_subscription_id
    limit p_limit
  ) d
$$;

revoke execute on function public.billing_apply_subscription_event(text, text, timestamptz, boolean, text, jsonb) from public, anon, authenticated;
revoke execute on function public.billing_team_bump_versions() from public, anon, authenticated;
revoke execute on function public.billing_seat_status(text) from public, anon, authenticated;
revoke execute on function public.billing_seat_claim(uuid, text, integer, jsonb) from public, anon, authenticated;
revoke execute on function public.billing_seat_release(text, text, text, integer) from public, anon, authenticated;
revoke execute on function public.billing_seats_due(jsonb, text[], integer) from public, anon, authenticated;
grant execute on function public.billing_apply_subscription_event(text, text, timestamptz, boolean, text, jsonb) to service_role;
grant execute on function public.billing_seat_status(text) to service_role;
grant execute on function public.billing_seat_claim(uuid, text, integer, jsonb) to service_role;
grant execute on function public.billing_seat_release(text, text, text, integer) to service_role;
grant execute on function public.billing_seats_due(jsonb, text[], integer) to service_role;
