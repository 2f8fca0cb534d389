// What the orchestrator (index.ts) hands the warm worker (warm.ts), and what it gets back.

import type { Spread } from './stats.ts';

export interface SeedUser {
  id: string;
  email: string;
  token: string;
  customerId: string;
  /** A team this user owns, in the same state as the user's own billing (its own customer). */
  teamId?: string;
}

export interface WarmConfig {
  /** The functions' environment: the local stack, Stripe keys, URL. */
  env: Record<string, string>;
  /** Endpoint name -> the netlify-mode bundle of its function. */
  bundles: Record<string, string>;
  /** The stripe-mock bridge (for its request recorder). */
  bridgeUrl: string;
  /** Users with a stored Stripe customer and no subscription (checkout of a returning user). */
  returning: SeedUser[];
  /** Users with an active subscription (portal, status). */
  subscribed: SeedUser[];
  rounds: number;
  /** Requests per batch, per concurrency. */
  batch: Record<string, number>;
  warmConcurrencies: number[];
  webhookConcurrencies: number[];
  resultFile: string;
}

export interface RoundTrip {
  scenario: string;
  status: number;
  dbCalls: string[];
  stripeCalls: string[];
  /** The direct baseline's calls for the same scenario, when it has one. */
  direct?: { dbCalls: string[]; stripeCalls: string[] };
}

export interface PairedMeasure {
  endpoint: string;
  concurrency: number;
  requests: number;
  handler: Side;
  direct: Side;
  /** handler p50 / direct p50, per round. */
  p50Ratio: Spread;
  /** handler p99 / direct p99, over all rounds' latencies (a round has too few for its own p99). */
  p99Ratio: number;
  /** direct throughput / handler throughput, per round (>1: the handler is slower). */
  throughputRatio: Spread;
}

export interface Side {
  /** Over all rounds' latencies, ms. */
  p50: number;
  p99: number;
  /** Requests per second: the median of the rounds. */
  throughput: number;
  throughputSpread: Spread;
  errors: number;
}

export interface WarmResult {
  roundTrips: RoundTrip[];
  warm: PairedMeasure[];
  webhook: PairedMeasure[];
  /** Outcomes billing_apply_event returned in the direct webhook batches. */
  directOutcomes: Record<string, number>;
  elapsedMs: number;
}
