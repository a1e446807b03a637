import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SMTPServer } from 'smtp-server';

// listener/smtp.ts overrides SMTPServer.connect to build its own connection class, repeating the
// body below. If an smtp-server upgrade changes that body, the override must change with it.
const COPIED = `connect(socket, socketOptions) {
  let connection = new SMTPConnection(this, socket, socketOptions);
  this.connections.add(connection);
  connection.on('error', err => this._onError(err));
  connection.on('connect', data => this._onClientConnect(data));
  connection.init();
}`;

const normalized = (source: string) =>
  source
    .split('\n')
    .map((line) => line.trim())
    .join('\n')
    .replace(/\n(?!})/g, '\n  ');

describe('MailbridgeSmtpServer', () => {
  it("repeats smtp-server's own connect, which has not changed since it was copied", () => {
    assert.equal(
      normalized(SMTPServer.prototype.connect.toString()),
      COPIED,
      'smtp-server changed SMTPServer.connect: bring MailbridgeSmtpServer.connect (listener/smtp.ts) in line',
    );
  });
});
