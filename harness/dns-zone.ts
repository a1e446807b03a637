/** A zone: name → record type → the answer `dns.promises.resolve` would give (TXT: `string[][]`). */
export type ZoneRecords = Record<string, Partial<Record<'TXT' | 'A' | 'AAAA' | 'MX' | 'PTR', unknown>>>;

/** A fixed, offline DNS zone for mailauth, in the manner of mailauth's own test/helpers/dns-zone.js. */
export interface DnsZone {
  /** The resolver to inject: `(name, rrtype)` → records, ENOTFOUND for an unknown name, ENODATA for a missing type. */
  readonly resolve: (name: string, rrtype: string) => Promise<unknown>;
  /** Every lookup made, as "TXT name". */
  readonly calls: string[];
  /** Delay before each answer, to play a slow DNS server. */
  delayMs: number;
}

export function createDnsZone(records: ZoneRecords, options: { delayMs?: number } = {}): DnsZone {
  const zone: DnsZone = {
    calls: [],
    delayMs: options.delayMs ?? 0,
    resolve: async (name, rrtype) => {
      zone.calls.push(`${rrtype} ${name}`);
      if (zone.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, zone.delayMs).unref());
      const entry = records[name.toLowerCase().replace(/\.$/, '')];
      if (!entry || !(rrtype in entry)) {
        const code = entry ? 'ENODATA' : 'ENOTFOUND';
        throw Object.assign(new Error(`query${rrtype} ${code} ${name}`), { code, hostname: name });
      }
      return entry[rrtype as keyof typeof entry];
    },
  };
  return zone;
}

/** No DNS: every lookup is "no such record", so auth verdicts come without a network wait. */
export const noDns = async (name: string): Promise<never> => {
  throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
};
