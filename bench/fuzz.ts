// SMTP fuzzing of the listener: `node bench/fuzz.ts --sessions 100000 [--seed N] [--concurrency C]`
// (harness/fuzz.ts). Exits non-zero when a property breaks; the seed is printed so a failing run can
// be replayed.
import { parseArgs } from 'node:util';
import { describeFuzzReport, fuzzFailures, runFuzz } from '../harness/fuzz.ts';

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '100000' },
    seed: { type: 'string' },
    concurrency: { type: 'string', default: '24' },
  },
});
const report = await runFuzz({
  sessions: Number(values.sessions),
  concurrency: Number(values.concurrency),
  ...(values.seed ? { seed: Number(values.seed) } : {}),
  log: (line) => console.log(line),
});
console.log(describeFuzzReport(report));
const failures = fuzzFailures(report);
for (const failure of failures) console.error(`FAIL: ${failure}`);
process.exitCode = failures.length > 0 ? 1 : 0;
