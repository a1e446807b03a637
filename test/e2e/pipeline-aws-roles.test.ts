import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import nodemailer from 'nodemailer';
import type { InboundEvent } from '../../core/index.ts';
import type { TestEmulator } from '../../harness/emulator.ts';
import { type PolicyStatement, queueArn } from '../../harness/iam-policy.ts';
import { type Pipeline, startPipeline } from '../../harness/pipeline.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../harness/webhook-receiver.ts';
import { type DeployedRole, synthesizedRoles } from '../deployed/roles.ts';

const SECRET = 'whsec_cm9sZXMtbWlzc2luZy1hLWdyYW50';

/** The synthesized roles with one action taken out of `role`'s statements on `resource`, as if `infra/` had lost that grant. */
function withoutGrant(
  roles: Record<DeployedRole, PolicyStatement[]>,
  role: DeployedRole,
  action: string,
  resource: string,
): Record<DeployedRole, PolicyStatement[]> {
  let removed = 0;
  const statements = roles[role].flatMap((statement) => {
    const actions = [statement.Action].flat();
    const resources = [statement.Resource].flat();
    if (!actions.includes(action) || !resources.includes(resource)) return [statement];
    removed++;
    const split: PolicyStatement[] = [];
    const rest = actions.filter((a) => a !== action);
    if (rest.length) split.push({ ...statement, Action: rest });
    const others = resources.filter((r) => r !== resource);
    if (others.length) split.push({ ...statement, Resource: others });
    return split;
  });
  assert.ok(removed > 0, `${role} was granted ${action} on ${resource}`);
  return { ...roles, [role]: statements };
}

const MESSAGE = 'From: ann@sender.test\r\nTo: help@example.test\r\nSubject: lost grant\r\n\r\nbody\r\n';

/**
 * The pipeline with the roles the synthesized app gives each part, less one grant: the proof that
 * the end-to-end run through IAM is not vacuous, and that a missing grant loses no mail.
 */
describe('end to end through IAM, a role missing one grant', () => {
  let receiver: WebhookReceiver;
  let pipeline: Pipeline | undefined;

  const start = async (lose: (emulator: TestEmulator) => [DeployedRole, string, string]) => {
    receiver = await startWebhookReceiver({ secret: SECRET });
    pipeline = await startPipeline({
      aws: (emulator) => ({ roles: withoutGrant(synthesizedRoles(emulator), ...lose(emulator)) }),
      routes: [
        { id: 'help', match: ['*@example.test'], endpoints: [receiver.url], secret: { value: SECRET } },
      ],
      inboundVisibilitySeconds: 1,
    });
    return pipeline;
  };

  afterEach(async () => {
    await pipeline?.close();
    await receiver?.close();
    pipeline = undefined;
  });

  it('parse without sqs:SendMessage on the delivery queue: refused, retried, dead-lettered, never delivered', async () => {
    const p = await start(({ resources }) => [
      'parse',
      'sqs:SendMessage',
      queueArn(resources.deliveryQueueUrl),
    ]);
    const [event] = await p.injectBatch([{ raw: MESSAGE, rcptTo: ['help@example.test'] }]);
    const dead: InboundEvent[] = [];
    const deadline = Date.now() + 20_000;
    while (dead.length === 0 && Date.now() < deadline) {
      const { Messages = [] } = await p.emulator.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: p.emulator.resources.inboundDlqUrl, WaitTimeSeconds: 1 }),
      );
      dead.push(...Messages.map((message) => JSON.parse(message.Body!) as InboundEvent));
    }
    assert.deepEqual(
      dead.map((entry) => entry.id),
      [event!.id],
      'the event is in the inbound DLQ, not lost',
    );
    const refused = p.proxy.denials.filter((denial) => denial.role === 'parse');
    assert.ok(refused.length >= 2, 'tried again after the refusal');
    assert.deepEqual(
      new Set(refused.map(({ action, resource }) => `${action} ${resource}`)),
      new Set([`sqs:SendMessage ${queueArn(p.emulator.resources.deliveryQueueUrl)}`]),
    );
    await delay(200);
    assert.equal(receiver.unique.size, 0);
  });

  it('listener without s3:PutObject on raw/: SMTP answers 4xx, never 250, and queues nothing', async () => {
    const p = await start(({ resources }) => [
      'listener',
      's3:PutObject',
      `arn:aws:s3:::${resources.bucket}/raw/*`,
    ]);
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: p.smtpPort,
      secure: false,
      tls: { rejectUnauthorized: false },
    });
    try {
      await assert.rejects(
        transport.sendMail({ from: 'ann@sender.test', to: 'help@example.test', subject: 'x', text: 'x' }),
        (error: { responseCode?: number }) => {
          assert.equal(Math.floor((error.responseCode ?? 0) / 100), 4, String(error.responseCode));
          return true;
        },
      );
    } finally {
      transport.close();
    }
    assert.deepEqual(
      [...new Set(p.proxy.denials.map(({ role, action }) => `${role} ${action}`))],
      ['listener s3:PutObject'],
    );
    const { Messages = [] } = await p.emulator.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: p.emulator.resources.inboundQueueUrl, WaitTimeSeconds: 1 }),
    );
    assert.deepEqual(Messages, []);
  });
});
