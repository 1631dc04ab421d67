// A contender that follows the reference sample's lease protocol, through the official JavaScript SDK
// (@azure/cosmos, pinned in package-lock.json). The Go tests run it beside cosmoslease contenders against the
// local server, so mixed fleets are tested with the sample's real document shape and rules:
//  - the document is {id, leaseKey, leaseId, ownerId, acquiredAt, expiresAt, metadata}, with no epoch;
//  - every write is preceded by a read; a lease is free when it is missing, when its expiresAt is past by this
//    process's clock, or when it names this instance;
//  - acquire creates the document, or replaces it If-Match the ETag read; renew reads, checks the leaseId is
//    still ours, and replaces If-Match with expiresAt = now + duration;
//  - the holder works only while its own clock is before the expiresAt of its last confirmed write;
//  - release deletes the document, If-Match.
//
// Usage: node sample.js --instance ID [--lease KEY] [--region R] [--duration MS] [--renew-interval MS]
//          [--work-interval MS] [--retry MS] [--hold-for MS | MIN-MAX] [--abandon P] [--stall P] [--run-for MS]
// --retry stands by (trying every MS) instead of exiting 3 when the lease is held. --hold-for releases after
// that long (a range: a random length in it), else the holder works until it is killed. --abandon P stops a
// holding without releasing it with probability P (1 when given without a value), as a crashed instance
// would, and waits one lease duration before contending again, as a restarted one would. --stall P makes a
// holding, with probability P, send no renewal (as if every renewal failed) and work on until its expiresAt, as
// the sample's holder does: the case that tests a contender's patience. --run-for contends
// again after each holding until MS have passed (after a release, only once 1.2 retry periods have passed).
// It exits when its standard input closes: the Go test holds the other end, so it never outlives the test.
// The account comes from COSMOS_CONNECTION_STRING, COSMOS_DATABASE and COSMOS_CONTAINER (partitioned on
// /leaseKey). Events go to stdout as JSON lines: event, time, instance, lease, leaseId, owner, acquiredAt,
// expiresAt. Exit codes: 0 done, 1 error, 3 held (without --retry), 4 lost while holding.
"use strict";

const { CosmosClient } = require("@azure/cosmos");
const crypto = require("crypto");
const os = require("os");

function parseArgs(argv) {
  const o = { lease: "critical-section-lock", region: "", duration: 60000, renewInterval: 40000, workInterval: 3000,
    retry: 0, holdFor: null, abandon: 0, stall: 0, runFor: 0 };
  const num = (name, v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) fail(`${name} ${JSON.stringify(v)} is not a number of milliseconds`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) fail(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case "--instance": o.instance = next(); break;
      case "--lease": o.lease = next(); break;
      case "--region": o.region = next(); break;
      case "--duration": o.duration = num(a, next()); break;
      case "--renew-interval": o.renewInterval = num(a, next()); break;
      case "--work-interval": o.workInterval = num(a, next()); break;
      case "--retry": o.retry = num(a, next()); break;
      case "--run-for": o.runFor = num(a, next()); break;
      case "--hold-for": {
        const [lo, hi] = next().split("-");
        o.holdFor = [num(a, lo), num(a, hi ?? lo)];
        break;
      }
      case "--stall": o.stall = num(a, next()); break;
      case "--abandon":
        o.abandon = i + 1 < argv.length && !argv[i + 1].startsWith("--") ? num(a, argv[++i]) : 1;
        break;
      default: fail(`unknown argument ${JSON.stringify(a)}`);
    }
  }
  if (!o.instance) fail("--instance ID is required");
  return o;
}

function parseConnectionString(cs) {
  const parts = Object.fromEntries(cs.split(";").filter((p) => p.includes("=")).map((p) => {
    const i = p.indexOf("=");
    return [p.slice(0, i).trim().toLowerCase(), p.slice(i + 1).trim()];
  }));
  if (!parts.accountendpoint || !parts.accountkey) fail("COSMOS_CONNECTION_STRING needs AccountEndpoint=…;AccountKey=…");
  return { endpoint: parts.accountendpoint, key: parts.accountkey };
}

function fail(msg) {
  process.stderr.write(`sample: ${msg}\n`);
  process.exit(1);
}

process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();

const opts = parseArgs(process.argv.slice(2));
const { COSMOS_CONNECTION_STRING: cs, COSMOS_DATABASE: db, COSMOS_CONTAINER: ctr } = process.env;
if (!cs || !db || !ctr) fail("set COSMOS_CONNECTION_STRING, COSMOS_DATABASE and COSMOS_CONTAINER");
// Endpoint discovery off: the local server advertises its address as https although it serves http. With one
// region, as here, discovery would send every request to the same endpoint anyway.
const client = new CosmosClient({ ...parseConnectionString(cs), connectionPolicy: { enableEndpointDiscovery: false } });
const container = client.database(db).container(ctr);
const id = "lease-" + opts.lease;
const item = container.item(id, opts.lease);
const iso = (ms) => new Date(ms).toISOString();
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

function emit(event, fields) {
  process.stdout.write(JSON.stringify({ event, time: iso(Date.now()), instance: opts.instance, lease: opts.lease, ...fields }) + "\n");
}

const describe = (doc) => ({ leaseId: doc.leaseId, owner: doc.ownerId, acquiredAt: doc.acquiredAt, expiresAt: doc.expiresAt });

async function read() {
  const r = await item.read();
  return r.statusCode === 404 ? undefined : r.resource;
}

// tryAcquire: read, judge by this process's clock, then create or replace If-Match.
async function tryAcquire() {
  const cur = await read();
  const now = Date.now();
  if (cur && Date.parse(cur.expiresAt) > now && cur.ownerId !== opts.instance) {
    return { holder: cur };
  }
  const doc = { id, leaseKey: opts.lease, leaseId: crypto.randomUUID(), ownerId: opts.instance, acquiredAt: iso(now),
    expiresAt: iso(now + opts.duration),
    metadata: { instanceId: opts.instance, region: opts.region, hostname: os.hostname(), startTime: iso(now) } };
  try {
    if (cur) {
      await item.replace(doc, { accessCondition: { type: "IfMatch", condition: cur._etag } });
    } else {
      await container.items.create(doc);
    }
  } catch (err) {
    if (err.code === 409 || err.code === 412) return { holder: (await read()) ?? cur };
    throw err;
  }
  return { doc, expiresAt: now + opts.duration };
}

// renew: read, check the lease is still ours, replace If-Match with a new expiresAt. The holder believes the
// new expiresAt only once the write is confirmed.
async function renew(h) {
  const cur = await read();
  if (!cur || cur.leaseId !== h.doc.leaseId) return false;
  const now = Date.now();
  const next = { ...h.doc, expiresAt: iso(now + opts.duration) };
  try {
    await item.replace(next, { accessCondition: { type: "IfMatch", condition: cur._etag } });
  } catch (err) {
    if (err.code === 412 || err.code === 404) return false;
    throw err;
  }
  h.doc = next;
  h.expiresAt = now + opts.duration;
  emit("renewed", describe(next));
  return true;
}

async function release(h) {
  const cur = await read();
  if (!cur || cur.leaseId !== h.doc.leaseId) return;
  try {
    await item.delete({ accessCondition: { type: "IfMatch", condition: cur._etag } });
  } catch (err) {
    if (err.code !== 412 && err.code !== 404) throw err;
  }
}

// hold works every workInterval while this process's clock is before expiresAt, renewing every renewInterval,
// until holdFor has passed (forever without it). It returns "lost", "released" or "abandoned".
async function hold(h) {
  const stalled = Math.random() < opts.stall;
  const end = opts.holdFor && !stalled ? Date.now() + opts.holdFor[0] + Math.random() * (opts.holdFor[1] - opts.holdFor[0]) : Infinity;
  let renewAt = stalled ? Infinity : Date.now() + opts.renewInterval;
  for (;;) {
    if (Date.now() >= end) break;
    if (Date.now() >= renewAt) {
      if (!(await renew(h))) {
        emit("lost", { ...describe(h.doc), reason: "taken over" });
        return "lost";
      }
      renewAt = Date.now() + opts.renewInterval;
      continue;
    }
    const t = Date.now();
    if (t >= h.expiresAt) {
      emit("lost", { ...describe(h.doc), reason: "expired before a renewal was confirmed" });
      return "lost";
    }
    emit("work", { ...describe(h.doc), time: iso(t) });
    await sleep(Math.min(opts.workInterval, renewAt - Date.now(), end - Date.now()));
  }
  if (Math.random() < opts.abandon) {
    emit("abandoned", describe(h.doc));
    return "abandoned";
  }
  await release(h);
  emit("released", describe(h.doc));
  return "released";
}

async function main() {
  const stop = opts.runFor > 0 ? Date.now() + opts.runFor : 0;
  emit("started", {});
  let code = 0;
  do {
    let got;
    for (;;) {
      got = await tryAcquire();
      if (got.doc) break;
      emit("held", got.holder ? describe(got.holder) : {});
      if (!opts.retry) return 3;
      if (stop && Date.now() >= stop) return 0;
      await sleep(opts.retry * (0.9 + 0.2 * Math.random()));
    }
    emit("acquired", describe(got.doc));
    const how = await hold(got);
    code = how === "lost" ? 4 : 0;
    if (how === "abandoned") await sleep(opts.duration);
    // Having just deleted the document, this process would win it back at once every time (the sample has no
    // fairness); waiting a little longer than the others' retry lets a run mix holders.
    if (how === "released" && stop) await sleep(opts.retry * 1.2);
  } while (stop && Date.now() < stop);
  return code;
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`sample: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
