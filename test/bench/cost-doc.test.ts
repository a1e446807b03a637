import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { COST_DOC_FILE, COST_INPUTS_FILE, type CostInputs, renderCostDoc } from '../../bench/cost-doc.ts';
import {
  chooseMemory,
  chooseTaskSize,
  cpuUnitsFor,
  DEPLOYMENT,
  durationAt,
  functionSizes,
  perMillion,
  total,
} from '../../bench/cost-model.ts';
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
