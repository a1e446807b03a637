#!/usr/bin/env node
// Plain JavaScript on purpose: it must run on any Node to say which one is needed, and Node
// before 22.18 cannot load a .ts file at all. The minimum is package.json's `engines.node`.
import { readFileSync } from 'node:fs';

const { engines } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const needed = /(\d+)\.(\d+)/.exec(engines.node).slice(1).map(Number);
const running = process.versions.node.split('.').map(Number);
if (running[0] < needed[0] || (running[0] === needed[0] && running[1] < needed[1])) {
  console.error(
    `mailbridge needs Node.js ${needed.join('.')} or later (24 recommended), this is ${process.version}: run it through npm (npm start, npx mailbridge), which uses the Node 24 in node_modules, or install Node 24.`,
  );
  process.exit(1);
}
const { runCli } = await import('./program.ts');
await runCli(process.argv.slice(2));
