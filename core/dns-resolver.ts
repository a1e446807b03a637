/**
 * A DNS lookup as mailauth calls it: `(name, rrtype)` → what `dns.promises.resolve` returns
 * (TXT → `string[][]`). "No such record" rejects with code `ENOTFOUND` or `ENODATA`; any other
 * code makes the check `temperror`. The listener's sender checks and the parse function take one,
 * so tests and the local runtime answer from a zone of their own.
 */
export type DnsResolver = (name: string, rrtype: string) => Promise<unknown>;
