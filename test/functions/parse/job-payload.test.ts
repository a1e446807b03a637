import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { deriveStatus, newDomainClaim } from '../../../core/control/index.ts';
import {
  billedSqsRequests,
  type DeliveryJob,
  INLINE_JOB_BYTES,
  payloadKey,
  QUEUE_SETTINGS,
  SQS_LIMITS,
  sqsJson,
} from '../../../core/index.ts';
import { emulatorClients } from '../../../dev/index.ts';
import { startTestControlStore, type TestControlStore } from '../../../harness/control-store.ts';
import { startFaultProxy } from '../../../harness/fault-proxy.ts';
import { sqsEvent, sqsRecord } from '../../../harness/sqs-event.ts';
import { type ParseHarness, startParseHarness } from './harness.ts';

/** A plain message to support@ whose body is `lines` lines of 75 letters. */
function message(lines: number, subject = 'sized'): string {
  const line = `${'a'.repeat(75)}\r\n`;
  return `From: Bob <bob@sender.test>\r\nTo: support@example.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@sender.test>\r\n\r\n${line.repeat(lines)}`;
}

const jobBytes = (job: DeliveryJob) => Buffer.byteLength(sqsJson(job));

// One parse harness and control store for the file: each test drains what it queued.
describe('parse with the control plane', () => {
  let h: ParseHarness;
  let control: TestControlStore;

  before(async () => {
    h = await startParseHarness();
    control = await startTestControlStore();
  });
  after(async () => {
    await control.close();
    await h.close();
  });

  describe('the webhook payload inside the delivery job, or in S3 when the job would not fit', () => {
    it('billed SQS requests: one per 64 KiB chunk of a body', () => {
      assert.equal(billedSqsRequests(0), 1);
      assert.equal(billedSqsRequests(10 * 1024), 1);
      assert.equal(billedSqsRequests(64 * 1024), 1);
      assert.equal(billedSqsRequests(64 * 1024 + 1), 2);
      assert.equal(billedSqsRequests(SQS_LIMITS.messageBytes), 16);
    });

    it('inline up to the limit, one line more goes to S3; both deliver the same document shape', async () => {
      const parse = h.handler();
      // Two probes give the job's size as a function of the body's line count (it is linear).
      const sizeOf = async (lines: number) => {
        await parse(sqsEvent([await h.store(message(lines))]));
        const [job] = await h.drainJobs();
        assert.ok(job && 'inline' in job.payload);
        return jobBytes(job);
      };
      const [at10, at20] = [await sizeOf(10), await sizeOf(20)];
      const perLine = (at20 - at10) / 10;
      // Close to the limit by the line count, then one line at a time until the payload leaves the job.
      let lines = 10 + Math.floor((INLINE_JOB_BYTES - at10) / perLine) - 3;
      let inline: DeliveryJob | undefined;
      let stored: DeliveryJob | undefined;
      let over: Awaited<ReturnType<ParseHarness['store']>> | undefined;
      for (let step = 0; step < 20 && !stored; step++, lines++) {
        over = await h.store(message(lines));
        await parse(sqsEvent([over]));
        const [job] = await h.drainJobs();
        if (job && 'inline' in job.payload) inline = job;
        else stored = job;
      }
      assert.ok(inline && stored && over, 'the boundary was crossed');
      assert.ok(jobBytes(inline) <= INLINE_JOB_BYTES, 'the largest job that fits carries its payload');
      assert.ok(jobBytes(inline) > INLINE_JOB_BYTES - 2 * perLine, `${jobBytes(inline)} is at the boundary`);
      assert.equal(billedSqsRequests(jobBytes(inline)), 16);
      assert.deepEqual(
        stored.payload,
        { bucket: h.emu.resources.bucket, key: payloadKey(over.id, 'support') },
        'one line more: the payload is in S3',
      );
      assert.ok(jobBytes(stored) < 1024, 'the job itself stays small');

      const [a, b] = [await h.payload(inline), await h.payload(stored)];
      assert.equal(b.message.text!.length - a.message.text!.length, 76, 'the same document, one line longer');
    });

    it('a typical message costs no S3 write in parse: the payload rides in the job, duplicates are marked in the table', async () => {
      const proxy = await startFaultProxy(h.emu.emulator.endpoint);
      const clients = emulatorClients(proxy.endpoint);
      try {
        const parse = h.handler({ s3: clients.s3, sqs: clients.sqs, controlStore: control.store });
        await parse(sqsEvent([await h.store(message(130, 'typical'))]));
        const [job] = await h.drainJobs();
        assert.ok(job && 'inline' in job.payload);
        const writes = [...proxy.calls].filter(([op]) =>
          /^S3\.(PutObject|CreateMultipartUpload|UploadPart|CompleteMultipartUpload)$/.test(op),
        );
        assert.deepEqual(writes, [], 'the raw copy (the listener’s) is the message’s only S3 write');
        assert.equal(proxy.calls.get('S3.GetObject'), 1, 'parse reads the raw message once');
      } finally {
        clients.s3.destroy();
        clients.sqs.destroy();
        await proxy.close();
      }
    });

    it('marks copies as duplicates locally too: of two copies parsed at once exactly one is first', async () => {
      const parse = h.handler({ controlStore: control.store });
      const first = await h.store(message(3, 'resent'));
      await parse(sqsEvent([first]));
      const [original] = await h.drainJobs();
      assert.deepEqual((await h.payload(original!)).warnings, []);

      const copy = await h.store(message(3, 'resent'));
      await parse(sqsEvent([copy]));
      const [again] = await h.drainJobs();
      assert.deepEqual((await h.payload(again!)).warnings, [
        `duplicate: same content and envelope as message ${first.id}`,
      ]);

      // Parsing the same message again (a retry) does not make it a duplicate of itself.
      await parse(sqsEvent([first]));
      const [reparsed] = await h.drainJobs();
      assert.deepEqual((await h.payload(reparsed!)).warnings, []);

      const [c, d] = [await h.store(message(3, 'raced')), await h.store(message(3, 'raced'))];
      await Promise.all([parse(sqsEvent([c])), parse(sqsEvent([d]))]);
      const raced = await Promise.all((await h.drainJobs()).map((job) => h.payload(job)));
      assert.deepEqual(raced.map((payload) => payload.warnings.length).sort(), [0, 1]);
    });
  });

  describe('API routes on a domain whose DNS proof is pending', () => {
    before(async () => {
      const now = new Date();
      await control.store.claimDomain(newDomainClaim('pending.test', 'key_test', now), now);
      const { secret: _secret, ...fields } = h.config.routes[0]!;
      await control.store.createRoute({
        route: { ...fields, id: 'tenant', match: ['help@pending.test'] },
        secrets: [
          { id: 'sec_1', ref: { value: 'whsec_dGVzdA==' }, createdAt: now.toISOString(), expiresAt: null },
        ],
        createdAt: now.toISOString(),
        updatedAt: now.toISOString(),
      });
    });
    it('are delivered when the config accepts unverified domains, as the listener that took the mail did', async () => {
      const accepting = {
        ...h.config,
        controlPlane: { ...h.config.controlPlane, acceptUnverifiedDomains: true },
      };
      const parse = h.handler({ config: accepting, controlStore: control.store });
      await parse(sqsEvent([await h.store(message(3, 'pending'), { rcptTo: ['help@pending.test'] })]));
      assert.deepEqual(
        (await h.drainJobs()).map((job) => job.routeId),
        ['tenant'],
      );
      assert.deepEqual(await h.drainDeadLetters(), []);
    });

    it('are not routed otherwise (the listener answered 550 5.7.1): dead-lettered as unrouted, never dropped', async () => {
      const parse = h.handler({ controlStore: control.store });
      await parse(sqsEvent([await h.store(message(3, 'refused'), { rcptTo: ['help@pending.test'] })]));
      assert.deepEqual(await h.drainJobs(), []);
      assert.deepEqual(
        (await h.drainDeadLetters()).map((entry) => entry.reason),
        ['unrouted'],
      );
    });
  });

  describe('a message parse gives up on', () => {
    it('is logged as parse_failed (and failed) on its last try only, the one after which SQS moves it to the inbound DLQ', async () => {
      const parse = h.handler({ controlStore: control.store });
      // Its raw object is gone: every try fails.
      const event = await h.store(message(3, 'lost'));
      const lost = { ...event, raw: { ...event.raw, key: `${event.raw.key}.gone` } };
      const tryNumber = async (tries: number) => {
        const record = {
          ...sqsRecord(lost),
          attributes: { ...sqsRecord(lost).attributes, ApproximateReceiveCount: String(tries) },
        };
        const answer = await parse({ Records: [record] });
        assert.deepEqual(answer.batchItemFailures, [{ itemIdentifier: record.messageId }]);
      };
      await tryNumber(QUEUE_SETTINGS.inbound.maxReceiveCount - 1);
      assert.equal(await control.store.getMessage(lost.id), undefined, 'not the last try: nothing logged');
      await tryNumber(QUEUE_SETTINGS.inbound.maxReceiveCount);
      const logged = await control.store.getMessage(lost.id);
      assert.deepEqual(
        logged?.timeline.map((e) => (e.type === 'parse_failed' ? [e.type, e.tries] : [e.type])),
        [['parse_failed', QUEUE_SETTINGS.inbound.maxReceiveCount]],
      );
      assert.equal(deriveStatus(logged!.timeline), 'failed');
    });
  });
});
