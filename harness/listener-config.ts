import { type Config, type ConfigInput, parseConfig } from '../core/index.ts';
import { generateSelfSigned, type TlsMaterial } from '../listener/index.ts';

export const USER = 'alice';
export const PASSWORD = 'correct horse battery staple';

let tlsMaterial: Promise<TlsMaterial> | undefined;
/** One self-signed pair for the whole test process. */
export function testTls(): Promise<TlsMaterial> {
  tlsMaterial ??= generateSelfSigned('mx.mailbridge.test');
  return tlsMaterial;
}

/** A config with the three modes on port 0; `example.test` takes anything, `strict.test` only `known@`. */
export function testConfig(overrides: Partial<ConfigInput> = {}): Config {
  return parseConfig(
    {
      hostname: 'mx.mailbridge.test',
      domains: ['example.test', 'strict.test'],
      routes: [
        {
          id: 'all',
          match: ['*@example.test', 'known@strict.test'],
          endpoints: ['http://127.0.0.1:1/hook'],
          secret: { value: 'whsec_dGVzdA==' },
        },
      ],
      listeners: [
        { host: '127.0.0.1', port: 0, mode: 'mx' },
        { host: '127.0.0.1', port: 0, mode: 'submission' },
        { host: '127.0.0.1', port: 0, mode: 'implicit-tls' },
      ],
      health: { host: '127.0.0.1', port: 0 },
      auth: { users: [{ user: USER, password: { value: PASSWORD } }] },
      ...overrides,
    },
    { source: 'test', runtime: 'local' },
  );
}
