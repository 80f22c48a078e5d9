// Copies the non-TypeScript files the server reads at run time (SQL migrations, Lua scripts,
// HTML) from src/ to dist/, keeping their paths, so `dist/` runs on its own.
import { cpSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const ASSET = /\.(sql|lua|html|js\.txt|css)$/;

function copy(from, to) {
  for (const name of readdirSync(from)) {
    const source = join(from, name);
    const target = join(to, name);
    if (statSync(source).isDirectory()) copy(source, target);
    else if (ASSET.test(name)) cpSync(source, target);
  }
}

copy('src', 'dist');
