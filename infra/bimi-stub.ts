// Bundled in place of the packages mailauth loads only for BIMI: undici (500+ KB) downloads logos
// and certificates, @postalsys/vmc (with its ASN.1 and X.509 parsers, ≈ 190 KB) validates Verified
// Mark Certificates, fast-xml-parser checks the SVG logo. The parse function turns BIMI off, so none
// of them is ever called there.

const BIMI_OFF = 'not bundled: BIMI is disabled in the parse function';

/** undici's fetch. */
export function fetch(): never {
  throw new Error(`undici ${BIMI_OFF}`);
}

/** undici's Agent. */
export class Agent {}

/** @postalsys/vmc's certificate check. */
export function vmc(): never {
  throw new Error(`@postalsys/vmc ${BIMI_OFF}`);
}

/** fast-xml-parser's parser, used on SVG logos. */
export class XMLParser {
  constructor() {
    throw new Error(`fast-xml-parser ${BIMI_OFF}`);
  }
}
