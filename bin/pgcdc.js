#!/usr/bin/env node
// Installed entry point: runs the compiled CLI when present (npm run build / Docker image),
// otherwise the TypeScript sources directly (Node >= 24 strips types natively).
import { existsSync } from 'node:fs';
const compiled = new URL('../dist/cli/main.js', import.meta.url);
await import(existsSync(compiled) ? compiled.href : new URL('../src/cli/main.ts', import.meta.url).href);
