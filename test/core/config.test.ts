import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { configReaders } from '../../core/aws/index.ts';
import { ConfigError, loadConfig, parseConfigText } from '../../core/index.ts';

const fileReader = configReaders();

const minimal = (overrides: string) => `
domains: [example.test]
listeners: [{ port: 2525, mode: mx }]
health: { port: 8026 }
tls: { source: files, certFile: cert.pem, keyFile: key.pem }
${overrides}`;

function configIssues(text: string, runtime: 'local' | 'aws' = 'local'): readonly string[] {
  try {
    parseConfigText(text, { source: 'test.yaml', runtime });
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.issues;
  }
  assert.fail('expected a ConfigError');
}

describe('config', () => {
  it('loads the local default config with defaults filled in', async () => {
    const config = await loadConfig('dev/mailbridge.yaml', 'local', fileReader);
    assert.deepEqual(config.domains, ['localhost', 'example.test']);
    assert.equal(config.limits.maxRecipients, 100);
    assert.deepEqual(config.routes[0]!.retrySchedule, [5, 300, 1800, 7200, 18000, 36000, 36000]);
    assert.equal(config.routes[0]!.secret.length, 1);
  });

  it('names the bad field by its path', () => {
    const issues = configIssues(
      minimal(
        `routes: [{ id: r1, match: ['*@example.test'], endpoints: ['https://a.test/'], secret: { value: whsec_x }, retrySchedule: [5s, soon] }]`,
      ),
    );
    assert.deepEqual(issues, ['routes[0].retrySchedule[1]: not a duration: "soon" (use 5s, 30m, 2h, 1d)']);
  });

  it('refuses plain http to a non-loopback host, and inline secrets in AWS', () => {
    const route = `routes: [{ id: r1, match: ['*@example.test'], endpoints: ['http://api.example.test/hook'], secret: { value: whsec_x } }]`;
    assert.deepEqual(configIssues(minimal(route), 'aws'), [
      'routes[0].endpoints[0]: must be https:// (plain http:// only for loopback in local runs)',
      'routes[0].secret[0]: inline secrets are for local runs only',
    ]);
  });

  it('takes a dev DNS zone in local runs only', () => {
    const route = `routes: [{ id: r1, match: ['*@example.test'], endpoints: ['https://hooks.example.com/in'], secret: { env: S } }]`;
    const withZone = `${route}\ndev: { dnsZone: zone.yaml }`;
    assert.equal(
      parseConfigText(minimal(withZone), { source: 'x', runtime: 'local' }).dev.dnsZone,
      'zone.yaml',
    );
    assert.deepEqual(configIssues(minimal(withZone), 'aws'), [
      'dev.dnsZone: local runs only; in AWS, SPF, DKIM and DMARC are checked against the real DNS',
    ]);
    assert.doesNotThrow(() => parseConfigText(minimal(route), { source: 'x', runtime: 'aws' }));
  });

  it('allows http to loopback only in local runs', () => {
    const route = `routes: [{ id: r1, match: ['*@example.test'], endpoints: ['http://127.0.0.1:8025/webhooks'], secret: { env: SECRET } }]`;
    assert.deepEqual(configIssues(minimal(route), 'aws'), [
      'routes[0].endpoints[0]: must be https:// (plain http:// only for loopback in local runs)',
      'routes[0].endpoints[0]: 127.0.0.1 is not a public address (range loopback); webhooks go to public endpoints only',
    ]);
    assert.doesNotThrow(() => parseConfigText(minimal(route), { source: 'x.yaml', runtime: 'local' }));
  });

  it('rejects unknown keys, duplicate route ids and broken patterns', () => {
    const routes = `routes:
  - { id: r1, match: ['/[/'], endpoints: ['https://a.test/'], secret: { env: S } }
  - { id: r1, match: ['nodomain'], endpoints: ['https://a.test/'], secret: { env: S } }`;
    const issues = configIssues(minimal(routes));
    assert.ok(issues.includes('routes[1].id: duplicate route id "r1"'), issues.join('\n'));
    assert.ok(issues.some((issue) => issue.startsWith('routes[0].match[0]: bad pattern')));
    assert.ok(issues.includes('routes[1].match[0]: expected local@domain, *@domain or /regex/'));
    assert.deepEqual(configIssues(`${minimal('routes: []')}\ncolour: blue`), [
      'routes: Too small: expected array to have >=1 items',
      '(root): unknown key "colour"',
    ]);
  });

  it('refuses a catch-all whose domain has a "*", which would match no mail, and keeps JavaScript regexes', () => {
    const route = (match: string) =>
      minimal(
        `routes: [{ id: r1, match: ['${match}'], endpoints: ['https://a.test/'], secret: { env: S } }]`,
      );
    assert.deepEqual(configIssues(route('*@*')), [
      'routes[0].match[0]: "*@*" would match no mail: a catch-all "*@domain" names one domain, without "*"',
    ]);
    assert.equal(configIssues(route('*@*.example.test')).length, 1);
    // Operator-written, run by JavaScript's engine as before: lookahead is fine here.
    const file = parseConfigText(route('/^(?!noreply)[a-z]+@example\\.test$/'), {
      source: 'x',
      runtime: 'local',
    });
    assert.equal(file.routes[0]!.match[0], '/^(?!noreply)[a-z]+@example\\.test$/');
  });

  it('refuses a route timeout the deliver function has no time for, and a schedule that outlives the queue', () => {
    const route = (extra: string) =>
      `routes: [{ id: r1, match: ['*@example.test'], endpoints: ['https://a.test/'], secret: { env: S }, ${extra} }]`;
    assert.deepEqual(configIssues(minimal(route('timeout: 51s'))), [
      "routes[0].timeout: at most 50s, so a try fits in the deliver function's 60s",
    ]);
    assert.doesNotThrow(() =>
      parseConfigText(minimal(route('timeout: 50s')), { source: 'x', runtime: 'local' }),
    );
    const schedule = (n: number) =>
      route(`retrySchedule: [${Array.from({ length: n }, () => '1s').join(', ')}]`);
    assert.doesNotThrow(() => parseConfigText(minimal(schedule(28)), { source: 'x', runtime: 'local' }));
    assert.deepEqual(configIssues(minimal(schedule(29))), [
      "routes[0].retrySchedule: 29 retries can outlive the delivery queue's 14-day retention (each wait may be stretched to ~12 h by Retry-After), and the job would expire without a DLQ entry; use at most 28",
    ]);
  });

  it('refuses private, loopback, link-local and metadata endpoints for AWS', () => {
    const endpoints = [
      'https://10.1.2.3/hook',
      'https://172.16.0.1/hook',
      'https://192.168.1.1/hook',
      'https://127.0.0.1/hook',
      'https://2130706433/hook',
      'https://0x7f000001/hook',
      'https://169.254.169.254/latest/meta-data/',
      'https://[fd00:ec2::254]/',
      'https://[::1]/hook',
      'https://[::ffff:10.0.0.1]/hook',
      'https://[fe80::1]/hook',
      'https://100.64.0.1/hook',
      'https://0.0.0.0/hook',
      'https://localhost/hook',
      'https://app.localhost/hook',
      'https://metadata.google.internal/computeMetadata/v1/',
      'https://instance-data/latest/',
    ];
    const route = `routes: [{ id: r1, match: ['*@example.test'], endpoints: [${endpoints.map((e) => `'${e}'`).join(', ')}], secret: { env: S } }]`;
    const issues = configIssues(minimal(route), 'aws');
    assert.equal(issues.length, endpoints.length, issues.join('\n'));
    for (const [e, issue] of issues.entries()) {
      assert.match(
        issue,
        new RegExp(`^routes\\[0\\]\\.endpoints\\[${e}\\]: .* webhooks go to public endpoints only$`),
      );
    }
    const publicRoute = `routes: [{ id: r1, match: ['*@example.test'], endpoints: ['https://hooks.example.com/in', 'https://8.8.8.8/in', 'https://[2606:4700::1111]/in'], secret: { env: S } }]`;
    assert.doesNotThrow(() => parseConfigText(minimal(publicRoute), { source: 'x', runtime: 'aws' }));
  });

  it('reports a file that is not YAML or JSON, and one that is missing', async () => {
    assert.match(configIssues('{ "domains": [')[0]!, /^\(file\): not valid JSON or YAML/);
    await assert.rejects(loadConfig('does/not/exist.yaml', 'local', fileReader), /cannot read/);
  });
});

describe('config errors a person can act on', () => {
  it('names the three forms of a secret reference', () => {
    const forms =
      'a secret is one of { value: "…" } (the secret itself, local runs only), { env: "VARIABLE_NAME" }, { secretsManager: "name or ARN", jsonKey?: "key" }';
    assert.deepEqual(
      configIssues(
        minimal(`routes: [{ id: r1, match: ['*@example.test'], endpoints: ['https://a.test/'], secret: whsec_x }]
auth: { users: [{ user: dev, password: hunter2 }] }`),
      ),
      [
        `routes[0].secret: ${forms}, or a list of them; got a string`,
        `auth.users[0].password: ${forms}; got a string`,
      ],
    );
  });

  it('suggests the key meant for a misspelt one', () => {
    assert.deepEqual(
      configIssues(
        minimal(`routes: [{ id: r1, match: ['*@example.test'], endpoint: ['https://a.test/'], secret: { value: whsec_x } }]
limits: { maxConnection: 5, colour: blue }`),
      ),
      [
        'routes[0].endpoints: Invalid input: expected array, received undefined',
        'routes[0]: unknown key "endpoint"; did you mean "endpoints"?',
        'limits: unknown key "maxConnection"; did you mean "maxConnections"?',
        'limits: unknown key "colour"',
      ],
    );
  });
});
