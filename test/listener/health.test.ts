import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { emulatorClients } from '../../dev/index.ts';
import { startTestEmulator, type TestEmulator } from '../../harness/emulator.ts';
import { type FaultProxy, startFaultProxy } from '../../harness/fault-proxy.ts';
import { delay, healthOf, startTestListener, type TestListener, testConfig } from './helpers.ts';

const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A PROXY v2 header as an NLB sends it (haproxy proxy-protocol.txt §2.2): PROXY over TCP/IPv4, or LOCAL. */
function proxyV2(command: 'proxy' | 'local'): Buffer {
  if (command === 'local') return Buffer.concat([SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  const addresses = Buffer.from([203, 0, 113, 7, 10, 0, 1, 20, 0xc3, 0x50, 0x1f, 0x90]);
  return Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x11, 0x00, addresses.length]), addresses]);
}

/** Sends `parts` (one write each, a pause between) on a fresh connection and returns the HTTP status line. */
async function rawRequest(port: number, parts: readonly Buffer[]): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  for (const part of parts) {
    socket.write(part);
    await delay(30);
  }
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('latin1').split('\r\n')[0]!;
}

const GET = Buffer.from('GET /healthz HTTP/1.1\r\nHost: target\r\nConnection: close\r\n\r\n');

describe('listener health endpoint', () => {
  let emulator: TestEmulator;
  before(async () => {
    emulator = await startTestEmulator();
  });
  after(() => emulator.close());

  describe('behind a target group with proxy protocol v2 on', () => {
    let listener: TestListener;
    before(async () => {
      listener = await startTestListener(emulator, { ...testConfig(), proxyProtocol: true });
    });
    after(() => listener.close());

    it('answers the NLB health check, whose connection starts with a PROXY v2 header', async () => {
      assert.equal(await rawRequest(listener.healthPort, [proxyV2('proxy'), GET]), 'HTTP/1.1 200 OK');
      assert.equal(
        await rawRequest(listener.healthPort, [Buffer.concat([proxyV2('local'), GET])]),
        'HTTP/1.1 200 OK',
      );
      // The header split across packets.
      const header = proxyV2('proxy');
      assert.equal(
        await rawRequest(listener.healthPort, [header.subarray(0, 7), header.subarray(7), GET]),
        'HTTP/1.1 200 OK',
      );
    });

    it('answers the container health check, which sends no header', async () => {
      assert.equal(await rawRequest(listener.healthPort, [GET]), 'HTTP/1.1 200 OK');
    });
  });

  describe('readiness of the storage path', () => {
    let proxy: FaultProxy;
    let listener: TestListener;
    let clients: ReturnType<typeof emulatorClients>;
    before(async () => {
      proxy = await startFaultProxy(emulator.emulator.endpoint);
      clients = emulatorClients(proxy.endpoint);
      listener = await startTestListener(emulator, testConfig(), clients);
    });
    after(async () => {
      await listener.close();
      clients.s3.destroy();
      clients.sqs.destroy();
      await proxy.close();
    });

    it('/healthz answers 503 naming S3 or SQS while it fails, /livez stays 200, and recovers after the cache', async () => {
      // The first check probes at once; a result is then reused for up to 5 s, hence the waits below.
      const fault = proxy.add({ ops: ['S3.AbortMultipartUpload'], action: { kind: 'fail', status: 503 } });
      assert.deepEqual(await healthOf(listener.healthPort), {
        status: 503,
        body: { status: 'unready', failing: ['s3'] },
      });
      const live = await fetch(`http://127.0.0.1:${listener.healthPort}/livez`);
      assert.equal(live.status, 200, 'the container check does not kill a task for an S3 outage');
      fault.remove();
      proxy.add({ ops: ['SQS.GetQueueAttributes'], action: { kind: 'fail', status: 500 } });
      await delay(5100);
      assert.deepEqual(await healthOf(listener.healthPort), {
        status: 503,
        body: { status: 'unready', failing: ['sqs'] },
      });
      proxy.clear();
      await delay(5100);
      assert.deepEqual(await healthOf(listener.healthPort), { status: 200, body: { status: 'ok' } });
    });
  });
});
