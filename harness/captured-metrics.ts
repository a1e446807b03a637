import { Metrics } from '@aws-lambda-powertools/metrics';
import { METRICS_NAMESPACE } from '../core/index.ts';

/** One EMF record as Powertools prints it: the envelope, then dimension and metric values. */
export interface EmfRecord {
  readonly _aws: {
    readonly CloudWatchMetrics: readonly {
      readonly Dimensions: readonly (readonly string[])[];
      readonly Metrics: readonly { readonly Name: string }[];
    }[];
  };
  readonly [field: string]: unknown;
}

/**
 * A part's Metrics that keeps each EMF record it would print instead of printing it (so
 * POWERTOOLS_METRICS_DISABLED, set for tests, does not hide them), single metrics included.
 */
export class CapturedMetrics extends Metrics {
  readonly records: EmfRecord[];
  readonly #serviceName: string;

  constructor(serviceName: string, records: EmfRecord[] = [], singleMetric = false) {
    super({ namespace: METRICS_NAMESPACE, serviceName, singleMetric });
    this.#serviceName = serviceName;
    this.records = records;
  }

  override singleMetric(): Metrics {
    return new CapturedMetrics(this.#serviceName, this.records, true);
  }

  override publishStoredMetrics(): this {
    if (this.hasStoredMetrics()) this.records.push(this.serializeMetrics() as unknown as EmfRecord);
    this.clearMetrics();
    this.clearDimensions();
    this.clearMetadata();
    return this;
  }

  /** Each metric name recorded, with every dimension set it was recorded under (names sorted, joined by `,`). */
  dimensionSets(): Map<string, Set<string>> {
    const sets = new Map<string, Set<string>>();
    for (const record of this.records)
      for (const { Dimensions, Metrics: metrics } of record._aws.CloudWatchMetrics)
        for (const { Name } of metrics)
          for (const dimensions of Dimensions) {
            if (!sets.has(Name)) sets.set(Name, new Set());
            sets.get(Name)!.add([...dimensions].sort().join(','));
          }
    return sets;
  }
}
