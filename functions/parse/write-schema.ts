import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { WEBHOOK_PAYLOAD_SCHEMA_PATH, webhookPayloadJsonSchema } from '../../core/index.ts';

// Regenerates the published payload schema: `node functions/parse/write-schema.ts`.
const target = fileURLToPath(new URL(`../../${WEBHOOK_PAYLOAD_SCHEMA_PATH}`, import.meta.url));
await writeFile(target, `${JSON.stringify(webhookPayloadJsonSchema(), null, 2)}\n`);
// Formatted as the linter wants it, so regenerating leaves `npm run lint` clean.
execFileSync('npx', ['biome', 'format', '--write', target], { stdio: 'inherit' });
console.log(`wrote ${WEBHOOK_PAYLOAD_SCHEMA_PATH}`);
