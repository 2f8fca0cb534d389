-- Teams: a billing subject is a user or a team, and access goes through membership.
--
-- * A subject is the id billing rows are keyed by (billing_customers.user_id,
--   billing_subscriptions.user_id, the billing_accounts view's user_id): a user's id, or
--   a team's. A team buys like a user: its Stripe customer is stored with user_id = the
--   team id (the column has no foreign key), and its subscriptions get that id through
--   the customer link.
-- * The customer link wins. A team's subscription carries metadata.userId = the buyer
--   (and metadata.teamId); until now billing_apply_event preferred metadata.userId over
--   the link, which would have given the team's plan to the buyer. A trigger on
--   billing_subscriptions now sets user_id from the customer's link whenever there is
--   one, whichever function writes the row, and a new link takes over its customer's
--   subscriptions.
-- * billing_team_members: who is in which team, with a role. The product writes it
--   with the service role, or feeds it from its own membership table by a trigger
--   (docs/teams.md). A team exists from its first row and is dissolved by deleting all
--   of them. After every statement, each team it touched has no rows or an owner; the
--   teams a statement touches are locked one at a time until commit, so concurrent
--   statements cannot each remove one of the last two owners (see billing_team_lock).
-- * billing_subject_state: per subject, the facts access is decided on (status, the
--   period, cancel at period end, first failed payment) and the features the account
--   grants, exactly as billing_accounts shows them. It is a cache of the view, written
--   only by billing_refresh_subjects, which selects the subjects' rows from the view
--   itself: equal by construction. Triggers on every table the view's columns come
--   from (subscriptions, customers, deleted customers, entitlements, plans) refresh the
--   subjects a statement touched, in the same transaction, after taking a per-subject
--   lock so that two transactions touching one subject refresh one after the other and
--   the second reads the first's committed rows. That holds in read committed, as
--   PostgREST and the webhook write; a repeatable-read transaction reads its own older
--   snapshot, so write billing rows in read committed.
-- * billing_has_access, billing_features, billing_has_feature keep their names and
--   parameters (policies in the wild call them) and become security definer: one
--   primary-key read of the state and, for a signed-in caller asking about a team, one
--   of the membership.
--   A caller row-level security would not restrict (service_role, a superuser's
--   session) asks about any subject; anyone else about themselves and their teams,
--   and any other id gets the no-access answer. Deleting a member's row ends their
--   access in the same transaction (membership is read, not cached).
-- * billing_subjects_with_feature(feature): the caller's own id and their teams' ids,
--   of those whose account grants the feature now, for policies over team rows:
--   `using (team_id = any ((select billing_subjects_with_feature('api_access'))::uuid[]))`
--   (evaluated once per query; an index condition on team_id).
--
-- Measured in docs/entitlements-bench.md; how to use it in docs/teams.md.

-- Membership ---------------------------------------------------------------------------

create table public.billing_team_members (
  team_id uuid not null,
  user_id uuid not null,
  role text not null check (role in ('owner', 'admin', 'member')),
  created_at timestamptz not null default now(),
  primary key (team_id, user_id),
  -- A personal account (basejump's, MakerKit's) has its user's id: it is that user, not a team.
  check (team_id <> user_id)
);
-- "Which teams is this user in": every signed-in access check asks it.
create index billing_team_members_user_idx on public.billing_team_members (user_id, team_id);

-- Locks each team a row change touches, before the change, until the transaction ends:
-- statements changing one team's members run one after the other, so the owner check
-- of the second sees what the first committed (a fresh snapshot per statement in read
-- committed; in repeatable read the check's row locks raise a serialization failure).
-- Without it, two statements that each removed an owner before either checked would
-- wait on each other's row locks in their checks: a deadlock, one of them aborted.
create function public.billing_team_lock() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op <> 'INSERT' then
    perform pg_advisory_xact_lock(hashtextextended('billing_team:' || old.team_id::text, 0));
  end if;
  if tg_op = 'INSERT' or (tg_op = 'UPDATE' and new.team_id <> old.team_id) then
    perform pg_advisory_xact_lock(hashtextextended('billing_team:' || new.team_id::text, 0));
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end;
$$;

-- After each statement: every team it touched has no members or at least one owner.
create function public.billing_team_check_owners() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_teams uuid[];
  v_team uuid;
begin
  if tg_op = 'INSERT' then
    select array_agg(distinct team_id) into v_teams from new_rows;
  elsif tg_op = 'UPDATE' then
    select array_agg(distinct team_id) into v_teams from (select team_id from old_rows union select team_id from new_rows) t;
  else
    select array_agg(distinct team_id) into v_teams from old_rows;
  end if;
  -- Lock the owners that remain: in repeatable read, one removed meanwhile by another
  -- transaction is then a serialization failure rather than an owner counted twice.
  perform 1 from public.billing_team_members m where m.team_id = any (v_teams) and m.role = 'owner' for share;
  select t into v_team
  from unnest(v_teams) t
  where exists (select 1 from public.billing_team_members m where m.team_id = t)
    and not exists (select 1 from public.billing_team_members m where m.team_id = t and m.role = 'owner')
  limit 1;
  if v_team is not null then
    raise exception 'team % would have members but no owner', v_team
      using errcode = 'check_violation',
            hint = 'Make another member owner in the same statement or before, or delete all of the team''s rows.';
  end if;
  return null;
end;
$$;

create trigger billing_team_members_lock
  before insert or update or delete on public.billing_team_members
  for each row execute function public.billing_team_lock();
create trigger billing_team_members_owners_insert
  after insert on public.billing_team_members referencing new table as new_rows
  for each statement execute function public.billing_team_check_owners();
create trigger billing_team_members_owners_update
  after update on public.billing_team_members referencing old table as old_rows new table as new_rows
  for each statement execute function public.billing_team_check_owners();
create trigger billing_team_members_owners_delete
  after delete on public.billing_team_members referencing old table as old_rows
  for each statement execute function public.billing_team_check_owners();

-- The teams the signed-in user is in. security definer: the membership policy calls it,
-- and a policy that read the table it guards would recurse.
create function public.billing_my_team_ids() returns uuid[]
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(array_agg(m.team_id), '{}') from public.billing_team_members m where m.user_id = (select auth.uid())
$$;

alter table public.billing_team_members enable row level security;
create policy "Users read the members of their teams" on public.billing_team_members
  for select to authenticated using (team_id = any ((select public.billing_my_team_ids())::uuid[]));
revoke all on public.billing_team_members from anon, authenticated, public;
grant select on public.billing_team_members to authenticated;
grant all on public.billing_team_members to service_role;

-- The customer link wins ------------------------------------------------------------------

-- A subscription of a linked customer belongs to the customer's subject, whatever its
-- metadata says (a team's subscription names the buyer in metadata.userId).
create function public.billing_subscription_owner() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_owner uuid;
begin
  select c.user_id into v_owner from public.billing_customers c where c.stripe_customer_id = new.stripe_customer_id;
  if found then
    new.user_id := v_owner;
  end if;
  return new;
end;
$$;

-- A new link takes over its customer's subscriptions (recorded before it, from metadata or none).
create function public.billing_customer_takes_subscriptions() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.billing_subscriptions
    set user_id = new.user_id, updated_at = now()
    where stripe_customer_id = new.stripe_customer_id and user_id is distinct from new.user_id;
  return null;
end;
$$;

create trigger billing_subscriptions_owner
  before insert or update of user_id, stripe_customer_id on public.billing_subscriptions
  for each row execute function public.billing_subscription_owner();
create trigger billing_customers_take_subscriptions
  after insert or update of user_id, stripe_customer_id on public.billing_customers
  for each row execute function public.billing_customer_takes_subscriptions();

-- The per-subject state -------------------------------------------------------------------

create table public.billing_subject_state (
  subject_id uuid primary key,
  -- billing_accounts' columns of the same names: null without a subscription.
  status text,
  cancel_at_period_end boolean,
  current_period_start timestamptz,
  current_period_end timestamptz,
  payment_failed_at timestamptz,
  features text[] not null,
  -- The plan and the price's interval, which limits and usage are read against
  -- (20261204600000).
  plan text,
  price_interval text,
  updated_at timestamptz not null default now()
);
-- Read only through the functions below (security definer).
alter table public.billing_subject_state enable row level security;
revoke all on public.billing_subject_state from anon, authenticated, public;
grant select on public.billing_subject_state to service_role;

-- Makes these subjects' rows what billing_accounts says now (none where it has none).
-- plan_cache_mode: planning the view takes about 2 ms, and for an array parameter
-- PostgreSQL would otherwise keep re-planning it for each call's array (a custom plan
-- looks cheaper than the generic one, which is the same index lookups).
create function public.billing_refresh_subjects(p_subjects uuid[]) returns void
language plpgsql
security definer
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
begin
  if coalesce(cardinality(p_subjects), 0) = 0 then
    return;
  end if;
  -- One transaction at a time per subject, in id order (no deadlock between two
  -- statements that touch several). The reads below start after the lock, so they see
  -- whatever the previous holder committed.
  perform pg_advisory_xact_lock(hashtextextended('billing_subject:' || s::text, 0))
  from (select distinct s from unnest(p_subjects) s where s is not null order by s) x;

  -- One statement, one read of the view for just these subjects (the view is a union:
  -- a correlated `not exists` over it would read it whole).
  with fresh as (
    select a.user_id, a.status, a.cancel_at_period_end, a.current_period_start, a.current_period_end, a.payment_failed_at, a.features,
         a.plan, a.price_interval
    from public.billing_accounts a
    where a.user_id = any (p_subjects)
  ), gone as (
    delete from public.billing_subject_state st
    where st.subject_id = any (p_subjects) and st.subject_id not in (select f.user_id from fresh f)
  )
  insert into public.billing_subject_state as st
    (subject_id, status, cancel_at_period_end, current_period_start, current_period_end, payment_failed_at, features, plan, price_interval)
  select * from fresh
  on conflict (subject_id) do update
    set status = excluded.status, cancel_at_period_end = excluded.cancel_at_period_end,
        current_period_start = excluded.current_period_start, current_period_end = excluded.current_period_end,
        payment_failed_at = excluded.payment_failed_at, features = excluded.features,
        plan = excluded.plan, price_interval = excluded.price_interval, updated_at = now()
    where (st.status, st.cancel_at_period_end, st.current_period_start, st.current_period_end, st.payment_failed_at, st.features,
           st.plan, st.price_interval)
      is distinct from
          (excluded.status, excluded.cancel_at_period_end, excluded.current_period_start, excluded.current_period_end,
           excluded.payment_failed_at, excluded.features, excluded.plan, excluded.price_interval);
end;
$$;

-- After a statement on one of the view's tables: refresh the subjects whose account it
-- may have changed. A subscription or customer row names its subject; a deleted customer
-- or an entitlement summary reaches the subjects through the customer's subscriptions;
-- a plan through the subscriptions of its product.
create function public.billing_subject_state_after() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_subjects uuid[];
  v_customers text[];
  v_products text[];
begin
  if tg_table_name = 'billing_subscriptions' and tg_op = 'UPDATE' then
    -- Most updates of an invoice event touch only its details (or the trial reminder, or
    -- the failures' bookkeeping, whose outcome is payment_failed_at): columns the state
    -- does not depend on. Rows changed only there refresh nobody; any other column,
    -- including ones added later, counts.
    select array_agg(distinct v.user_id) into v_subjects
    from old_rows o full join new_rows n on n.stripe_subscription_id = o.stripe_subscription_id
    cross join lateral (values (o.user_id), (n.user_id)) v(user_id)
    where v.user_id is not null
      and (o is null or n is null
        or to_jsonb(o) - array['updated_at', 'latest_invoice_id', 'last_payment_status', 'last_payment_at', 'last_payment_amount',
                               'last_payment_currency', 'hosted_invoice_url', 'next_payment_attempt', 'invoice_event_created',
                               'invoice_event_id', 'trial_will_end_at', 'last_paid_at', 'payment_failures']
           is distinct from
           to_jsonb(n) - array['updated_at', 'latest_invoice_id', 'last_payment_status', 'last_payment_at', 'last_payment_amount',
                               'last_payment_currency', 'hosted_invoice_url', 'next_payment_attempt', 'invoice_event_created',
                               'invoice_event_id', 'trial_will_end_at', 'last_paid_at', 'payment_failures']);
  elsif tg_table_name in ('billing_subscriptions', 'billing_customers') then
    if tg_op = 'INSERT' then
      select array_agg(distinct user_id) into v_subjects from new_rows;
    elsif tg_op = 'UPDATE' then
      select array_agg(distinct user_id) into v_subjects from (select user_id from old_rows union select user_id from new_rows) t;
    else
      select array_agg(distinct user_id) into v_subjects from old_rows;
    end if;
  elsif tg_table_name in ('billing_deleted_customers', 'billing_customer_entitlements') then
    if tg_op = 'INSERT' then
      select array_agg(stripe_customer_id) into v_customers from new_rows;
    elsif tg_op = 'UPDATE' then
      select array_agg(stripe_customer_id) into v_customers from (select stripe_customer_id from old_rows union select stripe_customer_id from new_rows) t;
    else
      select array_agg(stripe_customer_id) into v_customers from old_rows;
    end if;
    select array_agg(distinct s.user_id) into v_subjects
    from public.billing_subscriptions s
    where s.stripe_customer_id = any (v_customers) and s.user_id is not null;
  elsif tg_table_name = 'billing_plans' then
    if tg_op = 'INSERT' then
      select array_agg(stripe_product_id) into v_products from new_rows;
    elsif tg_op = 'UPDATE' then
      -- billing:setup rewrites every plan on each run: only a changed product or feature list matters.
      select array_agg(p) into v_products
      from old_rows o join new_rows n on n.plan = o.plan
      cross join lateral (values (o.stripe_product_id), (n.stripe_product_id)) v(p)
      where (o.stripe_product_id, o.features) is distinct from (n.stripe_product_id, n.features);
    else
      select array_agg(stripe_product_id) into v_products from old_rows;
    end if;
    if v_products is not null then
      -- A subscription written meanwhile by another transaction would have read the plan
      -- as it was and be invisible here: wait for those writers (billing:setup is rare),
      -- and hold new ones off until this commits, so each reads the plan as it ends up.
      lock table public.billing_subscriptions in share mode;
    end if;
    select array_agg(distinct s.user_id) into v_subjects
    from public.billing_subscriptions s
    where s.product_id = any (v_products) and s.user_id is not null;
  end if;
  if v_subjects is not null then
    perform public.billing_refresh_subjects(v_subjects);
  end if;
  return null;
end;
$$;

-- A truncated input: rebuild the whole state from the view.
create function public.billing_subject_state_rebuild() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  lock table public.billing_subject_state in exclusive mode;
  delete from public.billing_subject_state;
  insert into public.billing_subject_state
    (subject_id, status, cancel_at_period_end, current_period_start, current_period_end, payment_failed_at, features, plan, price_interval)
  select a.user_id, a.status, a.cancel_at_period_end, a.current_period_start, a.current_period_end, a.payment_failed_at, a.features,
         a.plan, a.price_interval
  from public.billing_accounts a;
  return null;
end;
$$;

-- Transition tables need one trigger per operation.
do $$
declare
  t text;
begin
  foreach t in array array['billing_subscriptions', 'billing_customers', 'billing_deleted_customers',
                           'billing_customer_entitlements', 'billing_plans'] loop
    execute format('create trigger billing_subject_state_insert after insert on public.%I
      referencing new table as new_rows for each statement execute function public.billing_subject_state_after()', t);
    execute format('create trigger billing_subject_state_update after update on public.%I
      referencing old table as old_rows new table as new_rows for each statement execute function public.billing_subject_state_after()', t);
    execute format('create trigger billing_subject_state_delete after delete on public.%I
      referencing old table as old_rows for each statement execute function public.billing_subject_state_after()', t);
    execute format('create trigger billing_subject_state_truncate after truncate on public.%I
      for each statement execute function public.billing_subject_state_rebuild()', t);
  end loop;
end;
$$;

-- Databases that already have accounts start with their state.
insert into public.billing_subject_state
  (subject_id, status, cancel_at_period_end, current_period_start, current_period_end, payment_failed_at, features, plan, price_interval)
select a.user_id, a.status, a.cancel_at_period_end, a.current_period_start, a.current_period_end, a.payment_failed_at, a.features,
         a.plan, a.price_interval
from public.billing_accounts a;

-- Access through membership -------------------------------------------------------------
--
-- Who may ask about a subject: a caller that row-level security would not restrict (the
-- role it set, or its login when it set none, bypasses RLS: service_role, a superuser's
-- psql) about anyone; a signed-in user about their own id and their teams. Each
-- function below checks it the same way, inline, and only once the state has something
-- to tell, in this order: the service role; the caller's own id; a membership row; a
-- role that bypasses RLS (billing_caller_sees_all, asked only of roles other than the
-- API's: a superuser's psql).
--
-- Why inline, and why the caller's id is auth.uid()'s own expression rather than a call
-- to it: these functions run once per query in a sub-select, and once per row when
-- called bare, so their fixed costs are the policy's cost. auth.uid() is a SQL function
-- with its own search_path, never inlined, whose body is planned again in every
-- transaction (about 35 µs, measured: most of a once-per-query call); a nested helper
-- function costs about 10 µs more per query. A PL/pgSQL condition holding a sub-select
-- runs as a query even when it short-circuits, so such conditions stand alone.
-- Grace days matter only to a past-due subscription, so only then are they read.

create function public.billing_caller_sees_all() returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select current_setting('role') = 'service_role' or exists (
    select 1 from pg_catalog.pg_roles r
    where r.rolname = case current_setting('role') when 'none' then session_user else current_setting('role') end
      and (r.rolsuper or r.rolbypassrls)
  )
$$;

-- Whether the subject may use the product now.
create or replace function public.billing_has_access(p_user_id uuid) returns boolean
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  s public.billing_subject_state;
  v_uid uuid;
begin
  select * into s from public.billing_subject_state where subject_id = p_user_id;
  if not found or s.status is null then
    return false;
  end if;
  if current_setting('role') <> 'service_role' then
    -- auth.uid()
    v_uid := coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid;
    if p_user_id is distinct from v_uid then
      if not exists (select 1 from public.billing_team_members m where m.team_id = p_user_id and m.user_id = v_uid) then
        if current_setting('role') in ('authenticated', 'anon') or not public.billing_caller_sees_all() then
          return false;
        end if;
      end if;
    end if;
  end if;
  return (public.billing_decide_access(s.status, s.cancel_at_period_end, s.current_period_start, s.current_period_end,
    s.payment_failed_at, case when s.status = 'past_due' then public.billing_grace_days() end, now())).access;
end;
$$;

-- The feature keys the subject has now: none without access (the same rule as the API's).
create or replace function public.billing_features(p_user_id uuid) returns text[]
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  s public.billing_subject_state;
  v_uid uuid;
begin
  select * into s from public.billing_subject_state where subject_id = p_user_id;
  if not found or cardinality(s.features) = 0 then
    return '{}';
  end if;
  if current_setting('role') <> 'service_role' then
    -- auth.uid()
    v_uid := coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid;
    if p_user_id is distinct from v_uid then
      if not exists (select 1 from public.billing_team_members m where m.team_id = p_user_id and m.user_id = v_uid) then
        if current_setting('role') in ('authenticated', 'anon') or not public.billing_caller_sees_all() then
          return '{}';
        end if;
      end if;
    end if;
  end if;
  if (public.billing_decide_access(s.status, s.cancel_at_period_end, s.current_period_start, s.current_period_end,
      s.payment_failed_at, case when s.status = 'past_due' then public.billing_grace_days() end, now())).access then
    return s.features;
  end if;
  return '{}';
end;
$$;

create or replace function public.billing_has_feature(p_user_id uuid, p_feature text) returns boolean
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  s public.billing_subject_state;
  v_uid uuid;
begin
  select * into s from public.billing_subject_state where subject_id = p_user_id;
  -- A key the account does not grant needs no decision.
  if not found or not (p_feature = any (s.features)) then
    return false;
  end if;
  if current_setting('role') <> 'service_role' then
    -- auth.uid()
    v_uid := coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid;
    if p_user_id is distinct from v_uid then
      if not exists (select 1 from public.billing_team_members m where m.team_id = p_user_id and m.user_id = v_uid) then
        if current_setting('role') in ('authenticated', 'anon') or not public.billing_caller_sees_all() then
          return false;
        end if;
      end if;
    end if;
  end if;
  return (public.billing_decide_access(s.status, s.cancel_at_period_end, s.current_period_start, s.current_period_end,
    s.payment_failed_at, case when s.status = 'past_due' then public.billing_grace_days() end, now())).access;
end;
$$;

-- The caller's own id and their teams' ids, of those whose account grants the feature
-- now. For policies over team rows, in a sub-select (evaluated once per query):
--   using (team_id = any ((select billing_subjects_with_feature('api_access'))::uuid[]))
-- (the cast makes the sub-select an array expression: without it `= any ((select …))`
-- reads as `= any (subquery)` and compares team_id with the whole array). Empty without
-- a signed-in user (the service role bypasses row-level security anyway).
create function public.billing_subjects_with_feature(p_feature text) returns uuid[]
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  -- auth.uid() (see above)
  v_uid uuid := coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                         (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid;
begin
  if v_uid is null then
    return '{}';
  end if;
  return array(
    select s.subject_id
    from public.billing_subject_state s
    where s.subject_id in (select v_uid union all select m.team_id from public.billing_team_members m where m.user_id = v_uid)
      and p_feature = any (s.features)
      and (public.billing_decide_access(s.status, s.cancel_at_period_end, s.current_period_start, s.current_period_end,
             s.payment_failed_at, case when s.status = 'past_due' then public.billing_grace_days() end, now())).access
    order by s.subject_id
  );
end;
$$;

-- Grants: the access functions and the membership helper are for policies (signed-in
-- users and the service role); the rest are the service role's.
revoke execute on function public.billing_my_team_ids() from public, anon;
revoke execute on function public.billing_subjects_with_feature(text) from public, anon;
grant execute on function public.billing_my_team_ids() to authenticated, service_role;
grant execute on function public.billing_subjects_with_feature(text) to authenticated, service_role;

revoke execute on function public.billing_caller_sees_all() from public, anon, authenticated;
revoke execute on function public.billing_refresh_subjects(uuid[]) from public, anon, authenticated;
revoke execute on function public.billing_team_lock() from public, anon, authenticated;
revoke execute on function public.billing_team_check_owners() from public, anon, authenticated;
revoke execute on function public.billing_subscription_owner() from public, anon, authenticated;
revoke execute on function public.billing_customer_takes_subscriptions() from public, anon, authenticated;
revoke execute on function public.billing_subject_state_after() from public, anon, authenticated;
revoke execute on function public.billing_subject_state_rebuild() from public, anon, authenticated;
grant execute on function public.billing_caller_sees_all() to service_role;
grant execute on function public.billing_refresh_subjects(uuid[]) to service_role;
