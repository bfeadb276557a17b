// BullMQ no-op drain, for bench/peers/run.sh.
//
//   node drain.mjs PORT N CONCURRENCY
//
// What it measures, the same way `vigil bench` does:
// - enqueue N no-op jobs with Queue.addBulk (1,000 per call) into an empty queue;
// - then one Worker (concurrency C, BullMQ's default options: completed jobs are kept, as
//   vigil keeps finished jobs until their retention) drains the backlog. The clock starts
//   when the worker is connected and ready and stops at the N-th `completed` event:
//   process_jobs_per_s = N / drain time (the enqueue is not timed).
// - Redis CPU per job: INFO cpu (used_cpu_sys + used_cpu_user) before the enqueue and after
//   the drain, divided by N (the whole life cycle of a job).
// Prints one JSON line.
import { readFileSync } from 'node:fs';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const [port, n, concurrency] = process.argv.slice(2).map(Number);
const clients = [];
const connect = () => {
  const c = new IORedis({ host: '127.0.0.1', port, maxRetriesPerRequest: null });
  clients.push(c);
  return c;
};
const version = JSON.parse(
  readFileSync(new URL('./node_modules/bullmq/package.json', import.meta.url)),
).version;

const queue = new Queue('bench', { connection: connect() });
const redis = connect(); // for INFO only
const cpuSeconds = async () => {
  const info = await redis.info('cpu');
  const field = (name) => Number(info.match(new RegExp(`${name}:([0-9.]+)`))[1]);
  return field('used_cpu_sys') + field('used_cpu_user');
};

const cpuBefore = await cpuSeconds();
for (let i = 0; i < n; i += 1000) {
  const chunk = [];
  for (let j = i; j < Math.min(n, i + 1000); j++) chunk.push({ name: 'noop', data: { i: j } });
  await queue.addBulk(chunk);
}

let done = 0;
let finished;
const drained = new Promise((resolve) => (finished = resolve));
const worker = new Worker('bench', async () => {}, {
  connection: connect(),
  concurrency,
  autorun: false,
});
worker.on('completed', () => {
  done += 1;
  if (done === n) finished();
});
await worker.waitUntilReady();
const began = process.hrtime.bigint();
worker.run();
await drained;
const seconds = Number(process.hrtime.bigint() - began) / 1e9;
const cpuAfter = await cpuSeconds();
await worker.close();
await queue.close();
for (const c of clients) c.disconnect();

console.log(
  JSON.stringify({
    system: 'bullmq',
    version,
    n,
    concurrency,
    process_jobs_per_s: Math.round(n / seconds),
    redis_cpu_us_per_job: Math.round(((cpuAfter - cpuBefore) * 1e7) / n) / 10,
  }),
);
