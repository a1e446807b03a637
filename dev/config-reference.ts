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
  const oneOf = forms(schema);
  if (oneOf) {
    const labels = oneOf.objects.map((object) => `\`${formLabel(object)}\``).join(', ');
    return `one of ${labels}${oneOf.list ? ', or a list of them' : ''}`;
  }
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants) return [...new Set(variants.map(typeOf))].join(' \\| ');
  if (schema.type === 'array' && schema.items) {
    const item = typeOf(schema.items);
    return item.includes('|') ? `(${item})[]` : `${item}[]`;
  }
  if (schema.properties) return 'object';
  return Array.isArray(schema.type) ? schema.type.join(' \\| ') : (schema.type ?? 'any');
}

/** The objects a one-of field may be (nested unions flattened), and whether a list of them is allowed. */
function forms(schema: JsonSchema): { objects: JsonSchema[]; list: boolean } | undefined {
  const variants = schema.anyOf ?? schema.oneOf;
  if (!variants) return undefined;
  const objects = new Map<string, JsonSchema>();
  let list = false;
  for (const variant of variants) {
    const inner = variant.type === 'array' && variant.items ? forms(variant.items) : forms(variant);
    if (variant.type === 'array' && inner) list = true;
    const found = inner ? inner.objects : variant.properties ? [variant] : [];
    for (const object of found) objects.set(JSON.stringify(object), object);
  }
  return objects.size > 0 ? { objects: [...objects.values()], list } : undefined;
}

/** `{ source: "files", certFile, keyFile }`: the keys of one form, optional ones marked `?`. */
function formLabel(object: JsonSchema): string {
  const keys = Object.entries(object.properties ?? {}).map(([key, child]) => {
    if (child.const !== undefined) return `${key}: ${JSON.stringify(child.const)}`;
    return object.required?.includes(key) ? key : `${key}?`;
  });
  return `{ ${keys.join(', ')} }`;
}

function row(path: string, type: string, defaultText: string, meaning: string): string {
  const cell = (text: string) => text.replace(/\|/g, '\\|');
  return `| \`${path}\` | ${type} | ${cell(defaultText)} | ${cell(meaning)} |`;
}

/** What a field means: its description; a group without one lists what it holds. */
function meaningOf(schema: JsonSchema, path: string): string {
  if (schema.description) return schema.description;
  const keys = Object.keys(schema.properties ?? {});
  if (keys.length > 0) return `Holds ${keys.map((key) => `\`${key}\``).join(', ')}.`;
  throw new Error(`${path} has no description: give it one with .meta({ description }) in core/config.ts`);
}

function rows(schema: JsonSchema, path: string, required: boolean, out: string[]): void {
  if (path) {
    const defaultText =
      schema.default === undefined ? (required ? 'required' : '') : JSON.stringify(schema.default);
    out.push(row(path, typeOf(schema), defaultText, meaningOf(schema, path)));
  }
  const oneOf = forms(schema);
  if (oneOf) {
    formRows(oneOf.objects, path, out);
    return;
  }
  for (const [key, child] of Object.entries(schema.properties ?? {})) {
    rows(child, path ? `${path}.${key}` : key, schema.required?.includes(key) ?? false, out);
  }
  if (schema.items) {
    for (const [key, child] of Object.entries(schema.items.properties ?? {})) {
      rows(child, `${path}[].${key}`, schema.items.required?.includes(key) ?? false, out);
    }
  }
}

/**
 * The fields of a one-of field's forms. A key that is a constant in every form (`tls.source`) says
 * which form it is and gets one row; each other field says which form it belongs to.
 */
function formRows(objects: readonly JsonSchema[], path: string, out: string[]): void {
  const discriminator = Object.keys(objects[0]!.properties ?? {}).find((key) =>
    objects.every((object) => object.properties?.[key]?.const !== undefined),
  );
  if (discriminator) {
    const values = objects.map((object) => object.properties![discriminator]!.const);
    const described = objects
      .filter((object) => object.description)
      .map((object) => ` ${JSON.stringify(object.properties![discriminator]!.const)}: ${object.description}`);
    out.push(
      row(
        `${path}.${discriminator}`,
        values.map((value) => JSON.stringify(value)).join(' \\| '),
        'required',
        `Which form of \`${path}\` this is.${described.join('')}`,
      ),
    );
  }
  for (const object of objects) {
    const form = discriminator
      ? ` Only with \`${discriminator}: ${JSON.stringify(object.properties![discriminator]!.const)}\`.`
      : '';
    for (const [key, child] of Object.entries(object.properties ?? {})) {
      if (key === discriminator) continue;
      const childPath = `${path}.${key}`;
      const defaultText =
        child.default === undefined
          ? object.required?.includes(key)
            ? 'required in its form'
            : ''
          : JSON.stringify(child.default);
      out.push(row(childPath, typeOf(child), defaultText, `${meaningOf(child, childPath)}${form}`));
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
    'Durations are seconds or strings such as `5s`, `30m`, `2h`, `1d`. A field whose type says "one of"',
    'takes exactly one of the forms listed; the rows below it say which form each field belongs to.',
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
