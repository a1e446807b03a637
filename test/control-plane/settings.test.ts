import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, controlPlaneSettings, ENV, parseConfig } from '../../core/index.ts';

const base = {
  hostname: 'mx.mailbridge.test',
  domains: ['example.test'],
  routes: [
    { id: 'all', match: ['*@example.test'], endpoints: ['https://hooks.example.com/'], secret: { env: 'S' } },
  ],
  listeners: [{ port: 0, mode: 'mx' }],
  health: { port: 0 },
  tls: { source: 'files', certFile: 'cert.pem', keyFile: 'key.pem' },
};

describe('config: the controlPlane section', () => {
  it('defaults: the local table name, unverified API domains refused, the MX host is the hostname, the raw mail lifecycle', () => {
    const config = parseConfig(base, { source: 'test', runtime: 'aws' });
    assert.deepEqual(config.controlPlane, {
      tableName: 'mailbridge-control',
      acceptUnverifiedDomains: false,
    });
    assert.deepEqual(controlPlaneSettings(config, {}), {
      tableName: 'mailbridge-control',
      retentionDays: 30,
      acceptUnverifiedDomains: false,
      mxHost: 'mx.mailbridge.test',
    });
  });

  it("takes the deployment's table and the raw mail's lifecycle from the environment", () => {
    const config = parseConfig(base, { source: 'test', runtime: 'aws' });
    const env = { [ENV.controlTable]: 'Stack-ControlTable-1X2Y', [ENV.controlRetentionDays]: '90' };
    const settings = controlPlaneSettings(config, env);
    assert.equal(settings.tableName, 'Stack-ControlTable-1X2Y');
    assert.equal(settings.retentionDays, 90);
    assert.equal(settings.mxHost, 'mx.mailbridge.test');
  });

  it('a retention written in the file is refused in AWS (the raw mail would expire first) and wins locally', () => {
    const document = { ...base, controlPlane: { retentionDays: 7, mxHost: 'in.example.com' } };
    assert.throws(
      () => parseConfig(document, { source: 'test', runtime: 'aws' }),
      (error) =>
        error instanceof ConfigError &&
        error.issues.includes(
          "controlPlane.retentionDays: local runs only; in AWS the log keeps a message as long as its raw mail, the stack's storage.rawDays",
        ),
    );
    const local = parseConfig(document, { source: 'test', runtime: 'local' });
    const env = { [ENV.controlRetentionDays]: '90' };
    assert.equal(controlPlaneSettings(local, env).retentionDays, 7);
    assert.equal(controlPlaneSettings(local, env).mxHost, 'in.example.com');
  });

  it('names a bad retention variable', () => {
    const config = parseConfig(base, { source: 'test', runtime: 'aws' });
    assert.throws(
      () => controlPlaneSettings(config, { [ENV.controlRetentionDays]: '1.5' }),
      (error) =>
        error instanceof ConfigError &&
        error.issues[0] === 'MAILBRIDGE_CONTROL_RETENTION_DAYS: whole days, at least 1; got "1.5"',
    );
  });

  it('accepting unverified API domains is refused in AWS, allowed locally', () => {
    const document = { ...base, controlPlane: { acceptUnverifiedDomains: true } };
    assert.throws(
      () => parseConfig(document, { source: 'test', runtime: 'aws' }),
      (error) =>
        error instanceof ConfigError &&
        error.issues.includes(
          'controlPlane.acceptUnverifiedDomains: local runs only; in AWS a domain takes mail once its DNS proof is checked',
        ),
    );
    const local = parseConfig(document, { source: 'test', runtime: 'local' });
    assert.equal(local.controlPlane.acceptUnverifiedDomains, true);
  });

  it('names an unknown key of the section', () => {
    assert.throws(
      () => parseConfig({ ...base, controlPlane: { retentionDay: 3 } }, { source: 'test', runtime: 'local' }),
      (error) =>
        error instanceof ConfigError &&
        error.issues[0] === 'controlPlane: unknown key "retentionDay"; did you mean "retentionDays"?',
    );
  });
});
