import type { ScannersConfig, SpamScan, VirusScan } from '../../core/filtering/index.ts';
import { ClamdClient } from './clamd.ts';
import { RspamdClient, type ScanEnvelope } from './rspamd.ts';
import { SinkState, type StreamSink } from './sink.ts';
import { ScanTee } from './tee.ts';

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

/**
 * rspamd and clamd as configured (`scanners:`), each off when its section is null: then its
 * verdict is `unavailable` with reason `disabled` at once, and nothing is sent anywhere.
 */
export class ContentScanners {
  readonly #rspamd: RspamdClient | undefined;
  readonly #clamd: ClamdClient | undefined;
  readonly #config: ScannersConfig;

  constructor(config: ScannersConfig) {
    this.#config = config;
    this.#rspamd = config.rspamd ? new RspamdClient(config.rspamd) : undefined;
    this.#clamd = config.clamd ? new ClamdClient(config.clamd) : undefined;
  }

  /** Whether any scanner is configured. */
  get enabled(): boolean {
    return this.#rspamd !== undefined || this.#clamd !== undefined;
  }

  start(envelope: ScanEnvelope): MessageScan {
    const disabled = { status: 'unavailable', reason: 'disabled' } as const;
    const spam = this.#rspamd?.start(envelope) ?? off<SpamScan>(disabled);
    const virus = this.#clamd?.start() ?? off<VirusScan>(disabled);
    const tee = new ScanTee(
      [spam, virus].filter((sink) => !sink.settled),
      {
        stallMs: this.#config.stall * 1000,
        budgetMs: this.#config.budget * 1000,
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

  close(): void {
    this.#rspamd?.close();
  }
}
