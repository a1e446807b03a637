import { readdirSync, readFileSync } from 'node:fs';
import { createRng } from './smtp-fuzz.ts';

/** One generated hostile message; built on demand, so the big ones are never held together. */
export interface HostileMessage {
  readonly name: string;
  build(): Buffer;
}

const FIXTURES = new URL('./fixtures/mail/', import.meta.url);
const HEAD =
  'From: Mallory <mallory@sender.test>\r\nTo: support@example.test\r\nMessage-ID: <hostile@sender.test>\r\nMIME-Version: 1.0\r\n';

const text = (value: string) => Buffer.from(value, 'latin1');

function multipart(boundary: string, parts: readonly string[], close = true, subject = 'hostile'): string {
  return (
    `${HEAD}Subject: ${subject}\r\nContent-Type: multipart/mixed; boundary="${boundary}"\r\n\r\n` +
    parts.map((part) => `--${boundary}\r\n${part}\r\n`).join('') +
    (close ? `--${boundary}--\r\n` : '')
  );
}

function attachment(headers: string, content: string): string {
  return `${headers}\r\n\r\n${content}`;
}

/** multipart/mixed nested `depth` times, each level closed or left open. */
function nested(depth: number, close: boolean): string {
  let inner = 'Content-Type: text/plain\r\n\r\nthe innermost text';
  for (let level = depth; level > 0; level--) {
    inner = `Content-Type: multipart/mixed; boundary="n${level}"\r\n\r\n--n${level}\r\n${inner}\r\n${close ? `--n${level}--\r\n` : ''}`;
  }
  return `${HEAD}Subject: nested ${depth}\r\n${inner}`;
}

/** message/rfc822 nested `depth` times (a mail forwarded as an attachment, again and again). */
function rfc822Nested(depth: number, sameId: boolean): string {
  let inner = `${HEAD}Subject: innermost\r\n\r\nhello`;
  for (let level = depth; level > 0; level--) {
    const id = sameId ? 'loop@sender.test' : `level${level}@sender.test`;
    inner =
      `From: <l${level}@sender.test>\r\nMessage-ID: <${id}>\r\nSubject: level ${level}\r\nMIME-Version: 1.0\r\n` +
      `Content-Type: multipart/mixed; boundary="r${level}"\r\n\r\n--r${level}\r\nContent-Type: text/plain\r\n\r\nlevel ${level}\r\n` +
      `--r${level}\r\nContent-Type: message/rfc822\r\n\r\n${inner}\r\n--r${level}--\r\n`;
  }
  return inner;
}

function withCharset(charset: string, where: 'body' | 'header' | 'filename'): string {
  const payload = '+ZeVnLIqe- caf\u00e9 \u00ff\u00fe\u0080 =?x?= %%';
  if (where === 'body') {
    return `${HEAD}Subject: charset ${where}\r\nContent-Type: text/plain; charset="${charset}"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n${payload}\r\n`;
  }
  if (where === 'header') {
    const encoded = Buffer.from(payload, 'latin1').toString('base64');
    return `${HEAD}Subject: =?${charset}?B?${encoded}?= and =?${charset}?Q?caf=E9_=FF?=\r\nContent-Type: text/plain\r\n\r\nbody\r\n`;
  }
  return multipart('C', [
    'Content-Type: text/plain\r\n\r\nsee attached',
    attachment(
      `Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=${charset}''caf%E9%FF%00.txt`,
      'data',
    ),
  ]);
}

function base64Cases(): [string, string][] {
  return [
    ['invalid characters', '!!!!$$$$****'],
    ['wrong padding', 'aGVsbG8===='],
    ['padding in the middle', 'aGVs=bG8gd29y=bGQ='],
    ['truncated quantum', 'aGVsbG8gd29ybGQ'],
    ['whitespace everywhere', 'a G V s\tb G 8 \r\n g d 2 9 y'],
    ['one character', 'a'],
    ['binary bytes', '\u0000\u00ff\u0080\u0001'],
    ['100 KB line without breaks', 'QUJD'.repeat(25_000)],
  ];
}

function qpCases(): [string, string][] {
  return [
    ['bad hex', 'caf=ZZ and =G1'],
    ['equals at the very end', 'dangling ='],
    ['soft break then nothing', 'soft=\r\n=\r\n='],
    ['bare CR soft break', 'line=\rnext'],
    ['1 MB line', `${'=41'.repeat(350_000)}`],
    ['lowercase hex and NUL', 'caf=e9 =00 nul'],
  ];
}

function rfc2231Cases(param: 'filename' | 'name'): [string, string][] {
  const many = Array.from({ length: 10_000 }, (_, i) => `${param}*${i}="p${i}"`).join(';\r\n ');
  return [
    ['continuations out of order', `${param}*2="c.txt"; ${param}*0="a"; ${param}*1="b"`],
    ['missing *0', `${param}*1="b"; ${param}*2="c.txt"`],
    ['huge index only', `${param}*9999999999="x.txt"`],
    ['10,000 segments', many],
    ['mixed encoded and plain', `${param}*0*=utf-8''%E2%82%AC; ${param}*1="plain"; ${param}*2*=%ZZ`],
    ['unknown charset', `${param}*=x-bogus''%41%42.txt`],
    ['broken percent-encoding', `${param}*=utf-8''%G1%2%.txt`],
    ['charset but no value', `${param}*=utf-8''`],
    ['duplicate segments', `${param}*0="a"; ${param}*0="b"; ${param}*1="c"`],
    ['negative index', `${param}*-1="neg.txt"`],
    ['language tag only', `${param}*=''`],
  ];
}

function boundaryCases(): [string, string][] {
  const long = (n: number) => 'b'.repeat(n);
  return [
    [
      'inner boundary extends the outer one',
      `${HEAD}Subject: prefix\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: multipart/alternative; boundary="B1"\r\n\r\n--B1\r\nContent-Type: text/plain\r\n\r\ninner\r\n--B1--\r\n--B--\r\n`,
    ],
    [
      'outer boundary extends the inner one',
      `${HEAD}Subject: prefix\r\nContent-Type: multipart/mixed; boundary="B1"\r\n\r\n--B1\r\nContent-Type: multipart/alternative; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\ninner\r\n--B--\r\n--B1--\r\n`,
    ],
    [
      'same boundary nested',
      `${HEAD}Subject: same\r\nContent-Type: multipart/mixed; boundary="S"\r\n\r\n--S\r\nContent-Type: multipart/mixed; boundary="S"\r\n\r\n--S\r\nContent-Type: text/plain\r\n\r\nx\r\n--S--\r\n--S--\r\n`,
    ],
    [
      'no boundary parameter',
      `${HEAD}Subject: none\r\nContent-Type: multipart/mixed\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n`,
    ],
    [
      'empty boundary',
      `${HEAD}Subject: empty\r\nContent-Type: multipart/mixed; boundary=""\r\n\r\n--\r\n\r\nx\r\n----\r\n`,
    ],
    ['70-character boundary', multipart(long(70), ['Content-Type: text/plain\r\n\r\nx'])],
    ['71-character boundary', multipart(long(71), ['Content-Type: text/plain\r\n\r\nx'])],
    ['200-character boundary', multipart(long(200), ['Content-Type: text/plain\r\n\r\nx'])],
    ['5,000-character boundary', multipart(long(5000), ['Content-Type: text/plain\r\n\r\nx'])],
    ['boundary with spaces and quotes', multipart('a b"c\' d', ['Content-Type: text/plain\r\n\r\nx'])],
    [
      'boundary never used',
      `${HEAD}Subject: unused\r\nContent-Type: multipart/mixed; boundary="U"\r\n\r\nno parts at all\r\n`,
    ],
    [
      'closing delimiter first',
      `${HEAD}Subject: close\r\nContent-Type: multipart/mixed; boundary="X"\r\n\r\n--X--\r\n--X\r\nContent-Type: text/plain\r\n\r\nafter\r\n`,
    ],
    [
      'two boundary parameters',
      `${HEAD}Subject: two\r\nContent-Type: multipart/mixed; boundary="A"; boundary="Z"\r\n\r\n--Z\r\n\r\nz\r\n--A\r\n\r\na\r\n--A--\r\n`,
    ],
    ['boundary with a NUL', multipart('nul\u0000bound', ['Content-Type: text/plain\r\n\r\nx'])],
    [
      '1 MB preamble',
      `${HEAD}Subject: preamble\r\nContent-Type: multipart/mixed; boundary="P"\r\n\r\n${'preamble '.repeat(120_000)}\r\n--P\r\n\r\nx\r\n--P--\r\n`,
    ],
  ];
}

function structureCases(): [string, string][] {
  return [
    ['empty message', ''],
    ['only a blank line', '\r\n'],
    ['body without headers', '\r\nthis body has no header at all\r\n'],
    ['headers without body', `${HEAD}Subject: no body\r\n`],
    [
      'no blank line, text right after headers',
      `${HEAD}Subject: glued\r\nthis is not a header\r\nneither is this`,
    ],
    ['header without colon', `${HEAD}Subject ok\r\nNoColonHere\r\n\r\nbody`],
    ['LF line endings only', `${HEAD}Subject: lf\r\n\r\nbody`.replaceAll('\r\n', '\n')],
    ['CR line endings only', `${HEAD}Subject: cr\r\n\r\nbody`.replaceAll('\r\n', '\r')],
    ['mixed line endings', `From: <a@sender.test>\nTo: support@example.test\rSubject: mixed\r\n\n\rbody\n\r`],
    ['continuation before any header', ` folded first\r\n${HEAD}Subject: fold\r\n\r\nbody`],
    ['raw 8-bit headers', `${HEAD}Subject: \u00e9t\u00e9 \u00ff\u00fe\r\nX-Bin: \u0080\u0081\r\n\r\nbody`],
    ['1 MB single line without CRLF', 'X'.repeat(1024 * 1024)],
    ['NUL in a header name', `${HEAD}Sub\u0000ject: nul name\r\n\r\nbody`],
    ['NUL in a header value', `${HEAD}Subject: nul\u0000value\u0000\r\n\r\nbody`],
    ['NUL in the body', `${HEAD}Subject: nul body\r\n\r\nbefore\u0000\u0000after\r\n`],
    [
      'NUL in the content type',
      `${HEAD}Subject: nul type\r\nContent-Type: text/pl\u0000ain; charset=utf\u00008\r\n\r\nbody`,
    ],
    ['NULs only', '\u0000'.repeat(10_000)],
  ];
}

/**
 * At least 200 hostile messages (deep nesting, 10,000 parts, 1 MB header lines, broken base64 and
 * quoted-printable, bad charsets, zero-byte and 20 MB attachments, RFC 2231 traps, message/rfc822
 * nesting, boundary abuse, NULs, missing headers, random bytes, mangled fixtures). Seeded, so the
 * same seed gives the same corpus.
 */
export function hostileMimeCorpus(seed = 1): HostileMessage[] {
  const rng = createRng(seed);
  const corpus: HostileMessage[] = [];
  const add = (name: string, build: () => string | Buffer) =>
    corpus.push({
      name,
      build: () => {
        const built = build();
        return typeof built === 'string' ? text(built) : built;
      },
    });

  for (const depth of [10, 50, 100, 256, 257, 300, 500, 1000]) {
    add(`multipart nested ${depth} deep, closed`, () => nested(depth, true));
    add(`multipart nested ${depth} deep, never closed`, () => nested(depth, false));
  }
  for (const count of [100, 1000, 5000, 10_000]) {
    add(`${count} empty parts`, () =>
      multipart(
        'P',
        Array.from({ length: count }, () => ''),
      ),
    );
    add(`${count} text parts`, () =>
      multipart(
        'P',
        Array.from({ length: count }, (_, i) => `Content-Type: text/plain\r\n\r\npart ${i}`),
      ),
    );
  }
  const mb = 1024 * 1024;
  add('1 MB Subject line', () => `${HEAD}Subject: ${'s'.repeat(mb)}\r\n\r\nbody`);
  add(
    '1 MB folded Subject',
    () => `${HEAD}Subject: ${'word '.repeat(mb / 5).replace(/(.{70})/g, '$1\r\n ')}\r\n\r\nbody`,
  );
  add(
    'To with 50,000 addresses',
    () =>
      `From: <a@sender.test>\r\nTo: ${Array.from({ length: 50_000 }, (_, i) => `u${i}@example.test`).join(', ')}\r\nSubject: many\r\n\r\nbody`,
  );
  add('20,000 headers', () => `${HEAD}${'X-Spam: yes\r\n'.repeat(20_000)}Subject: headers\r\n\r\nbody`);
  add(
    '1 MB Content-Type parameter',
    () => `${HEAD}Subject: param\r\nContent-Type: text/plain; x="${'p'.repeat(mb)}"\r\n\r\nbody`,
  );
  add('1 MB filename', () =>
    multipart('F', [
      attachment(
        `Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="${'f'.repeat(mb)}"`,
        'x',
      ),
    ]),
  );

  for (const [label, content] of base64Cases()) {
    add(
      `broken base64 text: ${label}`,
      () =>
        `${HEAD}Subject: b64\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n${content}\r\n`,
    );
    add(`broken base64 attachment: ${label}`, () =>
      multipart('B', [
        'Content-Type: text/plain\r\n\r\nsee attached',
        attachment(
          'Content-Type: application/pdf; name="x.pdf"\r\nContent-Transfer-Encoding: base64',
          content,
        ),
      ]),
    );
  }
  for (const [label, content] of qpCases()) {
    add(
      `broken quoted-printable text: ${label}`,
      () =>
        `${HEAD}Subject: qp\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n${content}\r\n`,
    );
    add(`broken quoted-printable attachment: ${label}`, () =>
      multipart('Q', [
        attachment(
          'Content-Type: text/csv; name="x.csv"\r\nContent-Transfer-Encoding: quoted-printable',
          content,
        ),
      ]),
    );
  }
  const charsets = [
    'utf-7',
    'unicode-1-1-utf-7',
    'x-unknown',
    'utf-16',
    'utf-32',
    '',
    'bogus"quote',
    'iso-2022-jp',
    'gb18030',
    'utf-8',
    'c'.repeat(1000),
    'utf8\u0000',
    'x-mac-roman',
    'big5-hkscs',
    '../../etc/passwd',
  ];
  for (const charset of charsets) {
    for (const where of ['body', 'header', 'filename'] as const) {
      add(`charset ${JSON.stringify(charset.slice(0, 20))} in the ${where}`, () =>
        withCharset(charset, where),
      );
    }
  }

  add('zero-byte base64 attachment', () =>
    multipart('Z', [
      attachment(
        'Content-Type: application/octet-stream; name="empty.bin"\r\nContent-Transfer-Encoding: base64',
        '',
      ),
    ]),
  );
  add('zero-byte 7bit attachment', () =>
    multipart('Z', [attachment('Content-Disposition: attachment; filename="empty.txt"', '')]),
  );
  add('zero-byte attachment, no headers', () => multipart('Z', ['Content-Disposition: attachment\r\n']));
  add('20 MB base64 attachment', () => {
    const bytes = Buffer.alloc(20 * mb, 0x5a);
    return multipart('H', [
      'Content-Type: text/plain\r\n\r\nhuge attachment follows',
      attachment(
        'Content-Type: application/octet-stream; name="huge.bin"\r\nContent-Transfer-Encoding: base64',
        bytes.toString('base64').replace(/.{76}/g, '$&\r\n'),
      ),
    ]);
  });
  add('5 MB binary attachment, no line breaks', () =>
    multipart('H', [
      attachment(
        'Content-Type: application/octet-stream; name="bin"\r\nContent-Transfer-Encoding: binary',
        rng.bytes(5 * mb).toString('latin1'),
      ),
    ]),
  );
  for (const filename of [
    '../../../../etc/passwd',
    'C:\\Windows\\System32\\evil.dll',
    'a\u0000b.exe',
    'invoice\u202egpj.exe',
    '\r\nX-Injected: yes',
    '',
    '..',
    'CON',
  ]) {
    add(`attachment named ${JSON.stringify(filename)}`, () =>
      multipart('N', [
        attachment(
          `Content-Disposition: attachment; filename="${filename}"\r\nContent-Type: application/octet-stream`,
          'data',
        ),
      ]),
    );
  }
  add('attachment without any content type', () =>
    multipart('N', [attachment('Content-Disposition: attachment', 'data')]),
  );
  add('garbage disposition', () =>
    multipart('N', [attachment('Content-Disposition: ;;;===;filename', 'data')]),
  );

  for (const param of ['filename', 'name'] as const) {
    for (const [label, value] of rfc2231Cases(param)) {
      add(`RFC 2231 ${param}: ${label}`, () =>
        multipart('R', [
          'Content-Type: text/plain\r\n\r\nsee attached',
          attachment(
            param === 'filename'
              ? `Content-Type: application/octet-stream\r\nContent-Disposition: attachment; ${value}`
              : `Content-Type: application/octet-stream; ${value}`,
            'data',
          ),
        ]),
      );
    }
  }

  for (const depth of [1, 5, 50, 300]) {
    add(`message/rfc822 nested ${depth} deep`, () => rfc822Nested(depth, false));
    add(`message/rfc822 nested ${depth} deep, one Message-ID (a loop)`, () => rfc822Nested(depth, true));
  }
  add('message/rfc822 that repeats its container', () => {
    const outer = `${HEAD}Subject: self\r\nContent-Type: message/rfc822\r\n\r\n`;
    return `${outer.repeat(3)}end`;
  });
  add('message/rfc822, base64 encoded', () =>
    multipart('E', [
      attachment(
        'Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64',
        Buffer.from(rfc822Nested(3, false)).toString('base64'),
      ),
    ]),
  );
  add('message/rfc822, empty', () => multipart('E', [attachment('Content-Type: message/rfc822', '')]));
  add('message/rfc822 with broken inner MIME', () =>
    multipart('E', [
      attachment(
        'Content-Type: message/rfc822',
        `${HEAD}Content-Type: multipart/mixed; boundary="in"\r\n\r\n--in\r\nContent-Type: text/plain; charset=utf-7\r\n\r\n+AGEAYgBj-`,
      ),
    ]),
  );
  for (const type of [
    'message/global',
    'message/partial; id="x"; number=1; total=2',
    'message/external-body; access-type=URL; URL="http://169.254.169.254/"',
    'message/delivery-status',
  ]) {
    add(`${type.split(';')[0]} part`, () =>
      multipart('M', [attachment(`Content-Type: ${type}`, `${HEAD}Subject: inner\r\n\r\ninner`)]),
    );
  }

  // Shapes that once cost a message its delivery, or its batch-mates theirs.
  for (const date of [
    'Mon, 1 Jan 10000 00:00:00 +0000',
    'Sat, 13 Sep 275760 00:00:01 +0000',
    '1 Jan -0001 00:00:00',
  ]) {
    add(`Date ${JSON.stringify(date)}`, () => `${HEAD}Subject: far date\r\nDate: ${date}\r\n\r\nbody`);
  }
  add('25 DKIM signatures of 25 domains', () => {
    const signatures = Array.from(
      { length: 25 },
      (_, i) =>
        `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=d${i}.sender.test; s=s1; h=from:to:subject; bh=${'A'.repeat(43)}=; b=${'B'.repeat(171)}=\r\n`,
    );
    return `${signatures.join('')}${HEAD}Subject: signed 25 times\r\n\r\nbody`;
  });
  add('6 MiB of control characters as text', () => {
    const line = String.fromCharCode(
      ...Array.from({ length: 998 }, (_, i) => [1, 2, 7, 8, 11, 12, 27, 31][i % 8]!),
    );
    return `${HEAD}Subject: noise\r\nContent-Type: text/plain\r\n\r\n${`${line}\r\n`.repeat(6 * 1049)}`;
  });
  add('990 attachments with long names', () =>
    multipart(
      'A',
      Array.from({ length: 990 }, (_, i) =>
        attachment(
          `Content-Disposition: attachment; filename="file-${i}-${'n'.repeat(80)}.txt"`,
          `file ${i}`,
        ),
      ),
    ),
  );
  add('HTML beside an attachment, no text part', () =>
    multipart('H', [
      'Content-Type: text/html\r\n\r\n<p>Only <b>HTML</b> here</p>',
      attachment('Content-Type: application/pdf; name="a.pdf"', '%PDF-1.4'),
    ]),
  );
  add('U+FFFF and U+FFFE in headers and body', () =>
    Buffer.from(
      `${HEAD}Subject: non\uffffchar\ufffe\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbody \uffff \ufffe\r\n`,
      'utf8',
    ),
  );

  for (const [label, message] of boundaryCases()) add(`boundary: ${label}`, () => message);
  for (const [label, message] of structureCases()) add(label, () => message);

  for (let i = 0; i < 20; i++) {
    const size = 1 + rng.int(20_000);
    const bytes = rng.bytes(size);
    add(`random bytes #${i} (${size} bytes)`, () => bytes);
  }
  for (const file of readdirSync(FIXTURES)
    .filter((name) => name.endsWith('.eml'))
    .sort()) {
    const cut = rng.next();
    const flips = Array.from({ length: 20 }, () => [rng.next(), rng.int(256)] as const);
    add(`mangled fixture ${file}`, () => {
      const original = readFileSync(new URL(file, FIXTURES));
      const mangled = Buffer.from(
        original.subarray(0, Math.max(1, Math.floor(original.length * (0.3 + 0.7 * cut)))),
      );
      for (const [at, value] of flips) mangled[Math.floor(at * mangled.length)] = value;
      return mangled;
    });
  }
  return corpus;
}
