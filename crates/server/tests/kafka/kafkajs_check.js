// Stock KafkaJS against a running carteiro's Kafka listener.
//
// Usage: node kafkajs_check.js BOOTSTRAP
//
// Checks admin createTopics and fetchTopicMetadata, a producer sending a
// batch (acks checked), and a consumer group reading every record back with
// fromBeginning: true. Every wait is bounded; any failure exits non-zero.
// KafkaJS is found through NODE_PATH (the Rust test sets it to
// target/kafka-node/node_modules, where `bash scripts/test` installs the
// pinned package.json beside this file). CARTEIRO_KAFKA_DEBUG=1 logs every
// request and response (logLevel DEBUG).
'use strict';

let kafkajs;
try {
  kafkajs = require('kafkajs');
} catch (e) {
  console.error(
    `kafkajs is not installed where node looks (NODE_PATH=${process.env.NODE_PATH || ''}): ${e.message}; ` +
      'run `bash scripts/test` (it installs crates/server/tests/kafka/package.json into target/kafka-node)'
  );
  process.exit(1);
}
const { Kafka, logLevel } = kafkajs;

const SCRIPT_TIMEOUT_MS = Number(process.env.CARTEIRO_SCRIPT_TIMEOUT_S || 60) * 1000;
const WAIT_MS = 20000;

let checks = 0;
const failures = [];

class CheckFailed extends Error {}

function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
  checks += 1;
}

function ok(message) {
  console.log(`ok: ${message}`);
}

// Runs one step; a failure is reported and the steps after it still run.
async function step(name, body) {
  try {
    await body();
  } catch (e) {
    failures.push(name);
    if (e instanceof CheckFailed) {
      console.log(`FAIL: ${name}: ${e.message}`);
    } else {
      console.log(`FAIL: ${name}: ${e && e.name}: ${e && e.message}`);
      console.error(e && e.stack);
    }
  }
}

// Resolves with `promise`, or rejects naming `what` after `ms`.
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main() {
  if (process.argv.length !== 3) {
    console.error('usage: node kafkajs_check.js BOOTSTRAP');
    process.exit(2);
  }
  const bootstrap = process.argv[2];
  const overrun = setTimeout(() => {
    console.log(`FAIL: KafkaJS checks overran their ${SCRIPT_TIMEOUT_MS} ms bound`);
    process.exit(2);
  }, SCRIPT_TIMEOUT_MS);
  const version = require('kafkajs/package.json').version;
  console.log(`kafkajs ${version}, node ${process.version} against ${bootstrap}`);
  const started = Date.now();

  const kafka = new Kafka({
    clientId: 'carteiro-kafkajs-check',
    brokers: [bootstrap],
    connectionTimeout: 5000,
    requestTimeout: WAIT_MS,
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 },
    logLevel: process.env.CARTEIRO_KAFKA_DEBUG ? logLevel.DEBUG : logLevel.WARN,
  });
  const topic = 'kafkajs-topic';
  const partitions = 3;
  const n = 30;
  const admin = kafka.admin();
  await within(WAIT_MS, 'admin connect', admin.connect());

  await step('createTopics', async () => {
    const created = await within(
      WAIT_MS,
      'createTopics',
      admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true, timeout: WAIT_MS })
    );
    check(created === true, `createTopics answered ${created}, expected true (created)`);
    console.log('  (KafkaJS logs the expected TOPIC_ALREADY_EXISTS of this second createTopics as an ERROR)');
    const again = await within(
      WAIT_MS,
      'createTopics again',
      admin.createTopics({ topics: [{ topic, numPartitions: partitions }], timeout: WAIT_MS })
    );
    check(again === false, `a second createTopics answered ${again}, expected false (it exists)`);
    ok(`admin.createTopics created ${topic} with ${partitions} partitions (again: false, it exists)`);
  });

  await step('fetchTopicMetadata', async () => {
    const metadata = await within(WAIT_MS, 'fetchTopicMetadata', admin.fetchTopicMetadata({ topics: [topic] }));
    check(metadata.topics.length === 1 && metadata.topics[0].name === topic, `fetchTopicMetadata: ${JSON.stringify(metadata)}`);
    const ids = metadata.topics[0].partitions.map((p) => p.partitionId).sort();
    check(JSON.stringify(ids) === JSON.stringify([0, 1, 2]), `partitions of ${topic} are ${ids}`);
    for (const p of metadata.topics[0].partitions) {
      check(p.partitionErrorCode === 0 && p.leader === 0, `partition ${p.partitionId}: ${JSON.stringify(p)}`);
    }
    ok(`admin.fetchTopicMetadata: ${topic} has partitions ${ids}, each led by node 0`);
  });

  const expected = [];
  await step('producer.send', async () => {
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    await within(WAIT_MS, 'producer connect', producer.connect());
    try {
      const messages = [];
      for (let i = 0; i < n; i++) {
        messages.push({ key: `key-${i}`, value: `value-${i}`, partition: i % partitions, headers: { seq: String(i) } });
      }
      const acks = await within(WAIT_MS, 'producer.send', producer.send({ topic, acks: -1, messages }));
      check(acks.length === partitions, `send answered ${acks.length} partition acks: ${JSON.stringify(acks)}`);
      for (const a of acks) {
        check(a.topicName === topic && a.errorCode === 0, `ack ${JSON.stringify(a)}`);
        check(a.baseOffset === '0', `partition ${a.partition} baseOffset ${a.baseOffset}, expected 0 (a fresh topic)`);
      }
      const more = await within(
        WAIT_MS,
        'producer.send (second batch)',
        producer.send({ topic, acks: -1, messages: [{ key: 'last', value: 'last', partition: 0 }] })
      );
      const perPartition = n / partitions;
      check(
        more.length === 1 && more[0].errorCode === 0 && more[0].baseOffset === String(perPartition),
        `second send: ${JSON.stringify(more)}, expected baseOffset ${perPartition}`
      );
      expected.push(...messages.map((m) => `${m.key}=${m.value}`), 'last=last');
      ok(`producer.send (acks -1) of ${n} records over ${partitions} partitions: every ack error 0, baseOffsets 0, then ${perPartition}`);
    } finally {
      await producer.disconnect();
    }
  });

  await step('consumer group fromBeginning', async () => {
    check(expected.length > 0, 'nothing was produced to read back');
    const consumer = kafka.consumer({
      groupId: 'kafkajs-group',
      sessionTimeout: 6000,
      heartbeatInterval: 500,
      maxWaitTimeInMs: 200,
    });
    await within(WAIT_MS, 'consumer connect', consumer.connect());
    try {
      await within(WAIT_MS, 'subscribe', consumer.subscribe({ topics: [topic], fromBeginning: true }));
      const read = [];
      let done;
      const all = new Promise((resolve) => {
        done = resolve;
      });
      await consumer.run({
        eachMessage: async ({ partition, message }) => {
          read.push({ partition, offset: message.offset, text: `${message.key}=${message.value}` });
          if (read.length >= expected.length) done();
        },
      });
      await within(WAIT_MS, `reading ${expected.length} records`, all).catch((e) => {
        throw new CheckFailed(`${e.message}; read ${read.length}`);
      });
      const got = read.map((r) => r.text).sort();
      check(
        JSON.stringify(got) === JSON.stringify([...expected].sort()),
        `the group read ${got.length} records that are not the ${expected.length} produced: ${got.slice(0, 5)}...`
      );
      for (let p = 0; p < partitions; p++) {
        const offsets = read.filter((r) => r.partition === p).map((r) => Number(r.offset));
        check(
          offsets.every((o, i) => o === i),
          `partition ${p} was read at offsets ${offsets}, not 0.. in order`
        );
      }
      ok(`consumer group (fromBeginning: true) read all ${expected.length} records, each partition in order from 0`);
    } finally {
      await within(WAIT_MS, 'consumer disconnect', consumer.disconnect());
    }
  });

  await within(WAIT_MS, 'admin disconnect', admin.disconnect());
  clearTimeout(overrun);
  const elapsed = ((Date.now() - started) / 1000).toFixed(1);
  if (failures.length > 0) {
    console.log(`FAILED: kafkajs: ${failures} failed (${checks} checks passed) in ${elapsed} s`);
    process.exit(1);
  }
  console.log(`PASS: kafkajs: ${checks} checks in ${elapsed} s`);
}

main().catch((e) => {
  console.log(`FAIL: ${e && e.message}`);
  console.error(e && e.stack);
  process.exit(1);
});
