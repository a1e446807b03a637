/** Fargate's task CPU sizes (CPU units) up to 4 vCPU. */
export const FARGATE_CPUS = [256, 512, 1024, 2048, 4096] as const;

/** Fargate's valid memory sizes (MiB) for a task CPU size (CPU units). */
export function fargateMemoryChoices(cpu: number): number[] {
  if (cpu === 256) return [512, 1024, 2048];
  const gib = cpu / 1024;
  const choices: number[] = [];
  for (let memory = Math.max(1, 2 * gib) * 1024; memory <= Math.min(30, 8 * gib) * 1024; memory += 1024) {
    choices.push(memory);
  }
  return choices;
}

/**
 * The smallest valid Fargate task size holding `cpu` units and `memoryMiB`: the first CPU size at
 * least `cpu` that offers a memory size at least `memoryMiB`, with the smallest such memory.
 */
export function fargateTaskSize(cpu: number, memoryMiB: number): { cpu: number; memoryMiB: number } {
  for (const size of FARGATE_CPUS) {
    if (size < cpu) continue;
    const memory = fargateMemoryChoices(size).find((choice) => choice >= memoryMiB);
    if (memory !== undefined) return { cpu: size, memoryMiB: memory };
  }
  throw new Error(`no Fargate task size up to 4 vCPU holds ${cpu} CPU units and ${memoryMiB} MiB`);
}
