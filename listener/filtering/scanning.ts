import type { ScannersConfig, SpamScan, VirusScan } from '../../core/filtering/index.ts';
import { ClamdClient } from './clamd.ts';
import { RspamdClient, type ScanEnvelope } from './rspamd.ts';
import { SinkState, type StreamSink } from './sink.ts';
import { ScanTee, type ScanTeeOptions } from './tee.ts';

/** The content scan of one message: pipe DATA through `tee` on its way to S3, then ask `verdicts()`. */
export interface MessageScan {
  readonly tee: ScanTee;
  /** Both results, within the budget after the end of DATA; never rejects. */
  verdicts(): Promise<{ readonly spam: SpamScan; readonly virus: VirusScan }>;
}

function off<R>(value: R): StreamSink<R> {
  const state = new SinkState<R>();
  state.settle(value);
  return {
    write: () => true,
    drained: () => Promise.resolve(),
    end: () => {},
    abort: () => {},
    settled: true,
    result: state.result,
  };
}

/** Counts a scanner's messages in flight; past `max` a message gets `busy` instead of a sink. */
class Slots {
  #used = 0;
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  open<R>(start: () => StreamSink<R>, busy: R): StreamSink<R> {
    if (this.#used >= this.#max) return off(busy);
    this.#used += 1;
    const sink = start();
    void sink.result.then(() => {
      this.#used -= 1;
    });
    return sink;
  }
}

/**
 * rspamd and clamd as configured (`scanners:`), each off when its section is null: then its
 * verdict is `unavailable` with reason `disabled` at once, and nothing is sent anywhere. Each
 * scans at most `maxConcurrent` messages at once: an overloaded rspamd drops requests it has not
 * read within its I/O timeout (seen with 200 concurrent 1 MB messages on two workers), so the
 * ones beyond the cap are `busy` at once instead of failing seconds later.
 */
export class ContentScanners {
  readonly #rspamd: { client: RspamdClient; slots: Slots } | null;
  readonly #clamd: { client: ClamdClient; slots: Slots } | null;
  readonly #config: ScannersConfig;

  constructor(config: ScannersConfig) {
    this.#config = config;
    const { rspamd, clamd } = config;
    this.#rspamd = rspamd && { client: new RspamdClient(rspamd), slots: new Slots(rspamd.maxConcurrent) };
    this.#clamd = clamd && { client: new ClamdClient(clamd), slots: new Slots(clamd.maxConcurrent) };
  }

  /** Whether any scanner is configured. */
  get enabled(): boolean {
    return this.#rspamd !== null || this.#clamd !== null;
  }

  /**
   * Starts the scan of one message. `alongside` are further sinks for the same pass (the DMARC
   * check), under the same stall and budget limits; `beforeEnd` holds the end of the stream (see
   * {@link ScanTeeOptions}).
   */
  start(
    envelope: ScanEnvelope,
    alongside: readonly StreamSink<unknown>[] = [],
    options: Pick<ScanTeeOptions, 'beforeEnd'> = {},
  ): MessageScan {
    const disabled = { status: 'unavailable', reason: 'disabled' } as const;
    const busy = { status: 'unavailable', reason: 'busy' } as const;
    const rspamd = this.#rspamd;
    const clamd = this.#clamd;
    const spam = rspamd
      ? rspamd.slots.open<SpamScan>(() => rspamd.client.start(envelope), busy)
      : off<SpamScan>(disabled);
    const virus = clamd
      ? clamd.slots.open<VirusScan>(() => clamd.client.start(), busy)
      : off<VirusScan>(disabled);
    const tee = new ScanTee(
      [spam, virus, ...alongside].filter((sink) => !sink.settled),
      {
        stallMs: this.#config.stall * 1000,
        budgetMs: this.#config.budget * 1000,
        ...options,
      },
    );
    return {
      tee,
      verdicts: async () => {
        await tee.settled();
        return { spam: await spam.result, virus: await virus.result };
      },
    };
  }
}
