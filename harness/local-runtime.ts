import assert from 'node:assert/strict';
import nodemailer from 'nodemailer';
import { dynamoControlStore } from '../core/control/index.ts';
import { controlPlaneSettings } from '../core/index.ts';
import { localDynamoClient } from '../dev/dynamo.ts';
import type { LocalRuntime } from '../dev/index.ts';
import { generateSelfSigned, type RunningListener, startListener } from '../listener/index.ts';
import { noDns } from './dns-zone.ts';

/** Every port of the local runtime on 0: tests run side by side, each on ports the system picks. */
export const ALL_PORTS_FREE = { smtp: 0, submission: 0, smtps: 0, inbox: 0, health: 0, emulator: 0, api: 0 };

/** The MX-style SMTP port of a runtime, or of a {@link startListenerTask} task. */
export function mxPort(runtime: Pick<LocalRuntime, 'listener'>): number {
  return runtime.listener.listeners.find((bound) => bound.mode === 'mx')!.port;
}

/**
 * One more listener task beside the runtime's own, as AWS runs several on one DynamoDB table: its
 * own store client and route sync on the runtime's control store, the same bucket and queue, and
 * ports of its own (the runtime must run on {@link ALL_PORTS_FREE}). No DNS: its checks say `none`.
 */
export async function startListenerTask(
  runtime: LocalRuntime,
): Promise<{ readonly listener: RunningListener; close(): Promise<void> }> {
  const { config, resources } = runtime;
  const control = controlPlaneSettings(config);
  const dynamodb = localDynamoClient(runtime.dynamo.endpoint);
  try {
    const listener = await startListener({
      config,
      s3: runtime.s3,
      sqs: runtime.sqs,
      bucket: resources.bucket,
      inboundQueueUrl: resources.inboundQueueUrl,
      tls: await generateSelfSigned(config.hostname),
      authUsers: new Map(),
      control: {
        store: dynamoControlStore(dynamodb, control.tableName, { retentionDays: control.retentionDays }),
        acceptUnverifiedDomains: control.acceptUnverifiedDomains,
      },
      resolver: noDns,
    });
    return {
      listener,
      async close() {
        await listener.close();
        dynamodb.destroy();
      },
    };
  } catch (error) {
    dynamodb.destroy();
    throw error;
  }
}

/** Sends one message over SMTP with nodemailer; its message id from `250 2.0.0 queued as <id>`. */
export async function sendMail(port: number, to: string, subject = 'control plane'): Promise<string> {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    tls: { rejectUnauthorized: false },
  });
  try {
    const info = await transport.sendMail({ from: 'ann@sender.test', to, subject, text: 'hi' });
    const id = /queued as (\w{26})/.exec(info.response)?.[1];
    assert.ok(id, info.response);
    return id;
  } finally {
    transport.close();
  }
}

/** A JSON answer of the API: its status and parsed body. */
export interface ApiAnswer {
  readonly status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read whatever shape the operation answers
  readonly body: any;
}

/**
 * Calls the runtime's API over HTTP, with the dev key unless `key` says otherwise (`null`: none).
 * The runtime is read at each call, so a test may restart it.
 */
export function apiCaller(runtime: () => LocalRuntime) {
  return async (method: string, path: string, body?: unknown, key: string | null = runtime().api.key) => {
    const response = await fetch(`${runtime().api.url}${path}`, {
      method,
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : undefined } as ApiAnswer;
  };
}
