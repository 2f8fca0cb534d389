// One error type for everything a client may be told. Anything else that is thrown
// is a bug or an outage: it is logged and answered with a generic 500.

export class HttpError extends Error {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  constructor(status: number, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.headers = headers;
  }
}

export class UnauthorizedError extends HttpError {
  constructor(message = 'Unauthorized') {
    super(401, message, { 'WWW-Authenticate': 'Bearer' });
    this.name = 'UnauthorizedError';
  }
}

export class ForbiddenError extends HttpError {
  constructor(message: string) {
    super(403, message);
    this.name = 'ForbiddenError';
  }
}

export class NotFoundError extends HttpError {
  constructor(message = 'Not found') {
    super(404, message);
    this.name = 'NotFoundError';
  }
}

export class PayloadTooLargeError extends HttpError {
  constructor(limitBytes: number) {
    super(413, `Request body larger than ${limitBytes} bytes`);
    this.name = 'PayloadTooLargeError';
  }
}

export class MethodNotAllowedError extends HttpError {
  constructor(allow: readonly string[]) {
    super(405, 'Method not allowed', { Allow: allow.join(', ') });
    this.name = 'MethodNotAllowedError';
  }
}

export class AlreadySubscribedError extends HttpError {
  constructor() {
    super(400, 'Already subscribed');
    this.name = 'AlreadySubscribedError';
  }
}

export class NoSubscriptionError extends HttpError {
  constructor() {
    super(400, 'No active subscription');
    this.name = 'NoSubscriptionError';
  }
}

/** POST /api/stripe/seats for a team without a live subscription of a per-seat plan. */
export class NoPerSeatSubscriptionError extends HttpError {
  constructor() {
    super(400, 'No per-seat subscription');
    this.name = 'NoPerSeatSubscriptionError';
  }
}

export class InvalidRequestError extends HttpError {
  constructor(message: string) {
    super(400, message);
    this.name = 'InvalidRequestError';
  }
}

export class CheckoutSessionNotFoundError extends HttpError {
  constructor() {
    super(404, 'Checkout session not found');
    this.name = 'CheckoutSessionNotFoundError';
  }
}

export class CheckoutNotCompleteError extends HttpError {
  constructor() {
    super(400, 'Checkout not complete');
    this.name = 'CheckoutNotCompleteError';
  }
}

export class InvalidEventError extends HttpError {
  constructor() {
    super(400, 'Not a Stripe event');
    this.name = 'InvalidEventError';
  }
}

export class InvalidSignatureError extends HttpError {
  constructor(message = 'Invalid signature') {
    super(400, message);
    this.name = 'InvalidSignatureError';
  }
}

/** Checkout of a plan whose limits the subject's stored counts already pass: it would
 *  start over its limits, and every new row would be refused. */
export class LimitsExceededError extends HttpError {
  constructor(keys: readonly string[]) {
    super(400, `Usage exceeds the plan's limits: ${keys.join(', ')}`);
    this.name = 'LimitsExceededError';
  }
}

export class UnknownPriceError extends HttpError {
  constructor() {
    super(400, 'Unknown price');
    this.name = 'UnknownPriceError';
  }
}

export class TooManyRequestsError extends HttpError {
  constructor(retryAfterSeconds: number) {
    super(429, 'Too many requests', { 'Retry-After': String(retryAfterSeconds) });
    this.name = 'TooManyRequestsError';
  }
}

/** A catalog price whose lookup key Stripe resolves to a price that is not ours (e.g.
 *  another app on the account took the key). A 500: ours to fix, not the buyer's. */
export class PlanUnavailableError extends HttpError {
  constructor() {
    super(500, 'Plan unavailable');
    this.name = 'PlanUnavailableError';
  }
}
