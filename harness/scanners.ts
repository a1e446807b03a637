import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A scanner daemon started by a test on 127.0.0.1, in its own process group and temporary folder. */
export interface RunningScanner {
  readonly host: string;
  readonly port: number;
  /** From spawn to the first answered ping. */
  readonly startupMs: number;
  /** Its process group (the daemon and the workers it forks), for measuring what they use. */
  readonly processGroup: number;
  /** SIGKILL to the whole process group: the scanner dies mid-run, as an OOM kill would do it. */
  kill(): void;
  /** SIGTERM, then SIGKILL after a grace period; removes the folder. */
  stop(): Promise<void>;
}

/**
 * The EICAR anti-virus test file (eicar.org), kept reversed so that no scanner on a developer's
 * machine quarantines this source file.
 */
export const EICAR = Buffer.from(
  '*H+H$!ELIF-TSET-SURIVITNA-DRADNATS-RACIE$}7)CC7)^P(45XZP\\4[PA@%P!O5X'.split('').reverse().join(''),
  'latin1',
);

/** The GTUBE spam test string: rspamd scores a message that has it in a text part as spam. */
export const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

function which(name: string, fallbacks: readonly string[]): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    // clamd lives in /usr/sbin, which is not on every user's PATH.
    return fallbacks.find((path) => existsSync(path));
  }
}

/** The scanner binaries, from `RSPAMD_BIN` / `CLAMD_BIN` or the PATH (Debian: rspamd, clamav-daemon). */
export const SCANNER_BINARIES = {
  rspamd: process.env.RSPAMD_BIN ?? which('rspamd', ['/usr/bin/rspamd']),
  clamd: process.env.CLAMD_BIN ?? which('clamd', ['/usr/sbin/clamd']),
};

/**
 * `skip` option for a test that needs a scanner: skipped when it is not installed, except in CI,
 * where a missing package must fail the run rather than hide behind a skip.
 */
export function skipUnless(scanner: keyof typeof SCANNER_BINARIES): string | false {
  if (SCANNER_BINARIES[scanner] || process.env.CI) return false;
  return `${scanner} is not installed (Debian: apt-get install ${scanner === 'rspamd' ? 'rspamd' : 'clamav-daemon'})`;
}

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

async function waitFor(ready: () => Promise<boolean>, child: ChildProcess, what: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode} before it was ready`);
    if (await ready()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`${what} not ready within ${timeoutMs} ms`);
}

function tcpAnswer(port: number, request: Buffer | string, expect: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    socket.setTimeout(1000, () => socket.destroy());
    socket.on('connect', () => socket.write(request));
    socket.on('data', (data) => {
      reply += data.toString('latin1');
      if (reply.includes(expect)) {
        socket.destroy();
        resolve(true);
      }
    });
    socket.on('error', () => resolve(false));
    socket.on('close', () => resolve(false));
  });
}

async function run(
  what: string,
  binary: string | undefined,
  args: (port: number, dir: string) => Promise<string[]>,
  ping: (port: number) => Promise<boolean>,
): Promise<RunningScanner> {
  if (!binary) throw new Error(`${what} is not installed`);
  const dir = await mkdtemp(join(tmpdir(), `mailbridge-${what}-`));
  const port = await freePort();
  const started = performance.now();
  const child = spawn(binary, await args(port, dir), { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (data) => {
    stderr = (stderr + data.toString()).slice(-4000);
  });
  const signal = (name: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      try {
        process.kill(-child.pid, name);
      } catch {
        // Already gone.
      }
    }
  };
  try {
    await waitFor(() => ping(port), child, what, 60_000);
  } catch (error) {
    signal('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw new Error(`${(error as Error).message}\n${stderr}`);
  }
  const startupMs = performance.now() - started;
  return {
    host: '127.0.0.1',
    port,
    startupMs,
    processGroup: child.pid!,
    kill: () => signal('SIGKILL'),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        signal('SIGTERM');
        const grace = setTimeout(() => signal('SIGKILL'), 3000);
        await exited;
        clearTimeout(grace);
        // The workers of rspamd may outlive their main process by a moment.
        signal('SIGKILL');
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// Modules that reach the network (DNS lists, fuzzy hashes, map downloads, Redis-backed state) or
// check DNS facts of the client: offline they only add time and false positives.
const OFFLINE_DISABLED = [
  'arc',
  'asn',
  'dkim',
  'dmarc',
  'emails',
  'fuzzy_check',
  'hfilter',
  'once_received',
  'phishing',
  'rbl',
  'reputation',
  'rspamd_update',
  'spf',
  'url_redirector',
  'whitelist',
];

/**
 * rspamd (Debian 3.4) on 127.0.0.1 with one normal worker, no controller, no Redis and every
 * network-based module off. Its configuration, database, run and log folders are all under one
 * temporary folder. A short TLD list keeps the start near a second: compiling the full public
 * suffix list takes rspamd ~15 s at each start with an empty database folder.
 */
export function startRspamd(options: { workers?: number } = {}): Promise<RunningScanner> {
  return run(
    'rspamd',
    SCANNER_BINARIES.rspamd,
    async (port, dir) => {
      const local = join(dir, 'local');
      await mkdir(join(local, 'local.d'), { recursive: true });
      for (const folder of ['db', 'run', 'log']) await mkdir(join(dir, folder));
      for (const module of OFFLINE_DISABLED) {
        await writeFile(join(local, 'local.d', `${module}.conf`), 'enabled = false;\n');
      }
      await writeFile(join(dir, 'tld.dat'), 'com\nnet\norg\nexample\ntest\ninvalid\n');
      await writeFile(
        join(dir, 'rspamd.conf'),
        `.include "$CONFDIR/common.conf"
options {
  pidfile = "$RUNDIR/rspamd.pid";
  filters = "chartable,regexp";
  url_tld = "${join(dir, 'tld.dat')}";
  hs_cache_dir = "$DBDIR/";
  allow_raw_input = true;
  # Nothing answers there: any DNS query left fails at once instead of timing out.
  dns { nameserver = ["127.0.0.1:9"]; timeout = 0.1s; retransmits = 1; }
}
logging { type = "console"; level = "error"; }
worker "normal" { bind_socket = "127.0.0.1:${port}"; count = ${options.workers ?? 1}; mime = true; }
`,
      );
      const asRoot = process.getuid?.() === 0 ? ['-u', 'root', '-g', 'root', '-i'] : [];
      return [
        '-f',
        '-c',
        join(dir, 'rspamd.conf'),
        ...asRoot,
        `--var=LOCAL_CONFDIR=${local}`,
        `--var=DBDIR=${join(dir, 'db')}`,
        `--var=RUNDIR=${join(dir, 'run')}`,
        `--var=LOGDIR=${join(dir, 'log')}`,
      ];
    },
    (port) => tcpAnswer(port, 'GET /ping HTTP/1.0\r\n\r\n', 'pong'),
  );
}

/**
 * clamd (Debian 1.4.6) on 127.0.0.1 with a one-signature database made here: the MD5 of the EICAR
 * file, in the `md5:size:name` form `sigtool --md5` prints (.hdb), so a decoded MIME attachment that
 * is the EICAR file is found. freshclam cannot reach its mirrors from a test.
 */
export function startClamd(options: { streamMaxBytes?: number } = {}): Promise<RunningScanner> {
  return run(
    'clamd',
    SCANNER_BINARIES.clamd,
    async (port, dir) => {
      const db = join(dir, 'db');
      await mkdir(db);
      const md5 = createHash('md5').update(EICAR).digest('hex');
      await writeFile(join(db, 'test.hdb'), `${md5}:${EICAR.length}:Eicar-Test-Signature\n`);
      const streamMax = options.streamMaxBytes ?? 64 * 1024 * 1024;
      await writeFile(
        join(dir, 'clamd.conf'),
        [
          'Foreground yes',
          `DatabaseDirectory ${db}`,
          `TemporaryDirectory ${dir}`,
          `PidFile ${join(dir, 'clamd.pid')}`,
          'TCPAddr 127.0.0.1',
          `TCPSocket ${port}`,
          'ScanMail yes',
          'ScanArchive yes',
          `StreamMaxLength ${streamMax}`,
          `MaxScanSize ${streamMax * 2}`,
          `MaxFileSize ${streamMax}`,
          '',
        ].join('\n'),
      );
      return ['-c', join(dir, 'clamd.conf')];
    },
    (port) => tcpAnswer(port, 'zPING\0', 'PONG'),
  );
}
