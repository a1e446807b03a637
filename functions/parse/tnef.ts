import { detectMimeType } from 'nodemailer/lib/mime-funcs/mime-types.js';

/** A file found inside a container attachment (winmail.dat, .msg). */
export interface UnpackedFile {
  readonly filename: string | null;
  readonly contentType: string;
  readonly contentId: string | null;
  readonly content: Buffer;
}

/** What a container attachment holds. */
export interface UnpackedContainer {
  readonly format: 'tnef' | 'msg';
  readonly subject: string | null;
  readonly from: { readonly name: string; readonly address: string | null } | null;
  readonly text: string | null;
  readonly files: UnpackedFile[];
  /** What could not be read, as "code: detail". */
  readonly warnings: string[];
}

// MS-OXTNEF §2.1.3.1: the stream starts with this signature, then a 2-byte legacy key.
const TNEF_SIGNATURE = 0x223e9f78;
const LEVEL_ATTACHMENT = 0x02;
// Attribute ids (low word of AttrID, MS-OXTNEF §2.1.3.3).
const ATT = {
  subject: 0x8004,
  body: 0x800c,
  attachData: 0x800f,
  attachTitle: 0x8010,
  msgProps: 0x9003,
  attachRendData: 0x9002,
  attachment: 0x9005,
  oemCodepage: 0x9007,
} as const;
// MAPI property ids (MS-OXPROPS).
const PR = {
  subject: 0x0037,
  body: 0x1000,
  senderName: 0x0c1a,
  senderEmail: 0x0c1f,
  senderSmtp: 0x5d01,
  attachDataBin: 0x3701,
  attachFilename: 0x3704,
  attachLongFilename: 0x3707,
  attachMimeTag: 0x370e,
  attachContentId: 0x3712,
} as const;
// MAPI property types (MS-OXCDATA §2.11.1) and the size of a fixed-size value in a TNEF stream.
const PT_STRING8 = 0x001e;
const PT_UNICODE = 0x001f;
const PT_BINARY = 0x0102;
const PT_OBJECT = 0x000d;
const MULTI = 0x1000;
const FIXED_SIZE: Record<number, number> = {
  1: 4, // null
  2: 4, // 16-bit integer, padded
  3: 4,
  4: 4,
  5: 8,
  6: 8,
  7: 8,
  10: 4,
  11: 4, // boolean, padded
  20: 8,
  64: 8,
  72: 16,
};
const VARIABLE = new Set([PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT]);

/** Limits that keep a hostile stream from costing more than its own size. */
export interface ContainerLimits {
  /** Files taken from one container. @default 256 */
  readonly maxFiles?: number;
}

class Truncated extends Error {}

/** A bounds-checked little-endian reader: every length is checked against what is left. */
class Cursor {
  offset = 0;
  readonly bytes: Buffer;
  constructor(bytes: Buffer) {
    this.bytes = bytes;
  }
  get left(): number {
    return this.bytes.length - this.offset;
  }
  take(length: number): Buffer {
    if (length < 0 || length > this.left) throw new Truncated(`needs ${length} bytes, ${this.left} left`);
    const slice = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return slice;
  }
  u8(): number {
    return this.take(1).readUInt8(0);
  }
  u16(): number {
    return this.take(2).readUInt16LE(0);
  }
  u32(): number {
    return this.take(4).readUInt32LE(0);
  }
  pad4(length: number): void {
    this.take((4 - (length % 4)) % 4);
  }
}

type PropValue = Buffer | number;

/** Reads a MAPI property list (MS-OXTNEF §2.1.3.4) into id → first value's bytes. */
function readProps(data: Buffer): Map<number, { type: number; value: PropValue }> {
  const props = new Map<number, { type: number; value: PropValue }>();
  const cursor = new Cursor(data);
  const count = cursor.u32();
  for (let index = 0; index < count && cursor.left > 0; index++) {
    const type = cursor.u16();
    const id = cursor.u16();
    if (id >= 0x8000) {
      // A named property: GUID, then a number or a UTF-16 name.
      cursor.take(16);
      const kind = cursor.u32();
      if (kind === 0) cursor.u32();
      else {
        const length = cursor.u32();
        cursor.take(length);
        cursor.pad4(length);
      }
    }
    const base = type & ~MULTI;
    const values: PropValue[] = [];
    if (VARIABLE.has(base) || type & MULTI) {
      const n = cursor.u32();
      if (n > cursor.left) throw new Truncated(`property 0x${id.toString(16)} claims ${n} values`);
      for (let v = 0; v < n; v++) {
        if (VARIABLE.has(base)) {
          const length = cursor.u32();
          values.push(cursor.take(length));
          cursor.pad4(length);
        } else {
          const size = FIXED_SIZE[base];
          if (size === undefined) return props;
          values.push(cursor.take(size));
        }
      }
    } else {
      const size = FIXED_SIZE[base];
      // An unknown type has an unknown size: nothing after it can be read.
      if (size === undefined) return props;
      const value = cursor.take(size);
      values.push(size === 4 ? value.readUInt32LE(0) : value);
    }
    if (values.length > 0 && !props.has(id)) props.set(id, { type: base, value: values[0]! });
  }
  return props;
}

function decodeString(bytes: Buffer, type: number, codepage: string): string {
  const text =
    type === PT_UNICODE
      ? bytes.toString('utf16le')
      : new TextDecoder(codepage, { fatal: false }).decode(bytes);
  return text.replace(/\0+$/, '');
}

function stringProp(
  props: Map<number, { type: number; value: PropValue }>,
  id: number,
  codepage: string,
): string | null {
  const prop = props.get(id);
  if (!prop || !Buffer.isBuffer(prop.value) || (prop.type !== PT_STRING8 && prop.type !== PT_UNICODE))
    return null;
  return decodeString(prop.value, prop.type, codepage) || null;
}

function codepageName(codepage: number | undefined): string {
  if (codepage === 65001) return 'utf-8';
  const name = codepage ? `windows-${codepage}` : 'windows-1252';
  try {
    new TextDecoder(name);
    return name;
  } catch {
    return 'windows-1252';
  }
}

interface PendingFile {
  title?: string;
  data?: Buffer;
  props?: Map<number, { type: number; value: PropValue }>;
}

/**
 * Unpacks a TNEF stream (winmail.dat, MS-OXTNEF): its files, subject, sender and plain-text body.
 * Every length is checked against the bytes left, so a hostile stream costs at most a pass over
 * itself and its own size in copies; a stream cut short gives what was read before the cut, with a
 * warning. Throws only when the bytes are not TNEF at all.
 */
export function readTnef(bytes: Buffer, limits: ContainerLimits = {}): UnpackedContainer {
  const maxFiles = limits.maxFiles ?? 256;
  const cursor = new Cursor(bytes);
  if (bytes.length < 6 || cursor.u32() !== TNEF_SIGNATURE)
    throw new Error('not a TNEF stream (bad signature)');
  cursor.u16();
  const warnings: string[] = [];
  const pending: PendingFile[] = [];
  let messageProps = new Map<number, { type: number; value: PropValue }>();
  let subject: string | null = null;
  let body: string | null = null;
  let codepage = 'windows-1252';
  try {
    while (cursor.left > 0) {
      const level = cursor.u8();
      const id = cursor.u32() & 0xffff;
      const length = cursor.u32();
      const data = cursor.take(length);
      cursor.u16(); // checksum: a bad one is common in the wild and changes nothing we read
      const text = () => new TextDecoder(codepage).decode(data).replace(/\0+$/, '');
      if (id === ATT.oemCodepage && data.length >= 4) codepage = codepageName(data.readUInt32LE(0));
      else if (id === ATT.attachRendData) {
        if (pending.length >= maxFiles) {
          warnings.push(`tnef_too_many_files: only the first ${maxFiles} are unpacked`);
          break;
        }
        pending.push({});
      } else if (level === LEVEL_ATTACHMENT && pending.length > 0) {
        const file = pending.at(-1)!;
        if (id === ATT.attachTitle) file.title = text();
        else if (id === ATT.attachData) file.data = data;
        else if (id === ATT.attachment) file.props = readProps(data);
      } else if (id === ATT.subject) subject = text() || null;
      else if (id === ATT.body) body = text() || null;
      else if (id === ATT.msgProps) messageProps = readProps(data);
    }
  } catch (error) {
    if (!(error instanceof Truncated)) throw error;
    warnings.push(`tnef_truncated: ${error.message}; kept what was read before`);
  }

  const files = pending.flatMap((file): UnpackedFile[] => {
    const props = file.props ?? new Map();
    const dataProp = props.get(PR.attachDataBin);
    const content = file.data ?? (dataProp && Buffer.isBuffer(dataProp.value) ? dataProp.value : undefined);
    // An attachment without data (an embedded message or an OLE object) has nothing to hand over.
    if (!content) return [];
    const filename =
      stringProp(props, PR.attachLongFilename, codepage) ??
      stringProp(props, PR.attachFilename, codepage) ??
      file.title ??
      null;
    const contentType =
      stringProp(props, PR.attachMimeTag, codepage) ??
      detectMimeType(filename ?? false) ??
      'application/octet-stream';
    return [
      {
        filename,
        contentType,
        contentId: stringProp(props, PR.attachContentId, codepage),
        content: Buffer.from(content),
      },
    ];
  });
  const senderName = stringProp(messageProps, PR.senderName, codepage);
  const senderAddress =
    stringProp(messageProps, PR.senderSmtp, codepage) ?? stringProp(messageProps, PR.senderEmail, codepage);
  return {
    format: 'tnef',
    subject: stringProp(messageProps, PR.subject, codepage) ?? subject,
    from:
      senderName || senderAddress
        ? { name: senderName ?? '', address: senderAddress?.includes('@') ? senderAddress : null }
        : null,
    text: stringProp(messageProps, PR.body, codepage) ?? body,
    files,
    warnings,
  };
}
