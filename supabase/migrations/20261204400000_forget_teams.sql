-- billing:forget for the teams a user bought for (src/billing/forget.ts): a team's
-- billing goes on when its buyer deletes their account, so only their id and email
-- leave it.
--
-- * billing_forget_team_customers(user): the team customers where a user's purchase
--   may be, for forget to read in Stripe: those of the subscriptions they bought for a
--   subject not theirs (buyer_id, 20261204200000), and those of the teams they are
--   still a member of (an abandoned checkout leaves a customer and sessions, no
--   subscription). With each, the email stored on the team's link, which is its first
--   buyer's (checkout stores the creator's email).
-- * billing_forget_team_email(team, customer, emails): clears that stored email when
--   it is one of the forgotten user's; true when it did.

-- Only a team's subscriptions, named by buyer: small, and what forget looks up.
create index billing_subscriptions_team_buyer_idx on public.billing_subscriptions (buyer_id) where buyer_id <> user_id;

create function public.billing_forget_team_customers(p_user uuid) returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
  select coalesce(jsonb_agg(jsonb_build_object('team_id', t.team_id, 'customer_id', t.customer_id, 'email', c.email)
                            order by t.team_id, t.customer_id), '[]'::jsonb)
  from (
    select s.user_id as team_id, s.stripe_customer_id as customer_id
      from public.billing_subscriptions s
      where s.buyer_id = p_user and s.buyer_id <> s.user_id
    union
    select c.user_id, c.stripe_customer_id
      from public.billing_team_members m
      join public.billing_customers c on c.user_id = m.team_id
      where m.user_id = p_user
  ) t
  -- The link as it is now: none once the team's customer was deleted.
  left join public.billing_customers c on c.user_id = t.team_id and c.stripe_customer_id = t.customer_id
$$;

create function public.billing_forget_team_email(p_team uuid, p_customer text, p_emails text[]) returns boolean
language sql
volatile
security invoker
set search_path = ''
as $$
  with cleared as (
    update public.billing_customers c
      set email = null, updated_at = now()
      where c.user_id = p_team and c.stripe_customer_id = p_customer
        and lower(c.email) = any (select lower(e) from unnest(p_emails) e)
      returning 1
  )
  select exists (select 1 from cleared)
$$;

revoke execute on function public.billing_forget_team_customers(uuid) from public, anon, authenticated;
revoke execute on function public.billing_forget_team_email(uuid, text, text[]) from public, anon, authenticated;
grant execute on function public.billing_forget_team_customers(uuid) to service_role;
grant execute on function public.billing_forget_team_email(uuid, text, text[]) to service_role;
