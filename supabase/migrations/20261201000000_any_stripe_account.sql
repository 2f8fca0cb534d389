-- Every real Stripe account: events of any API version (read in src/billing/stripe-objects.ts),
-- checkout sessions this backend did not create, and subscriptions to other products.
--
-- * stripe_events becomes the record of every verified event: its API version, when
--   it came and how often, and why it was skipped or failed. An event that could not
--   be read is recorded 'failed' with its reason (billing_record_event) and is not
--   processed: a redelivery or a replay of it still applies it, once. Every function
--   that applies an event starts and ends through billing_event_begin/_finish.
-- * A checkout.session.completed never replaces the user's stored customer: a session
--   whose customer is not the user's (a Payment Link where the buyer typed any user id)
--   is 'skipped' with its reason.
-- * A subscription records whether it is for this product (for_this_product, decided
--   by the webhook from STRIPE_PRICE_ID / STRIPE_PRODUCT_ID); only such subscriptions
--   are the user's subscription in billing_accounts (its new definition is in
--   20261201100000), so another product on the same Stripe account never grants access.

alter table public.stripe_events
  add column api_version text,
  add column first_received_at timestamptz not null default now(),
  add column last_received_at timestamptz not null default now(),
  add column attempts integer not null default 1,
  add column reason text,
  -- The customer it is about, so `npm run billing:events --user` can list a user's events.
  add column stripe_customer_id text;
comment on column public.stripe_events.outcome is
  'pending (being applied), applied, stale, ignored, skipped (reason) or failed (reason; not processed: a redelivery applies it). attempts counts deliveries, duplicates included';
create index stripe_events_failed_idx on public.stripe_events (stripe_created_at) where outcome = 'failed';
create index stripe_events_customer_idx on public.stripe_events (stripe_customer_id, stripe_created_at desc);
create index stripe_events_created_idx on public.stripe_events (stripe_created_at desc);

alter table public.billing_subscriptions
  add column product_id text,
  -- Rows from before this column was decided were all written for our own checkout.
  add column for_this_product boolean not null default true;


-- The start and the end of applying any verified event, shared by billing_apply_event,
-- billing_apply_entitlements and billing_apply_schedule so that all of them keep the
-- ledger the same way.
--
-- begin: records the event as pending, in the caller's transaction. Deliveries of the
-- same event id are serialised here: the second waits for the first to commit and then
-- sees the row (false: a duplicate, counted); if the first rolled back, the second
-- goes ahead. An event recorded as failed was never applied: its retry goes ahead.
-- Then events of one customer apply one at a time (an advisory lock): without it two
-- concurrent events each miss the other's uncommitted rows, e.g. a checkout's link and
-- a subscription event that needs it.
create function public.billing_event_begin(
  p_event_id text,
  p_event_type text,
  p_event_created timestamptz,
  p_livemode boolean,
  p_api_version text,
  p_customer_id text
) returns boolean
language plpgsql
security invoker
set search_path = ''
as $$
begin
  insert into public.stripe_events as e (id, type, livemode, stripe_created_at, api_version, stripe_customer_id, outcome)
  values (p_event_id, p_event_type, p_livemode, p_event_created, p_api_version, p_customer_id, 'pending')
  on conflict (id) do update
    set outcome = 'pending', attempts = e.attempts + 1, last_received_at = now(),
        api_version = coalesce(excluded.api_version, e.api_version),
        stripe_customer_id = coalesce(excluded.stripe_customer_id, e.stripe_customer_id)
    where e.outcome = 'failed';
  if not found then
    update public.stripe_events set attempts = attempts + 1, last_received_at = now() where id = p_event_id;
    return false;
  end if;
  if p_customer_id is not null then
    perform pg_advisory_xact_lock(hashtextextended('billing_customer:' || p_customer_id, 0));
  end if;
  return true;
end;
$$;

-- finish: what became of it, on record and as the caller's answer.
create function public.billing_event_finish(p_event_id text, p_outcome text, p_reason text)
returns jsonb
language sql
security invoker
set search_path = ''
as $$
  update public.stripe_events set outcome = p_outcome, reason = p_reason where id = p_event_id;
  select jsonb_strip_nulls(jsonb_build_object('outcome', p_outcome, 'reason', p_reason));
$$;

-- The signature changes (the API version; a result with a reason), so a new function.
drop function public.billing_apply_event(text, text, timestamptz, boolean, jsonb);

-- lock_timeout: a delivery that waits on another's locks longer than this fails (and
-- rolls back, recording nothing) before the function's 5 s database timeout, so a 500
-- always means "not applied" and Stripe's retry applies it later.
create function public.billing_apply_event(
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

-- A verified event that was not applied: 'skipped' (not ours to act on, with why) or
-- 'failed' (with the error; not processed, so a redelivery, the catch-up or a replay
-- still applies it once).
create function public.billing_record_event(
  p_event_id text,
  p_event_type text,
  p_event_created timestamptz,
  p_livemode boolean,
  p_api_version text,
  p_customer_id text,
  p_outcome text,
  p_reason text
) returns text
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_outcome text;
begin
  if p_outcome not in ('skipped', 'failed') then
    raise exception 'billing_record_event records skipped or failed events, not %', p_outcome;
  end if;
  -- A failed attempt's record gives way to what happened next; an applied (or
  -- skipped) event is never overwritten, only counted.
  insert into public.stripe_events as e
    (id, type, livemode, stripe_created_at, api_version, stripe_customer_id, outcome, reason)
  values (p_event_id, p_event_type, p_livemode, p_event_created, p_api_version, p_customer_id, p_outcome, p_reason)
  on conflict (id) do update
    set attempts = e.attempts + 1,
        last_received_at = now(),
        outcome = case when e.outcome = 'failed' then excluded.outcome else e.outcome end,
        reason = case when e.outcome = 'failed' then excluded.reason else e.reason end,
        api_version = coalesce(e.api_version, excluded.api_version),
        stripe_customer_id = coalesce(e.stripe_customer_id, excluded.stripe_customer_id)
  returning outcome into v_outcome;
  return v_outcome;
end;
$$;

revoke execute on function public.billing_apply_event(text, text, timestamptz, boolean, text, jsonb) from public, anon, authenticated;
revoke execute on function public.billing_record_event(text, text, timestamptz, boolean, text, text, text, text) from public, anon, authenticated;
revoke execute on function public.billing_event_begin(text, text, timestamptz, boolean, text, text) from public, anon, authenticated;
revoke execute on function public.billing_event_finish(text, text, text) from public, anon, authenticated;
grant execute on function public.billing_apply_event(text, text, timestamptz, boolean, text, jsonb) to service_role;
grant execute on function public.billing_record_event(text, text, timestamptz, boolean, text, text, text, text) to service_role;
grant execute on function public.billing_event_begin(text, text, timestamptz, boolean, text, text) to service_role;
grant execute on function public.billing_event_finish(text, text, text) to service_role;
