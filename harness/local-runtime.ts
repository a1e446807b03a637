import assert from 'node:assert/strict';
import nodemailer from 'nodemailer';
import type { LocalRuntime } from '../dev/index.ts';

/** Every port of the local runtime on 0: tests run side by side, each on ports the system picks. */
export const ALL_PORTS_FREE = { smtp: 0, submission: 0, smtps: 0, inbox: 0, health: 0, emulator: 0, api: 0 };

/** The runtime's MX-style SMTP port. */
export function mxPort(runtime: LocalRuntime): number {
  return runtime.listener.listeners.find((bound) => bound.mode === 'mx')!.port;
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
