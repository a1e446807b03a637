import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DeleteObjectsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createLogger, createMetrics, type DeliveryJob, Router } from '../../core/index.ts';
import { boundedResolver, processInboundEvent } from '../../functions/parse/index.ts';
import { hostileMimeCorpus } from '../../harness/mime-corpus.ts';
import { type ParseHarness, startParseHarness } from '../functions/parse/harness.ts';

const PER_MESSAGE_MS = 10_000;
const MB = 1024 * 1024;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function heap(): number {
  gc();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

async function withDeadline<T>(work: Promise<T>, name: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${name}: no outcome within ${PER_MESSAGE_MS} ms`)),
      PER_MESSAGE_MS,
    );
  });
  try {
    return await Promise.race([work, hung]);
  } finally {
    clearTimeout(timer);
  }
}

describe('hostile input: MIME corpus through the parse function', () => {
  let h: ParseHarness;
  before(async () => {
    h = await startParseHarness();
  });
  after(() => h.close());

  /** Empties the bucket, so the emulator's memory does not count as the parser's. */
  async function emptyBucket() {
    const bucket = h.emu.resources.bucket;
    const listed = await h.emu.s3.send(new ListObjectsV2Command({ Bucket: bucket }));
    const keys = (listed.Contents ?? []).map((object) => ({ Key: object.Key! }));
    if (keys.length > 0) {
      await h.emu.s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
    }
  }

  /** Stores a raw message as the listener does: big ones in parts (fauxqs takes one PutObject up to ~11 MiB). */
  async function store(raw: Buffer) {
    const envelope = { rcptTo: ['support@example.test', 'sales@example.test'] };
    if (raw.length <= 8 * MB) return h.store(raw, envelope);
    const event = await h.store(Buffer.alloc(0), envelope);
    await new Upload({
      client: h.emu.s3,
      params: { Bucket: event.raw.bucket, Key: event.raw.key, Body: raw },
    }).done();
    const sha256 = createHash('sha256').update(raw).digest('hex');
    return { ...event, raw: { ...event.raw, size: raw.length, sha256 } };
  }

  it('gives each of 200+ hostile messages a schema-valid payload with the raw link, or a failure with its reason, in bounded time and memory', async (t) => {
    const corpus = hostileMimeCorpus();
    assert.ok(corpus.length >= 200, `corpus has ${corpus.length} messages`);
    const logger = createLogger('parse');
    const metrics = createMetrics('parse');
    const deps = {
      s3: h.emu.s3,
      sqs: h.emu.sqs,
      bucket: h.emu.resources.bucket,
      deliveryQueueUrl: h.emu.resources.deliveryQueueUrl,
      inboundDlqUrl: h.emu.resources.inboundDlqUrl,
      config: h.config,
      router: new Router(h.config),
      resolver: boundedResolver(h.zone.resolve),
      logger,
      metrics,
    };
    const baseline = heap();
    let peak = 0;
    let degraded = 0;
    const failures: string[] = [];
    const started = Date.now();
    for (const message of corpus) {
      const raw = message.build();
      // Two routes: `support` inlines small attachments, `sales` links them.
      const event = await store(raw);
      let jobs: DeliveryJob[] = [];
      try {
        ({ jobs } = await withDeadline(processInboundEvent(event, deps), message.name));
      } catch (error) {
        const reason = (error as Error).message;
        if (/no outcome within/.test(reason)) throw error;
        assert.ok(reason.length > 0, `${message.name}: a failure must say why`);
        failures.push(`${message.name}: ${reason}`);
      }
      if (jobs.length > 0) {
        assert.deepEqual(jobs.map((job) => job.routeId).sort(), ['sales', 'support'], message.name);
        for (const job of jobs) {
          const payload = await h.payload(job);
          assert.equal(payload.raw.size, raw.length, message.name);
          assert.match(payload.raw.url, /^http/, message.name);
          if (payload.warnings.some((warning) => warning.startsWith('mime_parse_failed'))) degraded++;
          if (message.name === '20 MB base64 attachment') {
            assert.ok(
              payload.message.attachments.some((file) => file.size === 20 * MB),
              'the 20 MB file is stored',
            );
          }
        }
        await h.drainJobs();
      }
      await emptyBucket();
      peak = Math.max(peak, heap() - baseline);
      metrics.publishStoredMetrics();
    }
    const growth = heap() - baseline;
    t.diagnostic(
      `${corpus.length} messages in ${((Date.now() - started) / 1000).toFixed(1)} s: ` +
        `${corpus.length - failures.length} payloads (${degraded / 2} degraded with mime_parse_failed), ` +
        `${failures.length} failures; heap peak +${(peak / MB).toFixed(1)} MB, end +${(growth / MB).toFixed(1)} MB`,
    );
    for (const failure of failures) t.diagnostic(`failure: ${failure}`);
    // Hostile MIME is no reason to retry: every message must be delivered, degraded if need be.
    assert.deepEqual(failures, []);
    assert.ok(peak < 256 * MB, `heap grew by ${(peak / MB).toFixed(1)} MB at its peak`);
    assert.ok(growth < 32 * MB, `heap stayed ${(growth / MB).toFixed(1)} MB above its start`);
  });
});
