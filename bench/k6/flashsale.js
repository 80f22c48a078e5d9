// flashsale scenarios for k6 — the same experiments as `flashsale bench`, for people who use k6.
//
//   k6 run -e BASE_URL=http://127.0.0.1:3000 -e ADMIN_TOKEN=… -e SCENARIO=herd -e STRATEGY=atomic bench/k6/flashsale.js
//
// Env: SCENARIO (herd | drop | stampede | checkout | hot), STRATEGY (default: the server's),
// BUYERS, STOCK, DURATION (s, hot and checkout), CONNECTIONS (hot), THINK_MS (checkout, max think).
// setup() creates the product and the buyers through the admin API; every VU is one buyer on its
// own connections; teardown() runs the server's audit and prints it (VUs cannot hand their order
// ids to teardown, so the 2xx-without-order check is bench's alone). k6's http_req_duration leaves
// out connection set-up, which bench counts: compare k6 with k6. k6 cannot tell "time written" or
// fairness; use `flashsale bench` for those, the floor, CPU and DB work.
import http from 'k6/http';
import { sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import exec from 'k6/execution';

const SCENARIOS = {
  herd: { kind: 'storm', buyers: 1000, stock: 1 },
  drop: { kind: 'storm', buyers: 2000, stock: 100 },
  stampede: { kind: 'storm', buyers: 10000, stock: 1000 },
  checkout: { kind: 'checkout', buyers: 2000, stock: 100, holdSeconds: 3, duration: 12, abandon: 0.3 },
  hot: { kind: 'hot', buyers: 5000, stock: 10000000, duration: 10, connections: 64 },
};

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:3000').replace(/\/$/, '');
const ADMIN_TOKEN = __ENV.ADMIN_TOKEN || '';
const NAME = __ENV.SCENARIO || 'herd';
const BASE = SCENARIOS[NAME];
if (!BASE) throw new Error(`SCENARIO must be one of ${Object.keys(SCENARIOS).join(', ')}`);
const S = {
  ...BASE,
  buyers: Number(__ENV.BUYERS || BASE.buyers),
  stock: Number(__ENV.STOCK || BASE.stock),
  duration: Number(__ENV.DURATION || BASE.duration || 0),
  connections: Number(__ENV.CONNECTIONS || BASE.connections || 0),
};
const THINK_MS = Number(__ENV.THINK_MS || 1000);

const sold = new Counter('flashsale_sold');
const refused = new Counter('flashsale_refused');
const shed = new Counter('flashsale_shed');
const serverErrors = new Counter('flashsale_5xx');
const connectionErrors = new Counter('flashsale_connection_errors');
const paid = new Counter('flashsale_paid');
const resold = new Counter('flashsale_resold');
const latency = new Trend('flashsale_purchase_latency', true);

export const options = {
  // The herd arrives at once: every VU is a buyer with one iteration, all started together.
  scenarios:
    S.kind === 'hot'
      ? { hot: { executor: 'constant-vus', vus: S.connections, duration: `${S.duration}s` } }
      : { [NAME]: { executor: 'per-vu-iterations', vus: S.buyers, iterations: 1, maxDuration: `${Math.max(120, S.duration + 60)}s` } },
  setupTimeout: '300s',
  teardownTimeout: '300s',
  summaryTrendStats: ['avg', 'p(50)', 'p(90)', 'p(99)', 'max'],
};

const admin = (method, path, body) => {
  const response = http.request(method, `${BASE_URL}${path}`, body === undefined ? null : JSON.stringify(body), {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    timeout: '300s',
  });
  if (response.status >= 300) throw new Error(`${method} ${path}: ${response.status} ${response.body}`);
  return response.json();
};

export function setup() {
  const product = admin('POST', '/v1/admin/products', {
    name: `k6 ${NAME}`,
    priceCents: 1000,
    stock: S.stock,
    perBuyerLimit: S.kind === 'hot' ? null : 1,
    holdSeconds: S.holdSeconds || 300,
    ...(__ENV.STRATEGY ? { strategy: __ENV.STRATEGY } : {}),
  });
  const buyers = [];
  while (buyers.length < S.buyers) {
    const count = Math.min(20000, S.buyers - buyers.length);
    buyers.push(...admin('POST', '/v1/admin/users', { count, balanceCents: 10000000, namePrefix: 'k6-' }).users.map((u) => u.token));
  }
  return { productId: product.id, buyers, startedAt: Date.now() };
}

/** One purchase; a shed answer (503, 409 CONTENTION) is retried after Retry-After. */
function purchase(data, token, key) {
  for (let attempt = 0; attempt < 30; attempt += 1) {
    const response = http.post(`${BASE_URL}/v1/purchases`, JSON.stringify({ productId: data.productId, quantity: 1 }), {
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': key },
      timeout: '120s',
      tags: { name: 'purchase' },
    });
    if (response.status === 0) {
      connectionErrors.add(1);
      return response;
    }
    latency.add(response.timings.duration);
    let code;
    try {
      code = response.json('code');
    } catch (_) {
      code = undefined;
    }
    if (response.status === 503 || (response.status === 409 && code === 'CONTENTION')) {
      shed.add(1);
      sleep(Number(response.headers['Retry-After'] || 1) + Math.random() * 0.25);
      continue;
    }
    if (response.status >= 500) serverErrors.add(1);
    else if (response.status < 300) sold.add(1);
    else refused.add(1, { code: String(code) });
    return response;
  }
  return null;
}

function pay(token, orderId) {
  sleep((Math.random() * THINK_MS) / 1000);
  const response = http.post(`${BASE_URL}/v1/orders/${orderId}/pay`, '{}', {
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': `pay-${orderId}` },
    tags: { name: 'pay' },
  });
  if (response.status < 300) paid.add(1);
}

export default function (data) {
  if (S.kind === 'hot') {
    const token = data.buyers[(exec.scenario.iterationInTest) % data.buyers.length];
    purchase(data, token, `k6-hot-${exec.vu.idInTest}-${exec.vu.iterationInScenario}-${data.startedAt}`);
    return;
  }
  const index = exec.vu.idInTest - 1;
  const token = data.buyers[index];
  let response = purchase(data, token, `k6-${data.startedAt}-${index}`);
  if (S.kind !== 'checkout' || response === null) return;
  if (response.status === 201) {
    if (((index * 2654435761) % 1000) / 1000 >= S.abandon) pay(token, response.json('order.id'));
    return;
  }
  // Losers come back while abandoned holds expire back to stock.
  for (let tries = 1; response && response.status === 409 && Date.now() - data.startedAt < S.duration * 1000; tries += 1) {
    sleep(1 + Math.random() * 0.5);
    response = purchase(data, token, `k6-${data.startedAt}-${index}-${tries}`);
    if (response && response.status === 201) {
      resold.add(1);
      pay(token, response.json('order.id'));
    }
  }
}

export function teardown(data) {
  sleep(2);
  const audit = admin('GET', `/v1/admin/audit?productId=${data.productId}`);
  console.log(`audit: ${JSON.stringify(audit)}`);
  if (!audit.ok) console.error('AUDIT FAILED: see the violations above');
  // k6 VUs cannot hand their order ids to teardown; the server-side audit checks orders against allocations.
}
