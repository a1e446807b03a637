import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { OPENAPI_DOCUMENT_PATH, OPERATIONS, openApiDocument } from '../core/control/index.ts';

// Regenerates the published OpenAPI document: `npm run openapi`.
const target = fileURLToPath(new URL(`../${OPENAPI_DOCUMENT_PATH}`, import.meta.url));
await writeFile(target, `${JSON.stringify(openApiDocument(OPERATIONS), null, 2)}\n`);
// Formatted as the linter wants it, so regenerating leaves `npm run lint` clean.
execFileSync('npx', ['biome', 'format', '--write', target], { stdio: 'inherit' });
console.log(`wrote ${OPENAPI_DOCUMENT_PATH}`);
