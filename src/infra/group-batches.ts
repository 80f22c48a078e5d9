/**
 * Group commit for statements: calls that arrive together go to the database as one statement.
 * The orders module sends its `Idempotency-Key` claims and answers through it.
 */

/** Items sent in one statement at most. */
const MAX_BATCH = 500;
/**
 * Statements of one batcher in flight at once; what arrives meanwhile waits and goes together.
 * One rather than two: each statement costs the server a write and PostgreSQL a wake-up on the
 * same cores, and the statements one slot saves outweigh the wait (`bench`: less server CPU per
 * keyed refusal, `hot` unchanged). Every statement is short (autocommit, no row held past it), so
 * one in flight is never stuck behind a long one.
 */
const MAX_BATCHES_IN_FLIGHT = 1;
/**
 * …except in a burst: while a full batch waits, one more statement may go. When a drop's last
 * unit goes, its whole line is refused in one turn (~1,900 refusals to keep); one at a time,
 * PostgreSQL would sit idle while the server sends each batch's answers, and the server while
 * PostgreSQL stores the next. Side by side the two overlap, and the line is answered sooner.
 */
const MAX_BATCHES_IN_FLIGHT_IN_A_BURST = 2;

/**
 * Group commit: calls go to the database together. A call that finds a free slot goes with the
 * others of its event-loop turn; calls that arrive while {@link MAX_BATCHES_IN_FLIGHT} statement(s)
 * are out wait for one to come back and then go as one statement (at most {@link MAX_BATCH}; a
 * burst may have {@link MAX_BATCHES_IN_FLIGHT_IN_A_BURST} out).
 * Under a trickle every call goes at once; under a storm a thousand claims take a handful of
 * statements instead of one per turn, and each statement costs PostgreSQL a wake-up, a parse and
 * a commit on the same cores as the server. `send` returns each item's result, in order.
 *
 * @remarks Written here rather than taken from a DataLoader-style library: those batch per tick
 * only, and the slots in flight are the point.
 */
export class GroupBatches<Item, Result> {
  private pending: { item: Item; settle: (result: Result) => void; fail: (error: unknown) => void }[] = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(private readonly send: (items: readonly Item[]) => Promise<readonly Result[]>) {}

  add(item: Item): Promise<Result> {
    return new Promise((settle, fail) => {
      this.pending.push({ item, settle, fail });
      this.schedule();
    });
  }

  /** Flushes after this turn's calls are in, if a slot is free (else when one frees). */
  private schedule(): void {
    const slots = this.pending.length >= MAX_BATCH ? MAX_BATCHES_IN_FLIGHT_IN_A_BURST : MAX_BATCHES_IN_FLIGHT;
    if (this.scheduled || this.inFlight >= slots || this.pending.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    const batch = this.pending.splice(0, MAX_BATCH);
    this.inFlight += 1;
    this.schedule();
    try {
      const results = await this.send(batch.map((entry) => entry.item));
      batch.forEach((entry, index) => entry.settle(results[index] as Result));
    } catch (error) {
      for (const entry of batch) entry.fail(error);
    } finally {
      this.inFlight -= 1;
      this.schedule();
    }
  }
}
