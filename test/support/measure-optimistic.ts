/**
 * Measures what the optimistic strategy's bounded retries leave unsold: 2,000 buyers chase 100
 * units once each (no client retries), for several `OPTIMISTIC_RETRIES` values. The figures in
 * docs/strategies.md ("How the `OPTIMISTIC_RETRIES` default was chosen") come from this script:
 *
 *   npx tsx test/support/measure-optimistic.ts [retries,… (default 0,1,3,5,10)] [runs (default 3)]
 *
 * Needs the 127.0.0.1 PostgreSQL the tests use; every server runs on its own throw-away databases.
 */
import { startTestServer } from './server.js';
import { storm, tally } from './storm.js';

const retriesList = (process.argv[2] ?? '0,1,3,5,10').split(',').map(Number);
const runs = Number(process.argv[3] ?? 3);
const BUYERS = 2_000;
const STOCK = 100;

for (const retries of retriesList) {
  const t = await startTestServer({ optimisticRetries: retries });
  try {
    const buyers = await t.api.createBuyers(BUYERS);
    const unsold: number[] = [];
    let contention = 0;
    let millis = 0;
    for (let run = 0; run < runs; run += 1) {
      const product = await t.api.createProduct({ stock: STOCK, strategy: 'optimistic' });
      const started = performance.now();
      const answers = await storm(BUYERS, (i) => t.api.purchase(buyers[i]?.token ?? '', product.id));
      millis += performance.now() - started;
      const counts = tally(answers);
      unsold.push(STOCK - (counts['201'] ?? 0));
      contention += counts['409 CONTENTION'] ?? 0;
      const other = Object.keys(counts).filter((key) => !['201', '409 SOLD_OUT', '409 CONTENTION'].includes(key));
      if (other.length > 0) console.error(`unexpected answers: ${JSON.stringify(counts)}`);
    }
    const mean = unsold.reduce((sum, n) => sum + n, 0) / runs;
    console.log(
      `retries=${retries}: unsold per run ${unsold.join(', ')} (mean ${mean.toFixed(1)} of ${STOCK}); ` +
        `CONTENTION answers per run ${(contention / runs).toFixed(0)}; storm ${(millis / runs).toFixed(0)} ms`,
    );
  } finally {
    await t.stop();
  }
}
