// A small typed event emitter. Unlike Node's, an 'error' event without a
// listener is dropped, not thrown: hub problems are values, never crashes.
import { EventEmitter } from 'events';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Listeners<E> = { [K in keyof E]: (...args: any[]) => void };

export class Emitter<E extends Listeners<E>> {
  private readonly ee = new EventEmitter();

  constructor() {
    this.ee.setMaxListeners(100);
  }

  on<K extends keyof E & string>(event: K, listener: E[K]): this {
    this.ee.on(event, listener);
    return this;
  }

  once<K extends keyof E & string>(event: K, listener: E[K]): this {
    this.ee.once(event, listener);
    return this;
  }

  off<K extends keyof E & string>(event: K, listener: E[K]): this {
    this.ee.off(event, listener);
    return this;
  }

  protected emit<K extends keyof E & string>(event: K, ...args: Parameters<E[K]>): void {
    if (this.ee.listenerCount(event) === 0) return;
    this.ee.emit(event, ...args);
  }
}

/** The subset of a winston logger the hub code logs through. */
export interface HubLogger {
  error(message: string, meta?: Record<string, unknown>): unknown;
  warn(message: string, meta?: Record<string, unknown>): unknown;
  info(message: string, meta?: Record<string, unknown>): unknown;
  debug(message: string, meta?: Record<string, unknown>): unknown;
}

export const silentLogger: HubLogger = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined };
