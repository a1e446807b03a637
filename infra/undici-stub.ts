// Bundled in place of undici (500+ KB): mailauth loads it only to download BIMI logos and
// certificates (validateVMC), and the parse function turns BIMI off.

/** Never called while BIMI is off. */
export function fetch(): never {
  throw new Error('undici is not bundled: BIMI is disabled in the parse function');
}

/** Never used while BIMI is off. */
export class Agent {}
