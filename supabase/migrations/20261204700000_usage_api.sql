-- The status endpoint reads decisions, it does not make them (docs/usage.md).
--
-- * billing_request_context also returns `decision`: the subject's access, its reason,
--   the grace period's end and the features it has now, by billing_decide_access with
--   billing_grace_days() and now(), as billing_has_access and billing_features decide.
--   The API has no second copy of the rule to keep equal.

create or replace function public.billing_request_context(
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
    a.current_period_start, a.current_period_end, a.payment_failed_at, public.billing_grace_days(), now());
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
