import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeFuzzReport, fuzzFailures, runFuzz } from '../../harness/fuzz.ts';

// The short run of bench/fuzz.ts; the full one is `node bench/fuzz.ts --sessions 100000`.
// Replay a failure with MAILBRIDGE_FUZZ_SEED=<the printed seed>.
const SESSIONS = 3000;

describe('hostile input: SMTP fuzzing', () => {
  it(`survives ${SESSIONS} generated sessions: no crash, no leaked session, health answers, heap back to baseline`, async (t) => {
    const seed = Number(process.env.MAILBRIDGE_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 32));
    t.diagnostic(`fuzz seed ${seed} (replay with MAILBRIDGE_FUZZ_SEED=${seed})`);
    const report = await runFuzz({ sessions: SESSIONS, seed, concurrency: 48 });
    for (const line of describeFuzzReport(report).split('\n')) t.diagnostic(line);
    assert.deepEqual(fuzzFailures(report), [], `seed ${seed}`);
    assert.equal(report.sessions, SESSIONS);
    assert.ok(report.probes.ok > 0, 'the health endpoint was probed during the run');
  });
});
