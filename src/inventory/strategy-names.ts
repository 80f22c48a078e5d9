/** The names of every stock strategy, known or planned (DESIGN.md, "Stock strategies"). */
export const STRATEGY_NAMES = [
  'naive',
  'pessimistic',
  'optimistic',
  'atomic',
  'redis-lua',
  'redis-lock',
  'event-sourced',
  'queue',
] as const;

export type StrategyName = (typeof STRATEGY_NAMES)[number];

export function isStrategyName(value: unknown): value is StrategyName {
  return typeof value === 'string' && (STRATEGY_NAMES as readonly string[]).includes(value);
}
