#!/usr/bin/env node
// The `flashsale` command as npm runs it (`npx flashsale <command>`, the package's `bin`): builds
// dist/ first when it is missing or older than what it is built from (so a fresh clone, or a
// checkout with new sources, runs what is in src/), then runs dist/cli.js in this process, so
// signals and the exit code are the command's own.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist', 'cli.js');
// What `npm run build` makes dist/ from.
const SOURCES = ['src', 'tsconfig.json', 'tsconfig.build.json', 'scripts/copy-assets.mjs'].map((path) => join(root, path));

/** The latest modification time of a file, or of anything under a folder (0 when it is missing). */
function newest(path) {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    return 0;
  }
  if (!stat.isDirectory()) return stat.mtimeMs;
  return readdirSync(path).reduce((latest, name) => Math.max(latest, newest(join(path, name))), stat.mtimeMs);
}

function builtAt() {
  try {
    return statSync(cli).mtimeMs;
  } catch {
    return -Infinity;
  }
}

if (builtAt() < Math.max(...SOURCES.map(newest))) {
  console.error('flashsale: building dist/ first (it is missing or older than src/)');
  // The npm that runs this command (npx sets npm_execpath), else the one on the PATH.
  const npm = process.env['npm_execpath'];
  const build = npm
    ? spawnSync(process.execPath, [npm, 'run', 'build', '--silent'], { cwd: root, stdio: ['ignore', 2, 2] })
    : spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: ['ignore', 2, 2] });
  if (build.status !== 0) {
    console.error('flashsale: could not build dist/; run `npm run build` to see why');
    process.exit(1);
  }
}

await import(pathToFileURL(cli).href);
