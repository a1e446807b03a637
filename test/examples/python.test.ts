import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { checkReceiver, SECRET } from './helpers.ts';

const APP = join(import.meta.dirname, '..', '..', 'examples', 'python', 'app.py');
const flask = spawnSync('python3', ['-c', 'import flask'], { stdio: 'ignore' });
const skip =
  flask.status === 0 ? false : 'python3 with Flask is not installed (python3 -c "import flask" failed)';

describe('examples/python Flask receiver', { skip }, () => {
  let child: ChildProcess | undefined;
  after(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });

  it('verifies signatures with the standard library and processes each webhook-id once', async () => {
    child = spawn('python3', [APP], {
      env: { ...process.env, MAILBRIDGE_SIGNING_SECRET: SECRET, PORT: '0', PYTHONUNBUFFERED: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let processed = 0;
    const lines = createInterface({ input: child.stdout! });
    const url = await new Promise<string>((resolve, reject) => {
      lines.on('line', (line) => {
        const listening = /^listening on (\S+)$/.exec(line);
        if (listening) resolve(listening[1]!);
        if (line.startsWith('processed ')) processed++;
      });
      child!.once('exit', (code) => reject(new Error(`app.py exited with ${code}`)));
      // Fails in seconds, not at the runner's timeout, if the app never says it listens.
      setTimeout(() => reject(new Error('app.py did not print "listening on" within 30 s')), 30_000).unref();
    });
    // stdout lines arrive a moment after the HTTP response; wait for the count to settle.
    const settled = async () => {
      await new Promise((resolve) => setTimeout(resolve, 100));
      return processed;
    };
    await checkReceiver(url, settled);
  });
});
