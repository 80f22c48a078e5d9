import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../src/infra/errors.js';

describe('the error registry', () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

  it.each(Object.entries(ERROR_CODES))('documents %s in the README with its status', (code, entry) => {
    const row = readme.split('\n').find((line) => line.startsWith(`| \`${code}\` |`));
    expect(row, `README.md has no row for ${code}`).toBeDefined();
    expect(row).toContain(`| ${entry.status} |`);
  });

  it('gives every code an error status and a one-line meaning', () => {
    for (const entry of Object.values(ERROR_CODES)) {
      expect(entry.status).toBeGreaterThanOrEqual(400);
      expect(entry.meaning.length).toBeGreaterThan(10);
      expect(entry.meaning).not.toContain('\n');
    }
  });
});
