/**
 * The `queue` strategy's lines: one ordered line per product in this process, in the order the
 * server received the requests, and a single writer per product that takes everything waiting (up
 * to `groupMax`) and has it decided in one statement. While one group is out, the next collects:
 * there is no timer, so a trickle goes one by one at once and a storm goes in groups as large as
 * the round trip lets it gather.
 *
 * It never guards stock: the statement does, under the product row's lock. What it adds is order
 * (first come, first served, by arrival here) and the grouping. Beyond `capacity` waiting, or past
 * `waitMs` in line, a request is answered `503 OVERLOADED` with nothing done; once the product
 * sold out, the line answers `SOLD_OUT` from memory for `soldOutMemoryMs` (never sells from
 * memory), and forgets it as soon as units come back here.
 *
 * @remarks Written here rather than taken from a queue library: it is an array per product and
 * one flag, and the grouping rule (take everything waiting when the last group returns) is the
 * point.
 */
import { canonicalId } from '../../infra/canonical-id.js';
import { DomainError } from '../../infra/errors.js';
import type { ReserveOutcome, ReserveRefusal, ReserveRequest } from '../inventory.types.js';

export interface QueueLineOptions {
  /** Requests decided in one statement at most. */
  readonly groupMax: number;
  /** Requests one product's line holds; beyond it, `503 OVERLOADED` at once. */
  readonly capacity: number;
  /** How long a request may wait in line before it is answered `503 OVERLOADED` (nothing done). */
  readonly waitMs: number;
  /** How long the line answers `SOLD_OUT` from memory after the store said none are left. */
  readonly soldOutMemoryMs: number;
}

/** Decides a group of one product's requests, in order: one outcome per request. */
export type DecideGroup = (productId: string, group: readonly ReserveRequest[]) => Promise<ReserveOutcome[]>;

interface Waiter {
  readonly request: ReserveRequest;
  readonly settle: (outcome: ReserveOutcome) => void;
  readonly fail: (error: unknown) => void;
  timer: NodeJS.Timeout | undefined;
}

interface Line {
  waiting: Waiter[];
  /** A group of this product is with the store. */
  sending: boolean;
  /** Until when (ms) the line answers `SOLD_OUT` from memory. */
  soldOutUntil: number;
}

const SOLD_OUT: ReserveRefusal = Object.freeze({ ok: false, reason: 'SOLD_OUT', remaining: 0 });

function overloaded(detail: string): DomainError {
  return new DomainError('OVERLOADED', detail, {}, 1);
}

export class QueueLines {
  private readonly lines = new Map<string, Line>();

  constructor(
    private readonly decide: DecideGroup,
    private readonly options: QueueLineOptions,
  ) {}

  /** Puts the request at the end of its product's line; resolves with its decision. */
  enqueue(request: ReserveRequest): Promise<ReserveOutcome> {
    // One line per product, so one spelling of its id: a second line would break first come, first served.
    const line = this.lineOf(canonicalId(request.productId, 'productId'));
    if (Date.now() < line.soldOutUntil) return Promise.resolve(SOLD_OUT);
    if (line.waiting.length >= this.options.capacity) {
      return Promise.reject(overloaded(`the line for this product is full (${this.options.capacity} waiting); nothing was done`));
    }
    return new Promise<ReserveOutcome>((settle, fail) => {
      const waiter: Waiter = { request, settle, fail, timer: undefined };
      waiter.timer = setTimeout(() => this.giveUp(line, waiter), this.options.waitMs);
      line.waiting.push(waiter);
      this.pump(request.productId, line);
    });
  }

  /** Units of the product came back (cancel, expiry, added stock): ask the store again. */
  unitsBack(productId: string): void {
    const line = this.lines.get(productId);
    if (line) line.soldOutUntil = 0;
  }

  /** Requests waiting in every line (for tests and metrics). */
  get waiting(): number {
    let total = 0;
    for (const line of this.lines.values()) total += line.waiting.length;
    return total;
  }

  private lineOf(productId: string): Line {
    let line = this.lines.get(productId);
    if (!line) {
      line = { waiting: [], sending: false, soldOutUntil: 0 };
      this.lines.set(productId, line);
    }
    return line;
  }

  private giveUp(line: Line, waiter: Waiter): void {
    const index = line.waiting.indexOf(waiter);
    // Already in a group with the store: its decision comes from there.
    if (index < 0) return;
    line.waiting.splice(index, 1);
    waiter.fail(overloaded(`waited ${this.options.waitMs} ms in line for this product; nothing was done`));
  }

  private pump(productId: string, line: Line): void {
    if (line.sending || line.waiting.length === 0) return;
    if (Date.now() < line.soldOutUntil) {
      // Sold out a moment ago: everyone waiting hears it now, without a round trip.
      for (const waiter of line.waiting.splice(0)) this.settle(waiter, SOLD_OUT);
      return;
    }
    const group = line.waiting.splice(0, this.options.groupMax);
    for (const waiter of group) clearTimeout(waiter.timer);
    line.sending = true;
    void this.decide(
      productId,
      group.map((waiter) => waiter.request),
    )
      .then(
        (outcomes) => {
          const last = outcomes.at(-1);
          const left = last === undefined ? undefined : last.ok ? last.remaining : last.reason === 'SOLD_OUT' ? last.remaining : undefined;
          if (left === 0 && this.options.soldOutMemoryMs > 0) line.soldOutUntil = Date.now() + this.options.soldOutMemoryMs;
          group.forEach((waiter, index) => {
            const outcome = outcomes[index];
            if (outcome === undefined) waiter.fail(new Error('a group statement answered fewer rows than it was sent'));
            else this.settle(waiter, outcome);
          });
        },
        (error: unknown) => {
          for (const waiter of group) waiter.fail(error);
        },
      )
      .finally(() => {
        line.sending = false;
        this.pump(productId, line);
      });
  }

  private settle(waiter: Waiter, outcome: ReserveOutcome): void {
    clearTimeout(waiter.timer);
    waiter.settle(outcome);
  }
}
