-- Teams buy: what the API needs on top of the membership (20261204100000_teams.sql).
--
-- * billing_subscriptions.buyer_id: the user who bought a subscription (its
--   metadata.userId), whoever it belongs to. A team gets one trial ever, and none when
--   its buyer already had one, personally or for another team: without the buyer, a
--   user could trial forever by opening team after team.
-- * billing_apply_event, as 20261201000000 made it, but for two things: a team's
--   checkout session (change.team) applies only through the customer already stored
--   for the team (never through its metadata alone), and a subscription's buyer is
--   recorded. Its owner is the customer's link (the trigger of 20261204100000).
-- * billing_trial_offers: the trials a buyer's open Checkout Sessions offer. A trial is
--   learned from the subscription only once it is paid for or started, so a buyer could
--   open trial checkouts for several teams at once; an unexpired offer for another
--   subject now means no trial (billing_offer_trial), for as long as such a session can
--   still be completed (Stripe's default of 24 hours).
-- * billing_request_context, what the endpoints read before they call Stripe, is
--   20261204700000's (it reads this change's buyer_id and the limits of 20261204600000).

alter table public.billing_subscriptions add column buyer_id uuid;

create table public.billing_trial_offers (
  buyer_id uuid not null,
  -- The user or team the session is for.
  subject_id uuid not null,
  expires_at timestamptz not null,
  primary key (buyer_id, subject_id)
);
alter table public.billing_trial_offers enable row level security;
revoke all on public.billing_trial_offers from anon, authenticated, public;
grant all on public.billing_trial_offers to service_role;

-- Records that the buyer's checkout for p_subject offers a trial, unless an offer of
-- theirs for another subject is still open: then false, and the checkout offers none.
-- One buyer at a time, so concurrent checkouts cannot each see no other offer.
create function public.billing_offer_trial(p_buyer uuid, p_subject uuid, p_seconds integer)
returns boolean
language plpgsql
volatile
security invoker
set search_path = ''
as $$
begin
  perform pg_advisory_xact_lock(hashtextextended('billing_trial_offer:' || p_buyer::text, 0));
  if exists (
    select 1 from public.billing_trial_offers o
    where o.buyer_id = p_buyer and o.subject_id <> p_subject and o.expires_at > now()
  ) then
    return false;
  end if;
  insert into public.billing_trial_offers as o (buyer_id, subject_id, expires_at)
  values (p_buyer, p_subject, now() + make_interval(secs => p_seconds))
  on conflict (buyer_id, subject_id) do update set expires_at = excluded.expires_at;
  return true;
end;
$$;

revoke execute on function public.billing_offer_trial(uuid, uuid, integer) from public, anon, authenticated;
grant execute on function public.billing_offer_trial(uuid, uuid, integer) to service_role;
create index billing_subscriptions_buyer_trials_idx on public.billing_subscriptions (buyer_id) where trial_start is not null;

create or replace function public.billing_apply_event(
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
  v_kind text := p_change ->> 'kind';
  v_outcome text := 'ignored';
  v_reason text;
  v_rows integer;
  v_user uuid;
  v_customer text;
  v_subscription text;
  v_deleted_at timestamptz;
  s jsonb;
begin
  v_customer := coalesce(p_change ->> 'customer_id', p_change -> 'subscription' ->> 'customer_id', p_change -> 'invoice' ->> 'customer_id');
  if not public.billing_event_begin(p_event_id, p_event_type, p_event_created, p_livemode, p_api_version, v_customer) then
    return jsonb_build_object('outcome', 'duplicate');
  end if;

  if v_kind = 'checkout_completed' then
    v_user := (p_change ->> 'user_id')::uuid;
    v_customer := p_change ->> 'customer_id';
    v_subscription := p_change ->> 'subscription_id';
    select deleted_at into v_deleted_at
      from public.billing_deleted_customers where stripe_customer_id = v_customer;

    -- A team's session counts only through the customer our checkout stored for the
    -- team before it made the session: its metadata alone never links a customer.
    if coalesce((p_change ->> 'team')::boolean, false) and not exists (
      select 1 from public.billing_customers c where c.user_id = v_user and c.stripe_customer_id = v_customer
    ) then
      v_reason := 'team checkout session''s customer is not the team''s stored customer';
      return public.billing_event_finish(p_event_id, 'skipped', v_reason);
    end if;

    -- Our checkout stores the user's customer before it creates the session, so the
    -- session's customer is already theirs. A session that names a user but pays with
    -- another customer (a Payment Link or pricing table where the buyer typed any user
    -- id, or another user's customer) changes nothing: it never replaces a link.
    if exists (select 1 from public.billing_customers c
               where (c.user_id = v_user and c.stripe_customer_id <> v_customer)
                  or (c.stripe_customer_id = v_customer and c.user_id <> v_user)) then
      v_reason := 'checkout session''s customer is not the user''s customer';
      return public.billing_event_finish(p_event_id, 'skipped', v_reason);
    end if;

    if v_deleted_at is null then
      -- Neither is linked yet (a link lost, or a session older than this check).
      insert into public.billing_customers (user_id, stripe_customer_id, email)
      values (v_user, v_customer, p_change ->> 'email')
      on conflict do nothing;
    end if;

    -- The session does not say the subscription's status: record 'active'
    -- provisionally (no state key), so any subscription event replaces it.
    insert into public.billing_subscriptions (
      stripe_subscription_id, stripe_customer_id, user_id, status, stripe_created_at
    ) values (v_subscription, v_customer, v_user, 'active', p_event_created)
    on conflict (stripe_subscription_id) do update
      set user_id = coalesce(public.billing_subscriptions.user_id, excluded.user_id),
          status = coalesce(public.billing_subscriptions.status, excluded.status),
          stripe_created_at = coalesce(public.billing_subscriptions.stripe_created_at, excluded.stripe_created_at),
          updated_at = now();

    -- Subscription events that arrived before this link now belong to the user.
    update public.billing_subscriptions
      set user_id = v_user, updated_at = now()
      where stripe_customer_id = v_customer and user_id is null;
    v_outcome := 'applied';

  elsif v_kind = 'subscription' then
    s := p_change -> 'subscription';
    v_subscription := s ->> 'id';
    v_customer := s ->> 'customer_id';
    -- Who: the subscription's metadata, else the customer's link, else unknown for now
    -- (checkout.session.completed links it when it comes).
    v_user := coalesce(
      (s ->> 'user_id')::uuid,
      (select c.user_id from public.billing_customers c where c.stripe_customer_id = v_customer)
    );

    insert into public.billing_subscriptions as cur (
      stripe_subscription_id, stripe_customer_id, user_id, status, price_id, product_id, quantity,
      for_this_product, current_period_start, current_period_end, cancel_at_period_end, cancel_at,
      canceled_at, ended_at, trial_start, trial_end, stripe_created_at,
      state_event_created, state_event_id
    ) values (
      v_subscription, v_customer, v_user, s ->> 'status', s ->> 'price_id', s ->> 'product_id',
      (s ->> 'quantity')::integer, coalesce((s ->> 'for_this_product')::boolean, true),
      (s ->> 'current_period_start')::timestamptz, (s ->> 'current_period_end')::timestamptz,
      coalesce((s ->> 'cancel_at_period_end')::boolean, false), (s ->> 'cancel_at')::timestamptz,
      (s ->> 'canceled_at')::timestamptz, (s ->> 'ended_at')::timestamptz,
      (s ->> 'trial_start')::timestamptz, (s ->> 'trial_end')::timestamptz, (s ->> 'created')::timestamptz,
      p_event_created, p_event_id
    )
    on conflict (stripe_subscription_id) do update
      set stripe_customer_id = excluded.stripe_customer_id,
          status = excluded.status,
          price_id = excluded.price_id,
          product_id = excluded.product_id,
          quantity = excluded.quantity,
          for_this_product = excluded.for_this_product,
          current_period_start = excluded.current_period_start,
          current_period_end = excluded.current_period_end,
          cancel_at_period_end = excluded.cancel_at_period_end,
          cancel_at = excluded.cancel_at,
          canceled_at = excluded.canceled_at,
          ended_at = excluded.ended_at,
          trial_start = excluded.trial_start,
          trial_end = excluded.trial_end,
          stripe_created_at = excluded.stripe_created_at,
          state_event_created = excluded.state_event_created,
          state_event_id = excluded.state_event_id,
          updated_at = now()
      where cur.state_event_created is null
         or (excluded.state_event_created, public.billing_status_rank(excluded.status), excluded.state_event_id collate "C")
          > (cur.state_event_created, public.billing_status_rank(cur.status), cur.state_event_id collate "C");
    get diagnostics v_rows = row_count;
    v_outcome := case when v_rows = 1 then 'applied' else 'stale' end;

    -- Who it belongs to is not state but a fact: learn it even from a stale event.
    if v_user is not null then
      update public.billing_subscriptions
        set user_id = v_user, updated_at = now()
        where stripe_subscription_id = v_subscription and user_id is null;
    end if;
    -- So is who bought it (a team's trial must not be a buyer's second one).
    if s ->> 'buyer_id' is not null then
      update public.billing_subscriptions
        set buyer_id = (s ->> 'buyer_id')::uuid
        where stripe_subscription_id = v_subscription and buyer_id is null;
    end if;

  elsif v_kind = 'invoice' then
    s := p_change -> 'invoice';
    v_subscription := s ->> 'subscription_id';
    v_customer := s ->> 'customer_id';

    -- An invoice may come before any subscription event: keep it on a row of its
    -- own (no status yet) that the subscription's events fill in later.
    insert into public.billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id)
    values (
      v_subscription, v_customer,
      (select c.user_id from public.billing_customers c where c.stripe_customer_id = v_customer)
    )
    on conflict (stripe_subscription_id) do nothing;

    update public.billing_subscriptions cur
      set latest_invoice_id = s ->> 'id',
          last_payment_status = s ->> 'outcome',
          last_payment_at = p_event_created,
          last_payment_amount = (s ->> 'amount')::bigint,
          last_payment_currency = s ->> 'currency',
          hosted_invoice_url = s ->> 'hosted_invoice_url',
          next_payment_attempt = (s ->> 'next_payment_attempt')::timestamptz,
          invoice_event_created = p_event_created,
          invoice_event_id = p_event_id,
          updated_at = now()
      where cur.stripe_subscription_id = v_subscription
        and (cur.invoice_event_created is null
          or (p_event_created, public.billing_payment_rank(s ->> 'outcome'), p_event_id collate "C")
           > (cur.invoice_event_created, public.billing_payment_rank(cur.last_payment_status), cur.invoice_event_id collate "C"));
    get diagnostics v_rows = row_count;
    v_outcome := case when v_rows = 1 then 'applied' else 'stale' end;

    -- The grace period counts from the first failure after the last payment. The
    -- last payment only moves forward, and failures before it are dropped, so the
    -- result is the same in any order. (SET expressions read the row before the update.)
    if s ->> 'outcome' = 'paid' then
      update public.billing_subscriptions
        set last_paid_at = greatest(last_paid_at, p_event_created),
            payment_failures = array(
              select f from unnest(payment_failures) f
              where f > greatest(last_paid_at, p_event_created) order by f),
            payment_failed_at = (
              select min(f) from unnest(payment_failures) f
              where f > greatest(last_paid_at, p_event_created)),
            updated_at = now()
        where stripe_subscription_id = v_subscription;
      v_outcome := 'applied';
    elsif s ->> 'outcome' = 'failed' then
      update public.billing_subscriptions
        set payment_failures = array_append(payment_failures, p_event_created),
            payment_failed_at = least(payment_failed_at, p_event_created),
            updated_at = now()
        where stripe_subscription_id = v_subscription
          and (last_paid_at is null or p_event_created > last_paid_at);
      if found then
        v_outcome := 'applied';
      end if;
    end if;

  elsif v_kind = 'trial_will_end' then
    update public.billing_subscriptions
      set trial_will_end_at = greatest(trial_will_end_at, p_event_created), updated_at = now()
      where stripe_subscription_id = p_change ->> 'subscription_id';
    if not found then
      insert into public.billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, trial_will_end_at)
      values (
        p_change ->> 'subscription_id', p_change ->> 'customer_id',
        (select c.user_id from public.billing_customers c where c.stripe_customer_id = p_change ->> 'customer_id'),
        p_event_created
      )
      on conflict (stripe_subscription_id) do update
        set trial_will_end_at = greatest(public.billing_subscriptions.trial_will_end_at, excluded.trial_will_end_at);
    end if;
    v_outcome := 'applied';

  elsif v_kind = 'customer_deleted' then
    v_customer := p_change ->> 'customer_id';
    insert into public.billing_deleted_customers (stripe_customer_id, deleted_at, event_id)
    values (v_customer, p_event_created, p_event_id)
    on conflict (stripe_customer_id) do nothing;
    -- The user is unlinked; their next checkout creates a new customer.
    delete from public.billing_customers where stripe_customer_id = v_customer;
    v_outcome := 'applied';
  end if;

  return public.billing_event_finish(p_event_id, v_outcome, null);
end;
$$;
