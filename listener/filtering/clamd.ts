import { connect } from 'node:net';
import type { UnavailableReason, VirusScan } from '../../core/filtering/index.ts';
import { SinkState, type StreamSink } from './sink.ts';

// clamd's reply to a z-command ends in NUL: `stream: OK`, `stream: <name> FOUND`, or `… ERROR`.
const FOUND = /^stream: (.+) FOUND$/;

/**
 * A streaming client of clamd's `INSTREAM` command (clamd(8)): `zINSTREAM\0`, then chunks as
 * `<uint32 big-endian length><bytes>` as DATA arrives, a zero length to finish, one reply.
 * clamd refuses a stream longer than its StreamMaxLength and closes; `maxBytes` (set it to that
 * value) stops the stream there instead, so the part sent is still scanned: a virus found in it
 * is `infected`, otherwise the verdict is `unavailable` (`too_large`), never a `clean` that
 * covered only part of the message.
 */
export class ClamdClient {
  readonly #host: string;
  readonly #port: number;
  readonly #maxBytes: number;

  constructor(options: { host: string; port: number; maxBytes: number }) {
    this.#host = options.host;
    this.#port = options.port;
    this.#maxBytes = options.maxBytes;
  }

  /** Opens one INSTREAM session for one message. */
  start(): StreamSink<VirusScan> {
    const state = new SinkState<VirusScan>();
    const socket = connect({ host: this.#host, port: this.#port });
    let sent = 0;
    let truncated = false;
    let ended = false;
    let reply = '';
    const abort = (reason: UnavailableReason, detail?: string) => {
      state.settle({ status: 'unavailable', reason, ...(detail ? { detail } : {}) });
      socket.destroy();
    };
    const finish = () => {
      if (ended) return;
      ended = true;
      socket.end(Buffer.alloc(4));
    };
    socket.setNoDelay(true);
    socket.write('zINSTREAM\0');
    socket.on('drain', () => state.drain());
    socket.on('error', (error) => abort('error', error.message));
    socket.on('data', (data: Buffer) => {
      reply += data.toString('utf8');
      const end = reply.indexOf('\0');
      if (end < 0) return;
      const line = reply.slice(0, end).trim();
      const found = FOUND.exec(line);
      if (found) state.settle({ status: 'scanned', infected: true, names: [found[1]!] });
      else if (line === 'stream: OK' && !truncated)
        state.settle({ status: 'scanned', infected: false, names: [] });
      else if (line === 'stream: OK')
        abort('too_large', `only the first ${this.#maxBytes} bytes were scanned`);
      else abort('error', line);
      socket.destroy();
    });
    socket.on('close', () => abort('error', 'clamd closed the connection without a verdict'));
    return {
      write: (chunk) => {
        if (state.settled || ended) return true;
        const room = this.#maxBytes - sent;
        const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
        sent += part.length;
        let ready = true;
        if (part.length > 0) {
          const length = Buffer.alloc(4);
          length.writeUInt32BE(part.length);
          socket.write(length);
          ready = socket.write(part);
        }
        if (part.length < chunk.length) {
          truncated = true;
          finish();
        }
        return ready;
      },
      drained: () => (socket.writableNeedDrain ? state.waitForDrain() : Promise.resolve()),
      end: finish,
      abort,
      get settled() {
        return state.settled;
      },
      result: state.result,
    };
  }
}
