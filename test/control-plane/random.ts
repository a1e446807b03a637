/**
 * A seeded integer source for randomized tests, `random(n)` in `[0, n)`: mulberry32, whose every
 * residue comes up (the low bits of an LCG repeat with a short period and left whole pattern kinds
 * untried).
 */
export function seededRandom(seed: number): (n: number) => number {
  let state = seed;
  return (n) => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) % n;
  };
}
