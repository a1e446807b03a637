import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import * as z from 'zod';
import type { DnsResolver } from './dns.ts';

const RECORD_TYPES = ['TXT', 'A', 'AAAA', 'MX', 'PTR', 'CNAME'] as const;
type RecordType = (typeof RECORD_TYPES)[number];

const MxSchema = z.strictObject({ exchange: z.string(), priority: z.number().int().min(0) });
const NameSchema = z.partialRecord(z.enum(RECORD_TYPES), z.array(z.union([z.string(), MxSchema])).min(1));

/** A DNS zone for local runs: name → record type → values (TXT values as whole strings). */
export type DnsZoneRecords = Readonly<Record<string, z.output<typeof NameSchema>>>;

/**
 * Validates a zone document (YAML or JSON, as in `dev/auth/zone.yaml`). Throws an error naming the
 * file and the bad entry.
 */
export function parseDnsZone(text: string, source: string): DnsZoneRecords {
  const result = z.record(z.string(), NameSchema).safeParse(parseYaml(text) ?? {});
  if (!result.success) {
    const issues = result.error.issues.map(
      (issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`,
    );
    throw new Error(`${source}: not a DNS zone: ${issues.join('; ')}`);
  }
  return Object.fromEntries(
    Object.entries(result.data).map(([name, records]) => [name.toLowerCase().replace(/\.$/, ''), records]),
  );
}

/** Reads and validates a zone file. */
export async function loadDnsZone(path: string): Promise<DnsZoneRecords> {
  return parseDnsZone(await readFile(path, 'utf8'), path);
}

function notFound(name: string, rrtype: string, code: 'ENOTFOUND' | 'ENODATA'): Error {
  return Object.assign(new Error(`query${rrtype} ${code} ${name}`), { code, hostname: name });
}

// A TXT string longer than 255 octets is several character-strings on the wire (RFC 1035 §3.3.14):
// answered as dns.promises.resolveTxt would, in chunks, which mailauth joins.
const txtChunks = (value: string) => value.match(/[\s\S]{1,255}/g) ?? [''];

/**
 * A resolver that answers from a zone, as `dns.promises.resolve` would (TXT → `string[][]`).
 * Names outside the zone go to `fallback` when given; otherwise they do not exist (ENOTFOUND), so
 * the checks say `none` rather than `temperror` offline.
 */
export function zoneResolver(zone: DnsZoneRecords, options: { fallback?: DnsResolver } = {}): DnsResolver {
  return async (name, rrtype) => {
    const key = name.toLowerCase().replace(/\.$/, '');
    const records = zone[key];
    if (!records) {
      if (options.fallback) return options.fallback(name, rrtype);
      throw notFound(name, rrtype, 'ENOTFOUND');
    }
    const values = records[rrtype as RecordType];
    if (!values) throw notFound(name, rrtype, 'ENODATA');
    return rrtype === 'TXT' ? values.map((value) => txtChunks(String(value))) : values;
  };
}
