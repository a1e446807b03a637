export * from './deliver/index.ts';
export * from './parse/index.ts';
