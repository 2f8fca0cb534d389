-- The status endpoint reads decisions, it does not make them (docs/usage.md).
--
-- * billing_request_context returns, beside the account, `decision`: the subject's access, its reason,
--   the grace period's end and the features it has now, by billing_decide_access with
--   billing_grace_days() and billing_now() (now(), unless a test set the clock), as billing_has_access and billing_features decide.
--   The API has no second copy of the rule to keep equal.
-- * It also returns the subject's `limits` ({key: {limit, used}}: used is the attached
--   count, null for a key no table is attached for) and `usage` ({meter: {used,
--   included, window, state, graceEndsAt, and overage for a billed meter}}) for the keys
--   the catalog declares; null when it declares none, so the status body stays as it
--   was for such a catalog.
-- * billing_request_context is defined here, once (20261204200000 introduced the
--   round trip; this is its only definition).

-- Everything an endpoint needs before it calls Stripe, in one round trip: the caller's
-- request count (a 429 stops here), their role in the team and its member count, the
-- subject's account and the decisions on it, whether the caller ever had a trial, and
-- for sync whose customer an already applied session was for. p_team null: the
-- caller's own billing; p_action null: nothing is counted (the status read).
create function public.billing_request_context(
  p_caller uuid,
  p_team uuid,
  p_action text,
  p_limit integer,
  p_window_seconds integer,
  p_event_id text
) returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_retry integer;
  v_role text;
  v_members integer;
  v_subject uuid := coalesce(p_team, p_caller);
  v_now timestamptz := public.billing_now();
  a public.billing_accounts;
  d record;
begin
  if p_action is not null then
    v_retry := public.billing_count_request(p_caller, p_action, p_limit, p_window_seconds);
    if v_retry > 0 then
      return jsonb_build_object('retry_after', v_retry);
    end if;
  end if;
  if p_team is not null then
    select m.role into v_role from public.billing_team_members m where m.team_id = p_team and m.user_id = p_caller;
    if v_role is null then
      -- Not a member (or no such team): nothing more is said about it.
      return jsonb_build_object('retry_after', 0);
    end if;
    select count(*) into v_members from public.billing_team_members m where m.team_id = p_team;
  end if;
  select * into a from public.billing_accounts x where x.user_id = v_subject;
  -- No account reads as no subscription: every fact is null.
  select * into d from public.billing_decide_access(a.status, coalesce(a.cancel_at_period_end, false),
    a.current_period_start, a.current_period_end, a.payment_failed_at, public.billing_grace_days(), v_now);
  return jsonb_build_object(
    'retry_after', 0,
    'role', v_role,
    'members', v_members,
    'account', case when a.user_id is not null then to_jsonb(a) end,
    'decision', jsonb_build_object(
      'access', d.access,
      'reason', d.reason,
      'grace_until', d.grace_until,
      'features', case when d.access then coalesce(a.features, '{}') else '{}' end),
    'limits', (
      select jsonb_object_agg(k.key, jsonb_build_object(
        'limit', public.billing_limit(v_subject, k.key),
        'used', case when t.key is not null then coalesce(c.count, 0) end))
      from (select distinct l.key from public.billing_plan_limits l where l.kind = 'limit') k
      left join public.billing_limit_tables t on t.key = k.key
      left join public.billing_limit_counts c on c.subject_id = v_subject and c.key = k.key),
    'usage', (
      select jsonb_object_agg(m.key, jsonb_build_object(
        'used', public.billing_usage(v_subject, m.key),
        'included', st.included,
        'window', jsonb_build_object('start', w.window_start, 'end', w.window_end),
        'state', st.state,
        'grace_ends_at', st.grace_ends_at,
        'overage', st.overage))
      from (select distinct l.key from public.billing_plan_limits l where l.kind = 'meter') m
      cross join public.billing_usage_window(v_subject, v_now) w
      cross join lateral public.billing_usage_status(v_subject, m.key) st),
    'caller_had_trial', exists (
      select 1 from public.billing_subscriptions t
      where t.for_this_product and t.trial_start is not null and (t.user_id = p_caller or t.buyer_id = p_caller)),
    'event_subject', (
      select c.user_id from public.stripe_events e
      join public.billing_customers c on c.stripe_customer_id = e.stripe_customer_id
      where p_event_id is not null and e.id = p_event_id and e.outcome not in ('failed', 'skipped', 'pending'))
  );
end;
$$;

revoke execute on function public.billing_request_context(uuid, uuid, text, integer, integer, text) from public, anon, authenticated;
grant execute on function public.billing_request_context(uuid, uuid, text, integer, integer, text) to service_role;
