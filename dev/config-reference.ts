import { writeFile } from 'node:fs/promises';
import { configJsonSchema } from '../core/index.ts';

type JsonSchema = {
  type?: string | string[];
  description?: string;
  default?: unknown;
  const?: unknown;
  enum?: unknown[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  minimum?: number;
  maximum?: number;
};

function typeOf(schema: JsonSchema): string {
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.enum) return schema.enum.map((value) => JSON.stringify(value)).join(' \\| ');
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants) return [...new Set(variants.map(typeOf))].join(' \\| ');
  if (schema.type === 'array' && schema.items) {
    const item = typeOf(schema.items);
    return item.includes('|') ? `(${item})[]` : `${item}[]`;
  }
  if (schema.properties) return 'object';
  return Array.isArray(schema.type) ? schema.type.join(' \\| ') : (schema.type ?? 'any');
}

function rows(schema: JsonSchema, path: string, required: boolean, out: string[]): void {
  if (path) {
    const defaultText =
      schema.default === undefined ? (required ? 'required' : '') : JSON.stringify(schema.default);
    const description = (schema.description ?? '').replace(/\|/g, '\\|');
    out.push(`| \`${path}\` | ${typeOf(schema)} | ${defaultText.replace(/\|/g, '\\|')} | ${description} |`);
  }
  const variants = schema.anyOf ?? schema.oneOf;
  const objects = variants ? variants.filter((variant) => variant.properties) : [schema];
  for (const object of objects) {
    for (const [key, child] of Object.entries(object.properties ?? {})) {
      rows(child, path ? `${path}.${key}` : key, object.required?.includes(key) ?? false, out);
    }
  }
  const items = schema.items ?? variants?.find((variant) => variant.items)?.items;
  if (items) {
    const itemVariants = items.anyOf ?? items.oneOf;
    for (const object of itemVariants ? itemVariants.filter((v) => v.properties) : [items]) {
      for (const [key, child] of Object.entries(object.properties ?? {})) {
        rows(child, `${path}[].${key}`, object.required?.includes(key) ?? false, out);
      }
    }
  }
}

/** The configuration reference, generated from the config schema so it cannot drift from the code. */
export function renderConfigReference(): string {
  const lines: string[] = [];
  rows(configJsonSchema() as JsonSchema, '', true, lines);
  return [
    '# Configuration reference',
    '',
    'Generated from `core/config.ts` by `npm run docs`; do not edit by hand.',
    'The file is YAML or JSON. `dev/mailbridge.yaml` is a working example; a bad file fails at start',
    'with the path of every bad field (for example `routes[0].endpoints[1]: must be https://`).',
    'Durations are seconds or strings such as `5s`, `30m`, `2h`, `1d`. A secret is one of `{ value }`',
    '(local runs only), `{ env: NAME }` or `{ secretsManager: name-or-arn, jsonKey? }`.',
    '',
    '| field | type | default | meaning |',
    '| --- | --- | --- | --- |',
    ...[...new Set(lines)],
    '',
  ].join('\n');
}

if (import.meta.main) {
  await writeFile(new URL('../docs/configuration.md', import.meta.url), renderConfigReference());
}
