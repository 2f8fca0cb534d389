// The Stripe meters of the catalog's billed meters (docs/usage.md, "Billed overage"): one
// per meter key, event_name = the key, summing each event's payload.value for the
// customer in payload.stripe_customer_id. billing:setup makes them; the catalog's
// metered prices are theirs only when they name them (isCatalogMeteredPrice).

import type Stripe from 'stripe';

/** The payload keys a meter event carries: Stripe's defaults, said once. */
export const METER_CUSTOMER_KEY = 'stripe_customer_id';
export const METER_VALUE_KEY = 'value';

export function meterCreateParams(key: string): Stripe.Billing.MeterCreateParams {
  return {
    display_name: `${key} past the included amount`,
    event_name: key,
    default_aggregation: { formula: 'sum' },
    customer_mapping: { type: 'by_id', event_payload_key: METER_CUSTOMER_KEY },
    value_settings: { event_payload_key: METER_VALUE_KEY },
  };
}

/** Whether a meter counts as meterCreateParams' would: Stripe never changes a meter's
 *  aggregation or mappings, so one that differs cannot be fixed, only replaced by hand. */
export function countsAsOurs(meter: Stripe.Billing.Meter): boolean {
  return (
    meter.default_aggregation.formula === 'sum' &&
    meter.customer_mapping.type === 'by_id' &&
    meter.customer_mapping.event_payload_key === METER_CUSTOMER_KEY &&
    meter.value_settings.event_payload_key === METER_VALUE_KEY &&
    meter.event_time_window === null
  );
}

/** The account's meters for these event names, by event name: an active one before an
 *  inactive one. Stripe filters the list by status only, so this walks it once. */
export async function findMeters(stripe: Stripe, eventNames: readonly string[]): Promise<Map<string, Stripe.Billing.Meter>> {
  const found = new Map<string, Stripe.Billing.Meter>();
  if (eventNames.length === 0) return found;
  for await (const meter of stripe.billing.meters.list({ limit: 100 })) {
    if (!eventNames.includes(meter.event_name)) continue;
    const held = found.get(meter.event_name);
    if (!held || (held.status !== 'active' && meter.status === 'active')) found.set(meter.event_name, meter);
  }
  return found;
}
