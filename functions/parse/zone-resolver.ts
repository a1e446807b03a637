import { readFile, stat } from 'node:fs/promises';
import { type Document, LineCounter, parseDocument } from 'yaml';
import * as z from 'zod';
import { ConfigError } from '../../core/index.ts';
import type { DnsResolver } from './dns.ts';

const RECORD_TYPES = ['TXT', 'A', 'AAAA', 'MX', 'PTR', 'CNAME'] as const;
type RecordType = (typeof RECORD_TYPES)[number];

const MxSchema = z.strictObject({ exchange: z.string(), priority: z.number().int().min(0) });
const NameSchema = z.partialRecord(
  z.enum(RECORD_TYPES),
  z
    .array(
      z.union([z.string(), MxSchema], {
        error: 'expected a string, or { exchange, priority } for an MX record',
      }),
    )
    .min(1),
);

/** A DNS zone for local runs: name → record type → values (TXT values as whole strings). */
export type DnsZoneRecords = Readonly<Record<string, z.output<typeof NameSchema>>>;

/** The line of the deepest node on `path` that the document has (the entry, else its parent). */
function lineOf(document: Document, lines: LineCounter, path: readonly PropertyKey[]): number {
  for (let depth = path.length; depth > 0; depth--) {
    const node = document.getIn(path.slice(0, depth), true) as
      | { range?: [number, number, number] }
      | undefined;
    if (node?.range) return lines.linePos(node.range[0]).line;
  }
  return document.contents?.range ? lines.linePos(document.contents.range[0]).line : 1;
}

/** A zone entry as the file spells it: `example.com TXT[0]`; names have dots of their own. */
function describeEntry([name, ...rest]: readonly PropertyKey[]): string {
  if (name === undefined) return '(root)';
  return rest.reduce<string>(
    (text, key) => (typeof key === 'number' ? `${text}[${key}]` : `${text} ${String(key)}`),
    String(name),
  );
}

/**
 * Validates a zone document (YAML or JSON, as in `dev/auth/zone.yaml`). Throws a
 * {@link ConfigError} naming the file, and the line and entry of each mistake.
 */
export function parseDnsZone(text: string, source: string): DnsZoneRecords {
  const lines = new LineCounter();
  const document = parseDocument(text, { lineCounter: lines });
  if (document.errors.length > 0) {
    // The parser's message goes on with "at line L, column C:" and the offending lines drawn out.
    throw new ConfigError(
      source,
      document.errors.map(
        (error) => `line ${error.linePos?.[0].line ?? 1}: not YAML: ${error.message.split(' at line ')[0]}`,
      ),
    );
  }
  const result = z.record(z.string(), NameSchema).safeParse(document.toJS() ?? {});
  if (!result.success) {
    throw new ConfigError(
      source,
      result.error.issues.map((issue) => {
        // An unknown record type is reported on its name; its own line is the one to fix.
        const path = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]!] : issue.path;
        const known = issue.code === 'unrecognized_keys' ? ` (record types: ${RECORD_TYPES.join(', ')})` : '';
        return `line ${lineOf(document, lines, path)}: ${describeEntry(issue.path)}: ${issue.message}${known}`;
      }),
    );
  }
  return Object.fromEntries(
    Object.entries(result.data).map(([name, records]) => [name.toLowerCase().replace(/\.$/, ''), records]),
  );
}

/**
 * Reads and validates a zone file; a file that cannot be read is a {@link ConfigError} too. Errors
 * are headed by `source` (the path unless given: say where the path came from).
 */
export async function loadDnsZone(path: string, source = path): Promise<DnsZoneRecords> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError(source, [`(file): cannot read: ${(error as Error).message}`], { cause: error });
  }
  return parseDnsZone(text, source);
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

/** What tells one version of a file from the next: inode, size and time of change (or why none). */
async function stampOf(path: string): Promise<string> {
  try {
    const { ino, size, mtimeMs } = await stat(path);
    return `${ino} ${size} ${mtimeMs}`;
  } catch (error) {
    return `unreadable: ${(error as Error).message}`;
  }
}

/**
 * A {@link zoneResolver} on a zone file that follows its edits, so a record added while running (a
 * domain's TXT proof) answers without a restart. The file is read now (a bad one throws, as
 * {@link loadDnsZone}); each lookup then looks at the file's stamp, and reads it again when it
 * changed. A file that became invalid or unreadable leaves the last good zone answering, and
 * `onError` gets the {@link ConfigError} naming its line, once per change of the file.
 */
export async function zoneFileResolver(
  path: string,
  options: { source?: string; fallback?: DnsResolver; onError: (error: ConfigError) => void },
): Promise<DnsResolver> {
  const source = options.source ?? path;
  // Taken before the read: an edit made during it is read at the next lookup.
  let stamp = await stampOf(path);
  let resolve = zoneResolver(await loadDnsZone(path, source), options);
  let looking: Promise<void> | undefined;
  const look = async () => {
    const now = await stampOf(path);
    if (now === stamp) return;
    stamp = now;
    try {
      resolve = zoneResolver(await loadDnsZone(path, source), options);
    } catch (error) {
      options.onError(error as ConfigError);
    }
  };
  return async (name, rrtype) => {
    // Lookups made while the file is looked at wait for that one look.
    looking ??= look().finally(() => {
      looking = undefined;
    });
    await looking;
    return resolve(name, rrtype);
  };
}
