// The line under a billed meter's usage bar: the status body's usage.<meter>.overage,
// the current window's estimate (docs/usage.md, "Billed overage"). A module of its own,
// for the usage section to import: `import { overageText } from './overage.js'`, then
// under each meter's bar `const line = overageText(meter, money); if (line) …append(line)`
// (money: dashboard.js's formatter of an amount in the currency's smallest unit).

/**
 * What a billed meter's overage comes to so far this window, or null for a meter that is
 * not billed (no `overage` in the status body).
 * @param {{ overage?: { units: number, amount: number, currency: string } | null }} meter
 * @param {(amount: number, currency: string) => string} money
 * @returns {string | null}
 */
export function overageText(meter, money) {
  const overage = meter.overage;
  if (!overage) return null;
  if (overage.units === 0) return 'Use past the included amount is billed; none so far this window.';
  const units = overage.units.toLocaleString('en');
  return `${units} past the included amount this window: about ${money(overage.amount, overage.currency)} so far, billed on the next invoice.`;
}
