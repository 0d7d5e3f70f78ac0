// Reconnect schedule: capped exponential backoff with full jitter
// (delay = random(0, min(max, initial * multiplier^attempt))). When a broker
// restarts, its thousand nodes spread their reconnects over the whole
// window instead of arriving together; the attempt count is reset only
// after a connection stayed up for `resetAfterMs`, so a broker that accepts
// and drops connections at once does not get hammered either.

export interface BackoffOptions {
  /** upper bound of the first delay, ms */
  initialDelayMs: number;
  /** upper bound of any delay, ms */
  maxDelayMs: number;
  /** growth of the bound per failed attempt, >= 1 */
  multiplier: number;
  /** a connection up at least this long resets the schedule */
  resetAfterMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = {
  initialDelayMs: 2000,
  maxDelayMs: 120_000,
  multiplier: 2,
  resetAfterMs: 30_000,
};

export class Backoff {
  private attempt = 0;

  constructor(
    private readonly options: BackoffOptions,
    private readonly random: () => number = Math.random,
  ) {}

  /** The current upper bound (before jitter). */
  ceiling(): number {
    const o = this.options;
    // multiplier^attempt overflows to Infinity eventually: the cap handles it
    return Math.min(o.maxDelayMs, o.initialDelayMs * Math.pow(o.multiplier, this.attempt));
  }

  /** Delay before the next attempt; each call counts as one more failed attempt. */
  next(): number {
    const delay = Math.floor(this.random() * this.ceiling());
    if (this.ceiling() < this.options.maxDelayMs) this.attempt++;
    return delay;
  }

  /** Called when a connection ends after having been up `upForMs`. */
  connectionEnded(upForMs: number): void {
    if (upForMs >= this.options.resetAfterMs) this.attempt = 0;
  }

  reset(): void {
    this.attempt = 0;
  }

  attempts(): number {
    return this.attempt;
  }
}
