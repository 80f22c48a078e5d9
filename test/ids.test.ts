/** Time-ordered ids minted from a pool of random bytes: unique, version 7, and increasing. */
import { describe, expect, it } from 'vitest';
import { validate, version } from 'uuid';
import { timeOrderedIds } from '../src/infra/ids.js';

describe('time-ordered ids', () => {
  it('keep increasing within one millisecond, across the pool’s refills', () => {
    const newId = timeOrderedIds(() => 1_800_000_000_000);
    const ids = Array.from({ length: 10_000 }, newId);
    expect(ids.every((id) => validate(id) && version(id) === 7)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.every((id, index) => index === 0 || id > (ids[index - 1] ?? ''))).toBe(true);
  });

  it('follow the clock, and never go back when it does', () => {
    const clock = [1_800_000_000_000, 1_800_000_000_005, 1_800_000_000_001, 1_800_000_000_009];
    let tick = 0;
    const newId = timeOrderedIds(() => clock[tick++ % clock.length] ?? 0);
    const ids = Array.from({ length: 8 }, newId);
    expect(ids.every((id, index) => index === 0 || id > (ids[index - 1] ?? ''))).toBe(true);
    // The first 48 bits are the millisecond: 1_800_000_000_000 = 0x01a3185c5000.
    expect(ids[0]?.slice(0, 13)).toBe('01a3185c-5000');
  });
});
