-- The status endpoint reads decisions, it does not make them (docs/usage.md).
--
-- * billing_request_context also returns `decision`: the subject's access, its reason,
--   the grace period's end and the features it has now, by billing_decide_access with
--   billing_grace_days() and now(), as billing_has_access and billing_features decide.
--   The API has no second copy of the rule to keep equal.
-- * It also returns the subject's `limits` ({key: {limit, used}}: used is the attached
--   count, null for a key no table is attached for) and `usage` ({meter: {used,
--   included, window, state, graceEndsAt}}) for the keys the catalog declares; null
--   when it declares none, so the status body stays as it was for such a catalog.
-- * billing_usage_status: billing_usage_state's rule, the included amount it is against,
--   and when grace ends (or ended); billing_usage_state reads its state, so the rule
--   stays in one place.

create function public.billing_usage_status(p_subject uuid, p_meter text, out state text, out included bigint, out grace_ends_at timestamptz)
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := public.billing_now();
  v_used bigint := public.billing_usage(p_subject, p_meter);
  v_may_ask boolean := public.billing_may_ask(p_subject);
  l record;
  w record;
  r record;
  v_next timestamptz;
  v_ends timestamptz[] := '{}';
  v_above boolean[] := '{}';
  v_run integer := 0;
  v_since timestamptz;
begin
  select * into l from public.billing_limit_of(p_subject, 'meter', p_meter, v_now, not v_may_ask);
  included := l.value;
  if l.value is null then
    state := 'ok';
    return;
  end if;
  if v_may_ask then
    -- The ended windows over the included amount, back from the current one without a
    -- gap, then the earliest run among them that started grace.
    select * into w from public.billing_usage_window(p_subject, v_now);
    v_next := w.window_start;
    for r in
      select u.window_start, u.window_end, u.used from public.billing_usage_windows u
      where u.subject_id = p_subject and u.meter = p_meter and u.window_start < w.window_start
      order by u.window_start desc
    loop
      exit when r.window_end <> v_next or r.used <= l.value;
      v_ends := array_prepend(r.window_end, v_ends);
      v_above := array_prepend(r.used * 100 > l.value * (100 + coalesce(l.margin_percent, 10)), v_above);
      v_next := r.window_start;
    end loop;
    for i in 1 .. cardinality(v_ends) loop
      v_run := case when v_above[i] then v_run + 1 else 0 end;
      if v_run >= coalesce(l.windows_over, 2) then
        v_since := v_ends[i];
        exit;
      end if;
    end loop;
    if v_since is not null then
      grace_ends_at := v_since + make_interval(secs => coalesce(l.grace_days, 7) * 86400);
      state := case when v_now < grace_ends_at then 'grace' else 'locked' end;
      return;
    end if;
  end if;
  state := case
    when v_used > l.value then 'over'
    when v_used > 0 and v_used * 10 >= l.value * 9 then 'warning'
    else 'ok'
  end;
end;
$$;

create or replace function public.billing_usage_state(p_subject uuid, p_meter text) returns text
language sql stable
security definer
set search_path = ''
as $$
  select (public.billing_usage_status(p_subject, p_meter)).state
$$;

revoke execute on function public.billing_usage_status(uuid, text) from public, anon, authenticated;
grant execute on function public.billing_usage_status(uuid, text) to service_role;

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
        'grace_ends_at', st.grace_ends_at))
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
