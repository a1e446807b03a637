import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  AbortMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { classifyS3Error, type S3ErrorContext, type S3ErrorKind } from '../../../core/aws/index.ts';
import { emulatorClients } from '../../../dev/index.ts';
import { startTestEmulator, type TestEmulator } from '../../../harness/emulator.ts';
import { type FaultProxy, startFaultProxy } from '../../../harness/fault-proxy.ts';

/**
 * The S3 error classifier on errors as the SDK throws them: from the emulator (404s), and through the
 * fault proxy answering as AWS does (403 for a missing key without ListBucket, 412 for a lost
 * conditional write, 503 SlowDown).
 */
describe('classifyS3Error', () => {
  let emu: TestEmulator;
  let proxy: FaultProxy;
  let viaProxy: S3Client;
  const bucket = () => emu.resources.bucket;

  before(async () => {
    emu = await startTestEmulator();
    proxy = await startFaultProxy(emu.emulator.endpoint, { aws: { listablePrefixes: ['listed/'] } });
    viaProxy = emulatorClients(proxy.endpoint).s3;
    viaProxy.config.maxAttempts = async () => 1;
  });

  after(async () => {
    viaProxy.destroy();
    await proxy.close();
    await emu.close();
  });

  const kindOf = async (call: Promise<unknown>, context?: S3ErrorContext): Promise<S3ErrorKind> => {
    const error = await call.then(
      () => assert.fail('the call succeeded'),
      (caught: unknown) => caught,
    );
    return classifyS3Error(error, context);
  };

  it('a missing key is missing, from GET, HEAD and a multipart abort', async () => {
    const key = 'raw/none.eml';
    assert.equal(await kindOf(emu.s3.send(new GetObjectCommand({ Bucket: bucket(), Key: key }))), 'missing');
    assert.equal(await kindOf(emu.s3.send(new HeadObjectCommand({ Bucket: bucket(), Key: key }))), 'missing');
    assert.equal(
      await kindOf(
        emu.s3.send(new AbortMultipartUploadCommand({ Bucket: bucket(), Key: key, UploadId: 'none' })),
      ),
      'missing',
    );
  });

  it('a missing bucket is not a missing key', async () => {
    assert.equal(
      await kindOf(emu.s3.send(new GetObjectCommand({ Bucket: 'no-such-bucket', Key: 'raw/x.eml' }))),
      'other',
    );
  });

  it('403 on a missing key without ListBucket is access-denied, or missing when the caller says so', async () => {
    const get = () => viaProxy.send(new GetObjectCommand({ Bucket: bucket(), Key: 'payloads/none.json' }));
    assert.equal(await kindOf(get()), 'access-denied');
    assert.equal(await kindOf(get(), { deniedMeansMissing: true }), 'missing');
    assert.equal(
      await kindOf(viaProxy.send(new GetObjectCommand({ Bucket: bucket(), Key: 'listed/none.json' }))),
      'missing',
      'a listable prefix answers 404',
    );
  });

  it('a conditional write that lost is precondition-failed', async () => {
    const put = (condition: { IfNoneMatch: string } | { IfMatch: string }) =>
      viaProxy.send(
        new PutObjectCommand({ Bucket: bucket(), Key: 'listed/cas.json', Body: '{}', ...condition }),
      );
    await put({ IfNoneMatch: '*' });
    assert.equal(await kindOf(put({ IfNoneMatch: '*' })), 'precondition-failed');
    assert.equal(await kindOf(put({ IfMatch: '"not-the-etag"' })), 'precondition-failed');
  });

  it('SlowDown is throttled', async () => {
    const rule = proxy.add({ ops: ['S3.GetObject'], action: { kind: 'throttle' } });
    try {
      assert.equal(
        await kindOf(viaProxy.send(new GetObjectCommand({ Bucket: bucket(), Key: 'listed/cas.json' }))),
        'throttled',
      );
    } finally {
      rule.remove();
    }
  });

  it('anything else is other', () => {
    assert.equal(classifyS3Error(new Error('socket hang up')), 'other');
    assert.equal(classifyS3Error(undefined), 'other');
  });
});
