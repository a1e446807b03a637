// The soak (harness/soak.ts): `node bench/soak.ts [--messages N] [--senders N] [--quick]`; exits
// non-zero on any loss.
import { parseArgs } from 'node:util';
import { runSoak } from '../harness/soak.ts';

const { values } = parseArgs({
  options: {
    messages: { type: 'string' },
    senders: { type: 'string' },
    quick: { type: 'boolean', default: false },
  },
});
process.env.POWERTOOLS_LOG_LEVEL ??= 'SILENT';
process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
const quick = values.quick ?? false;
const result = await runSoak({
  messages: Number(values.messages ?? (quick ? 1000 : 10_000)),
  senders: Number(values.senders ?? 20),
  log: (line) => console.log(line),
});
console.log(JSON.stringify(result, null, 2));
if (!result.ok) {
  console.error('soak FAILED: lost or unexpected deliveries');
  process.exit(1);
}
console.log('soak passed: every accepted message delivered once per route or dead-lettered with a reason');
