import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { type Config, ConfigError, type Runtime, type SecretStringReader } from '../core/index.ts';

/** A PEM certificate chain and its private key. */
export interface TlsMaterial {
  readonly key: string | Buffer;
  readonly cert: string | Buffer;
}

/** Where {@link loadTlsMaterial} finds what it needs besides the config. */
export interface TlsSources {
  readonly runtime: Runtime;
  /** Reads the `secrets-manager` source; required only for it. */
  readonly secretsManager?: SecretStringReader;
  /** Folder for local state; the self-signed pair lives in `<dataDir>/tls/`. */
  readonly dataDir: string;
}

const SELF_SIGNED_DAYS = 825;

async function readSelfSigned(dir: string): Promise<TlsMaterial | undefined> {
  try {
    const [key, cert] = await Promise.all([
      readFile(join(dir, 'key.pem'), 'utf8'),
      readFile(join(dir, 'cert.pem'), 'utf8'),
    ]);
    return { key, cert };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** A self-signed pair for `hostname`, `localhost` and the loopback addresses. */
export async function generateSelfSigned(hostname: string): Promise<TlsMaterial> {
  const now = new Date();
  const pair = await generate([{ name: 'commonName', value: hostname }], {
    // RSA: selfsigned 5.5's EC path fails with the @peculiar/asn1 copies npm installs next to it.
    keyType: 'rsa',
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate: now,
    notAfterDate: new Date(now.getTime() + SELF_SIGNED_DAYS * 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: hostname },
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  });
  return { key: pair.private, cert: pair.cert };
}

/** Parses the Secrets Manager TLS secret, a JSON object `{ "cert": PEM, "key": PEM }`. */
export function parseTlsSecret(text: string, secretId: string): TlsMaterial {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ConfigError(secretId, ['tls.secretId: the secret is not JSON {"cert","key"}']);
  }
  const { cert, key } = (parsed ?? {}) as { cert?: unknown; key?: unknown };
  if (typeof cert !== 'string' || typeof key !== 'string') {
    throw new ConfigError(secretId, ['tls.secretId: the secret needs string fields "cert" and "key"']);
  }
  return { cert, key };
}

/**
 * Loads the listener's certificate and key as `config.tls` says: `self-signed` makes a pair at the
 * first local start and keeps it in `<dataDir>/tls/` (reused after, so clients can pin it),
 * `files` reads PEM files, `secrets-manager` reads a JSON secret `{cert, key}`.
 */
export async function loadTlsMaterial(config: Config, sources: TlsSources): Promise<TlsMaterial> {
  const tls = config.tls;
  if (tls.source === 'files') {
    try {
      const [key, cert] = await Promise.all([readFile(tls.keyFile), readFile(tls.certFile)]);
      return { key, cert };
    } catch (error) {
      throw new ConfigError('tls', [`tls: cannot read the certificate files: ${(error as Error).message}`], {
        cause: error,
      });
    }
  }
  if (tls.source === 'secrets-manager') {
    if (!sources.secretsManager) {
      throw new ConfigError('tls', ['tls.secretId: no Secrets Manager client in this runtime']);
    }
    return parseTlsSecret(await sources.secretsManager(tls.secretId), tls.secretId);
  }
  if (sources.runtime !== 'local')
    throw new ConfigError('tls', ['tls.source: self-signed is for local runs only']);
  const dir = join(sources.dataDir, 'tls');
  const existing = await readSelfSigned(dir);
  if (existing) return existing;
  const made = await generateSelfSigned(config.hostname);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'key.pem'), made.key, { mode: 0o600 });
  await writeFile(join(dir, 'cert.pem'), made.cert);
  return made;
}
