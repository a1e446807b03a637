import { parse as parseYaml } from 'yaml';
import { ConfigError } from './errors.ts';

/** A zod issue path as the config's own spelling: `routes[0].endpoints[1]`, `limits.socketTimeout`. */
export function formatConfigPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (text, key) =>
      typeof key === 'number' ? `${text}[${key}]` : text ? `${text}.${String(key)}` : String(key),
    '',
  );
}

/**
 * The document in a config or settings file's text: JSON when the name ends in .json or the text
 * starts with `{`, YAML otherwise (YAML 1.2 reads JSON too, but JSON's own errors are clearer).
 * A syntax error is a {@link ConfigError} naming the file.
 */
export function parseDocumentText(text: string, source: string): unknown {
  try {
    return source.endsWith('.json') || text.trimStart().startsWith('{') ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new ConfigError(source, [`(file): not valid JSON or YAML: ${(error as Error).message}`], {
      cause: error,
    });
  }
}
