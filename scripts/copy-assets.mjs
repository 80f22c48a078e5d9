// Copies the non-TypeScript files the server reads at run time (SQL migrations, Lua scripts,
// HTML) from src/ to dist/, keeping their paths, so `dist/` runs on its own.
import { cpSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const ASSET = /\.(sql|lua|html|js\.txt|css)$/;
// A module's functions.sql mirrors its migrations for readers (test/sql-functions.test.ts checks
// it); the server builds its databases from the migrations alone and never reads it.
const NOT_READ_AT_RUN_TIME = new Set(['functions.sql']);

function copy(from, to) {
  for (const name of readdirSync(from)) {
    const source = join(from, name);
    const target = join(to, name);
    if (statSync(source).isDirectory()) copy(source, target);
    else if (ASSET.test(name) && !NOT_READ_AT_RUN_TIME.has(name)) cpSync(source, target);
  }
}

copy('src', 'dist');
