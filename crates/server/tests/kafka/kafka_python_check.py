"""Stock kafka-python (pure Python) against a running carteiro's Kafka listener.

Usage: python kafka_python_check.py BOOTSTRAP

Checks its version probe, KafkaAdminClient create/list/delete topics,
KafkaProducer (idempotence off) and a KafkaConsumer in a group reading back
what was produced. Every wait is bounded. A failed step is reported and the
steps after it still run; any failure exits non-zero.
Set CARTEIRO_KAFKA_DEBUG=1 for kafka-python's DEBUG log (every request and
response) on standard error. Driven by crates/server/tests/kafka_clients.rs;
installed by `bash scripts/test`.
"""

import logging
import os
import sys
import time

try:
    import kafka
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError
except ImportError as e:  # pragma: no cover - set-up problem
    sys.exit(
        f"kafka-python is not installed in this Python ({sys.executable}): {e}; "
        "run `bash scripts/test` (it installs scripts/requirements.txt into target/python-venv)"
    )

from harness import WAIT_S, bound, check, finish, ok, step  # noqa: E402

TIMEOUT_MS = int(WAIT_S * 1000)


class Checks:
    def __init__(self, bootstrap):
        self.common = {"bootstrap_servers": bootstrap, "request_timeout_ms": TIMEOUT_MS}
        self.admin = KafkaAdminClient(client_id="carteiro-kafka-python-admin", **self.common)
        self.topic = "kafka-python-topic"
        self.partitions = 3
        self.n = 30
        self.per_partition = {}

    def version_probe(self):
        # ApiVersions must place the broker as modern, not fall back to the
        # 0.8/0.10 guesses made for brokers it cannot place.
        # kafka-python 3 probes a broker's connection; node 0 is this broker.
        probed = self.admin._client.check_version(node_id=0, timeout_ms=TIMEOUT_MS)
        check(isinstance(probed, tuple) and probed >= (2, 1), f"check_version() is {probed}, expected at least (2, 1)")
        configured = self.admin.config["api_version"]
        check(configured is None or configured >= (2, 1), f"the admin client's api_version is {configured}")
        ok(f"check_version() identifies a modern broker: {probed}")

    def create_topics(self):
        new = NewTopic(self.topic, num_partitions=self.partitions, replication_factor=1)
        self.admin.create_topics([new], timeout_ms=TIMEOUT_MS)
        try:
            self.admin.create_topics([new], timeout_ms=TIMEOUT_MS)
            check(False, f"a second create_topics of {self.topic} succeeded")
        except TopicAlreadyExistsError:
            pass
        ok(f"KafkaAdminClient created {self.topic} ({self.partitions} partitions; again: TopicAlreadyExistsError)")

    def list_topics(self):
        listed = self.admin.list_topics()
        check(self.topic in listed, f"list_topics() is {listed}, without {self.topic}")
        ok(f"KafkaAdminClient.list_topics() lists {self.topic}")

    def produce(self):
        producer = KafkaProducer(
            client_id="carteiro-kafka-python-producer",
            enable_idempotence=False,
            acks="all",
            linger_ms=5,
            max_block_ms=TIMEOUT_MS,
            **self.common,
        )
        check(producer.config["api_version"] >= (2, 1), f"the producer's api_version is {producer.config['api_version']}")
        futures = [
            (i, producer.send(self.topic, key=f"key-{i}".encode(), value=f"value-{i}".encode(), partition=i % self.partitions))
            for i in range(self.n)
        ]
        producer.flush(timeout=WAIT_S)
        for i, future in futures:
            meta = future.get(timeout=WAIT_S)
            check(meta.topic == self.topic and meta.partition == i % self.partitions, f"record {i} landed in {meta.topic}[{meta.partition}]")
            self.per_partition.setdefault(meta.partition, []).append(meta.offset)
        for partition, offsets in self.per_partition.items():
            check(offsets == list(range(len(offsets))), f"partition {partition} offsets {offsets} are not 0..")
        producer.close(timeout=WAIT_S)
        ok(f"KafkaProducer(enable_idempotence=False, acks=all) sent {self.n} records over {self.partitions} partitions, offsets 0.. in each")

    def produce_default(self):
        """The default KafkaProducer: idempotent (kafka-python 3), acks=all."""
        producer = KafkaProducer(client_id="carteiro-kafka-python-default", max_block_ms=TIMEOUT_MS, **self.common)
        check(producer.config["enable_idempotence"], "kafka-python's default producer is idempotent")
        topic = "kafka-python-idempotent"
        n = 200
        futures = [producer.send(topic, value=f"once-{i}".encode(), partition=0) for i in range(n)]
        producer.flush(timeout=WAIT_S)
        offsets = [f.get(timeout=WAIT_S).offset for f in futures]
        producer.close(timeout=WAIT_S)
        check(offsets == list(range(n)), f"the idempotent producer's offsets are not 0..{n - 1}: {offsets[:5]}...")
        consumer = KafkaConsumer(client_id="carteiro-kafka-python-reader", auto_offset_reset="earliest", **self.common)
        try:
            consumer.assign([TopicPartition(topic, 0)])
            consumer.seek_to_beginning()
            read = []
            end = time.monotonic() + WAIT_S
            while len(read) < n and time.monotonic() < end:
                for records in consumer.poll(timeout_ms=500).values():
                    read.extend(records)
            values = [r.value.decode() for r in read]
            check(values == [f"once-{i}" for i in range(n)], f"read {len(values)} records, not each once in order")
        finally:
            consumer.close()
        ok(f"the default (idempotent) KafkaProducer sent {n} records, read back once each in order")

    def consume(self):
        group = "kafka-python-group"
        consumer = KafkaConsumer(
            self.topic,
            client_id="carteiro-kafka-python-consumer",
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
            **self.common,
        )
        try:
            read = []
            end = time.monotonic() + WAIT_S
            while len(read) < self.n and time.monotonic() < end:
                for records in consumer.poll(timeout_ms=500).values():
                    read.extend(records)
            check(len(read) == self.n, f"the group consumer read {len(read)} of {self.n} records within {WAIT_S} s")
            got = sorted((r.key, r.value) for r in read)
            want = sorted((f"key-{i}".encode(), f"value-{i}".encode()) for i in range(self.n))
            check(got == want, "the group consumer did not read exactly the produced keys and values")
            assigned = sorted(tp.partition for tp in consumer.assignment())
            check(assigned == list(range(self.partitions)), f"the lone group member is assigned {assigned}")
            consumer.commit()
            for p in range(self.partitions):
                committed = consumer.committed(TopicPartition(self.topic, p))
                want_offset = len(self.per_partition.get(p, []))
                check(committed == want_offset, f"committed offset of partition {p} is {committed}, expected {want_offset}")
        finally:
            consumer.close()
        ok(f"KafkaConsumer in group {group} read all {self.n} records from {self.partitions} partitions and committed their ends")

    def delete_topics(self):
        self.admin.delete_topics([self.topic], timeout_ms=TIMEOUT_MS)
        ok(f"KafkaAdminClient.delete_topics({self.topic}) succeeded")

    def deleted_not_listed(self):
        listed = self.admin.list_topics()
        check(self.topic not in listed, f"{self.topic} is still listed after delete_topics: {listed}")
        ok(f"{self.topic} is no longer listed")


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} BOOTSTRAP")
    bootstrap = sys.argv[1]

    bound("kafka-python checks")
    if os.environ.get("CARTEIRO_KAFKA_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    print(f"kafka-python {kafka.__version__} against {bootstrap}", flush=True)
    c = Checks(bootstrap)
    for name in ("version_probe", "create_topics", "list_topics", "produce", "produce_default", "consume", "delete_topics", "deleted_not_listed"):
        step(name, getattr(c, name))
    c.admin.close()
    finish("kafka-python")


if __name__ == "__main__":
    main()
