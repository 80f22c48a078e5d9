/**
 * The error registry (`src/infra/errors.ts`) and the README's error table say the same thing:
 * every code has one row, with its status and, word for word, its one-line meaning. RELIABILITY.md
 * says what each refusal changes: it has one row for every code, with its status.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../src/infra/errors.js';

interface Row {
  readonly status: number;
  readonly meaning: string;
}

/** Whitespace collapsed: a table cell and a string literal may wrap or space differently. */
function normalise(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** The rows of the table under a document's `## <heading>`, by code. */
function errorTable(document: string, heading: string): Map<string, Row[]> {
  const section = document.split(/^## /m).find((part) => part.startsWith(`${heading}\n`));
  if (section === undefined) throw new Error(`no "## ${heading}" section`);
  const rows = new Map<string, Row[]>();
  for (const line of section.split('\n')) {
    const cells = /^\| `([A-Z_]+)` \| (\d{3}) \| (.+) \|$/.exec(line);
    if (cells === null) continue;
    const [, code = '', status = '', meaning = ''] = cells;
    rows.set(code, [...(rows.get(code) ?? []), { status: Number(status), meaning: normalise(meaning) }]);
  }
  return rows;
}

describe('the error registry', () => {
  const table = errorTable(readFileSync(new URL('../README.md', import.meta.url), 'utf8'), 'Error codes');
  const changes = errorTable(readFileSync(new URL('../RELIABILITY.md', import.meta.url), 'utf8'), 'Bad input and refusals: what each answer changes');

  it.each(Object.entries(ERROR_CODES))('documents %s in the README with its status and meaning', (code, entry) => {
    const rows = table.get(code);
    expect(rows, `README.md's error table has no row for ${code}`).toBeDefined();
    expect(rows).toEqual([{ status: entry.status, meaning: normalise(entry.meaning) }]);
  });

  it.each(Object.entries(ERROR_CODES))('says in RELIABILITY.md what %s changes', (code, entry) => {
    const rows = changes.get(code);
    expect(rows, `RELIABILITY.md's table has no row for ${code}`).toHaveLength(1);
    expect(rows?.[0]?.status).toBe(entry.status);
  });

  it('lists no code in the README or RELIABILITY.md that the registry does not have', () => {
    expect([...changes.keys()].filter((code) => !(code in ERROR_CODES))).toEqual([]);
    expect([...table.keys()].filter((code) => !(code in ERROR_CODES))).toEqual([]);
  });

  it('gives every code an error status and a one-line meaning', () => {
    for (const entry of Object.values(ERROR_CODES)) {
      expect(entry.status).toBeGreaterThanOrEqual(400);
      expect(entry.meaning.length).toBeGreaterThan(10);
      expect(entry.meaning).not.toContain('\n');
    }
  });
});
