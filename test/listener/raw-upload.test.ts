import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { emulatorClients } from '../../dev/index.ts';
import { startTestEmulator, type TestEmulator } from '../../harness/emulator.ts';
import { type AwsOperation, type FaultProxy, startFaultProxy } from '../../harness/fault-proxy.ts';
import { PART_SIZE, uploadStream } from '../../listener/raw-upload.ts';
import { readObject } from './helpers.ts';

const P = PART_SIZE;

/** `bytes` as a socket would deliver them: 64 KiB chunks, then an optional failure. */
async function* chunked(bytes: Buffer, failAfter?: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += 65_536) {
    if (failAfter !== undefined && at >= failAfter) throw new Error('client gone');
    yield bytes.subarray(at, at + 65_536);
  }
}

describe('uploadStream: one object from a stream, one reused part buffer', () => {
  let emulator: TestEmulator;
  let proxy: FaultProxy;
  let s3: ReturnType<typeof emulatorClients>['s3'];
  let n = 0;

  before(async () => {
    emulator = await startTestEmulator();
    proxy = await startFaultProxy(emulator.emulator.endpoint);
    ({ s3 } = emulatorClients(proxy.endpoint));
  });
  afterEach(() => proxy.clear());
  after(async () => {
    s3.destroy();
    await proxy.close();
    await emulator.close();
  });

  const calls = () => {
    const before = new Map(proxy.calls);
    return (op: AwsOperation) => (proxy.calls.get(op) ?? 0) - (before.get(op) ?? 0);
  };
  const object = () => ({
    bucket: emulator.resources.bucket,
    key: `raw-upload/${n++}.eml`,
    contentType: 'message/rfc822',
  });
  const exists = (key: string) =>
    s3.send(new HeadObjectCommand({ Bucket: emulator.resources.bucket, Key: key })).then(
      () => true,
      () => false,
    );

  for (const size of [1000, P - 1, P, P + 1, 2 * P + 3]) {
    it(`${size} bytes: stored whole, ${size < P ? 'one PutObject' : `${Math.ceil(size / P)} parts`}`, async () => {
      const bytes = randomBytes(size);
      const target = object();
      const count = calls();
      await uploadStream(s3, target, chunked(bytes));
      assert.ok((await readObject(emulator.s3, target.bucket, target.key)).equals(bytes));
      if (size < P) {
        assert.equal(count('S3.PutObject'), 1);
        assert.equal(count('S3.CreateMultipartUpload'), 0);
      } else {
        assert.equal(count('S3.PutObject'), 0);
        assert.equal(count('S3.UploadPart'), Math.ceil(size / P));
        assert.equal(count('S3.CompleteMultipartUpload'), 1);
      }
    });
  }

  it('a body that fails after a part was uploaded: rejects with its error, the upload aborted, no object', async () => {
    const target = object();
    const count = calls();
    await assert.rejects(uploadStream(s3, target, chunked(randomBytes(3 * P), P + 1)), /client gone/);
    assert.equal(count('S3.UploadPart'), 1);
    assert.equal(count('S3.AbortMultipartUpload'), 1);
    assert.equal(count('S3.CompleteMultipartUpload'), 0);
    assert.equal(await exists(target.key), false);
  });

  it('a part S3 refuses: rejects, the upload aborted, no object', async () => {
    proxy.add({ ops: ['S3.UploadPart'], action: { kind: 'fail', status: 500 }, nth: [2, 3, 4, 5] });
    const target = object();
    const count = calls();
    await assert.rejects(uploadStream(s3, target, chunked(randomBytes(2 * P + 3))));
    assert.equal(count('S3.AbortMultipartUpload'), 1);
    assert.equal(count('S3.CompleteMultipartUpload'), 0);
    assert.equal(await exists(target.key), false);
  });
});
