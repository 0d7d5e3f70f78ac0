// The event pipeline: kernel programs -> shared ring buffer -> one native
// consumer thread -> EventSink batches -> decodeBatch -> the listener, one
// call per batch. Enforcers write their decisions into the same ring (`ring`)
// or sink (`sink`), so every event reaches the listener through here.
import { decodeBatch, EwEvent } from './events';
import type {
  EventRingOptions,
  MonitorOptions,
  NativeAddon,
  NativeEventRing,
  NativeEventSink,
  NativeMonitor,
} from './native';

export interface PipelineOptions extends EventRingOptions, MonitorOptions {
  /** userspace backlog limit before batches are dropped (EventSink's maxPendingBytes) */
  maxPendingBytes?: number;
}

export interface PipelineStats {
  /** events decoded and handed to the listener */
  delivered: number;
  /** records the kernel could not write because the ring was full */
  kernelDropped: number;
  /** listener calls */
  batches: number;
  /** records dropped in userspace because JS fell behind */
  userspaceDropped: number;
  /** records that could not be decoded */
  decodeErrors: number;
  /** listener calls that threw */
  listenerErrors: number;
}

export type EventListener = (events: EwEvent[]) => void;

export class EventPipeline {
  readonly sink: NativeEventSink;
  readonly ring: NativeEventRing;
  private monitor: NativeMonitor | undefined;
  private closed = false;
  private delivered = 0;
  private batches = 0;
  private decodeErrors = 0;
  private listenerErrors = 0;

  /**
   * Starts the ring consumer, and the monitor's programs when any group is on.
   * `onListenerError` gets what the listener throws (default: a process
   * warning); a throwing listener never stops the pipeline.
   */
  constructor(
    native: NativeAddon,
    options: PipelineOptions,
    private readonly listener: EventListener,
    private readonly onListenerError: (err: unknown) => void = defaultListenerError,
  ) {
    const sinkOptions = options.maxPendingBytes === undefined ? {} : { maxPendingBytes: options.maxPendingBytes };
    this.sink = new native.EventSink((batch) => this.onBatch(batch), sinkOptions);
    try {
      this.ring = new native.EventRing(this.sink, {
        ringBufferBytes: options.ringBufferBytes,
        pollIntervalMs: options.pollIntervalMs,
      });
    } catch (err) {
      this.sink.close();
      throw err;
    }
    if (options.process || options.file || options.network) {
      try {
        this.monitor = new native.Monitor(this.ring, {
          process: options.process,
          file: options.file,
          network: options.network,
        });
      } catch (err) {
        this.ring.close();
        this.sink.close();
        throw err;
      }
    }
  }

  /** Names of the monitor programs attached (empty when every group is off). */
  attached(): string[] {
    return this.monitor ? this.monitor.attached() : [];
  }

  stats(): PipelineStats {
    const ring = this.ring.stats();
    const sink = this.sink.stats();
    return {
      delivered: this.delivered,
      kernelDropped: ring.kernelDropped,
      batches: this.batches,
      userspaceDropped: sink.dropped,
      decodeErrors: this.decodeErrors,
      listenerErrors: this.listenerErrors,
    };
  }

  /**
   * Detaches the monitor, stops the ring consumer and the sink. The listener
   * is not called after close() returns (a last batch in flight is dropped).
   * Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.monitor?.close();
    this.monitor = undefined;
    this.ring.close();
    this.sink.close();
  }

  private onBatch(batch: Buffer): void {
    if (this.closed) return;
    // Runs from a native thread-safe call: nothing may escape from here.
    try {
      const { events, errors } = decodeBatch(batch);
      this.decodeErrors += errors;
      if (events.length === 0) return;
      this.batches++;
      this.delivered += events.length;
      this.listener(events);
    } catch (err) {
      this.listenerErrors++;
      try {
        this.onListenerError(err);
      } catch {
        // the error reporter failed too: nothing left to tell
      }
    }
  }
}

function defaultListenerError(err: unknown): void {
  process.emitWarning(`edgeward event listener threw: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
}
