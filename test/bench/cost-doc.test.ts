import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { COST_DOC_FILE, COST_INPUTS_FILE, type CostInputs, renderCostDoc } from '../../bench/cost-doc.ts';
import {
  chooseMemory,
  chooseTaskSize,
  cpuUnitsFor,
  DECLARED,
  DEPLOYMENT,
  durationAt,
  fixedMonthly,
  functionSizes,
  PRICES,
  perMillion,
  reloadReadUnits,
  routeSyncLine,
  routeSyncReadUnits,
  total,
} from '../../bench/cost-model.ts';
import { ROUTE_SYNC_DEFAULTS } from '../../core/control/route-sync.ts';
import { SIDECAR_SIZES } from '../../infra/scanner-sidecars.ts';
import { DeploySettingsSchema } from '../../infra/settings.ts';

const inputs = JSON.parse(readFileSync(COST_INPUTS_FILE, 'utf8')) as CostInputs;

describe('docs/cost.md', () => {
  it('is what `npm run cost:doc` writes from the committed bench figures', () => {
    assert.equal(
      readFileSync(COST_DOC_FILE, 'utf8'),
      renderCostDoc(inputs),
      'docs/cost.md is stale: run `npm run cost:doc`',
    );
  });

  it('moves with a measured input: one S3 PUT fewer per message is $5 less per million', () => {
    const run = inputs.cost.low;
    const fewer = {
      ...run,
      requestsPerMessage: {
        ...run.requestsPerMessage,
        'S3 PutObject': run.requestsPerMessage['S3 PutObject']! - 1,
      },
    };
    const saved = total(perMillion(inputs.cost, run)) - total(perMillion(inputs.cost, fewer));
    assert.equal(saved.toFixed(2), '5.00');
  });
});

describe('route sync reads', () => {
  const month = 730 * 3600 * 1000;
  const reloads = month / ROUTE_SYNC_DEFAULTS.fullReloadIntervalMs;
  const polls = month / ROUTE_SYNC_DEFAULTS.pollIntervalMs - reloads;

  it('count an empty change-feed read as half a unit, and a reload as the routes it reads', () => {
    // Every 5 s for 730 h is 525,600 reads, 4,380 of them (every 10 min) full reloads instead.
    assert.deepEqual([polls, reloads], [521_220, 4_380]);
    assert.equal(reloadReadUnits(0), 1, 'two empty Queries: the routes and the domains');
    // 100,000 items of 500 B: 12,208 blocks of 4 KB at half a unit each, and the empty domain Query.
    assert.equal(DECLARED.routeItemBytes, 500);
    assert.equal(reloadReadUnits(100_000), 6_104.5);
    assert.equal(routeSyncReadUnits(0), polls * 0.5 + reloads * 1);
    assert.equal(routeSyncReadUnits(100_000), polls * 0.5 + reloads * 6_104.5);
  });

  it('are a fixed line for every listener task at the on-demand read price, in docs/cost.md at 0 and 100,000 routes', () => {
    const line = fixedMonthly().find((entry) => entry.item.startsWith('Route sync reads'));
    assert.deepEqual(line, routeSyncLine(0));
    assert.equal(line.usd, (DEPLOYMENT.tasks * routeSyncReadUnits(0) * PRICES.dynamoReadPerMillion) / 1e6);
    assert.equal(routeSyncLine(100_000).usd.toFixed(2), '6.75');
    const doc = readFileSync(COST_DOC_FILE, 'utf8');
    assert.match(
      doc,
      /^\| Route sync reads \(DynamoDB on demand\), 0 API routes \| 2 tasks × .* \| \$0\.07 \|$/m,
    );
    assert.match(
      doc,
      /With 100,000 API routes\s+\(≈ 500 B each\) a reload reads ≈ 6,105 read units and the line above becomes\s+\$6\.75 /,
    );
  });
});

describe('function memory chosen from measured figures', () => {
  it('takes the smallest size for a function that mostly waits, and more for one that mostly computes', () => {
    assert.equal(chooseMemory(5, 200, 100).memoryMb, 256);
    assert.equal(chooseMemory(200, 5, 100).memoryMb, 1536);
  });

  it('never picks a size below the peak with a quarter to spare', () => {
    assert.equal(chooseMemory(5, 200, 500).memoryMb, 768);
  });

  it('models CPU-bound time stretching below one vCPU (1769 MB) and not above', () => {
    assert.equal(durationAt(1769, 100, 10), 110);
    assert.equal(durationAt(1769 / 2, 100, 10), 210);
  });
});

describe('function memory in force', () => {
  it('is what the model picks from the committed measurement, in the settings and the construct', () => {
    const sizes = functionSizes(inputs.cost);
    const { functions } = DeploySettingsSchema.parse({ config: 'mailbridge.yaml' });
    assert.deepEqual(
      { parse: functions.parse.memoryMiB, deliver: functions.deliver.memoryMiB },
      { parse: sizes.parse.memoryMb, deliver: sizes.deliver.memoryMb },
    );
  });
});

describe('listener task size chosen from measured figures', () => {
  it('is the size docs/cost.md counts and the settings default, from the committed measurement', () => {
    const chosen = chooseTaskSize(inputs.taskSize);
    assert.deepEqual(chosen, { cpu: DEPLOYMENT.taskVcpu * 1024, memoryMiB: DEPLOYMENT.taskGb * 1024 });
    const { listener } = DeploySettingsSchema.parse({ config: 'mailbridge.yaml' });
    assert.deepEqual({ cpu: listener.cpu, memoryMiB: listener.memoryMiB }, chosen);
  });

  it('grows with the CPU at the target load and with the burst peak', () => {
    assert.deepEqual(chooseTaskSize({ cpuPercent: 15, burstPeakMiB: 380 }), { cpu: 256, memoryMiB: 1024 });
    assert.deepEqual(chooseTaskSize({ cpuPercent: 30, burstPeakMiB: 380 }), { cpu: 512, memoryMiB: 1024 });
    assert.deepEqual(chooseTaskSize({ cpuPercent: 15, burstPeakMiB: 600 }), { cpu: 256, memoryMiB: 2048 });
  });
});

describe('scanner sidecars sized from measured figures', () => {
  it('give each daemon the CPU it used at the listener task’s target load', () => {
    for (const [daemon, sidecar] of [
      ['rspamd', SIDECAR_SIZES.rspamd],
      ['clamd', SIDECAR_SIZES.clamav],
    ] as const) {
      const needed = cpuUnitsFor(
        (inputs.scanners[daemon].cpuMsPerMessage * inputs.taskSize.load.rate) / 1000,
      );
      assert.ok(needed <= sidecar.cpu, `${daemon}: ${needed} CPU units measured, ${sidecar.cpu} given`);
    }
    assert.ok(inputs.scanners.rspamd.peakRssMiB <= SIDECAR_SIZES.rspamd.memoryLimitMiB);
  });
});
