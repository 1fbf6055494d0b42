"""Stock confluent-kafka (librdkafka) against a running carteiro's Kafka listener.

Usage: python confluent_check.py BOOTSTRAP SCENARIO

Scenarios: producer, admin, group, restart-commit, restart-resume, offsets, reset.
Every wait is bounded. A failed step is reported and the independent steps
after it still run; any failure exits non-zero.
Set CARTEIRO_KAFKA_DEBUG=protocol,broker (or any librdkafka debug list) to
see the wire exchange on standard error. Driven by
crates/server/tests/kafka_clients.rs; installed by `bash scripts/test`.
"""

import json
import os
import random
import sys
import time

try:
    from confluent_kafka import (
        OFFSET_BEGINNING,
        OFFSET_END,
        Consumer,
        KafkaError,
        KafkaException,
        Producer,
        TopicPartition,
        TIMESTAMP_CREATE_TIME,
    )
    from confluent_kafka import libversion, version as ck_version
    from confluent_kafka.admin import (
        AdminClient,
        ConfigResource,
        ConfigSource,
        NewPartitions,
        NewTopic,
        ResourceType,
    )
except ImportError as e:  # pragma: no cover - set-up problem
    sys.exit(
        f"confluent-kafka is not installed in this Python ({sys.executable}): {e}; "
        "run `bash scripts/test` (it installs scripts/requirements.txt into target/python-venv)"
    )

from harness import WAIT_S, bound, check, finish, ok, step  # noqa: E402


def base_config(bootstrap):
    config = {"bootstrap.servers": bootstrap, "client.id": "carteiro-confluent-check"}
    debug = os.environ.get("CARTEIRO_KAFKA_DEBUG")
    if debug:
        config["debug"] = debug
    return config


def deadline(seconds=WAIT_S):
    return time.monotonic() + seconds


def result(future, what):
    """The result of an AdminClient future, bounded."""
    try:
        return future.result(timeout=WAIT_S)
    except KafkaException as e:
        check(False, f"{what}: {e.args[0]!r}")
    except Exception as e:  # concurrent.futures.TimeoutError and others
        check(False, f"{what}: {type(e).__name__}: {e}")


def create_topic(admin, name, partitions, config=None):
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=10,
        request_timeout=WAIT_S,
    )
    result(futures[name], f"create topic {name} with {partitions} partitions")


def partitions_of(admin, name):
    metadata = admin.list_topics(timeout=WAIT_S)
    topic = metadata.topics.get(name)
    if topic is None:
        return None
    check(topic.error is None, f"metadata of {name} has error {topic.error}")
    return sorted(topic.partitions)


def produce_all(bootstrap, topic, records, extra=None):
    """Produces (partition, key, value, timestamp) tuples, flushes, returns the deliveries."""
    config = base_config(bootstrap)
    config.update({"linger.ms": 5, "message.timeout.ms": int(WAIT_S * 1000)})
    config.update(extra or {})
    producer = Producer(config)
    delivered = []

    def on_delivery(err, msg):
        delivered.append((err, msg))

    for partition, key, value, timestamp in records:
        kwargs = {"key": key, "value": value, "on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        producer.produce(topic, **kwargs)
    remaining = producer.flush(WAIT_S)
    check(remaining == 0, f"{remaining} records of {topic} still undelivered after flush({WAIT_S})")
    check(len(delivered) == len(records), f"{len(delivered)} delivery reports for {len(records)} records")
    errors = [err for err, _ in delivered if err is not None]
    check(not errors, f"delivery errors on {topic}: {errors[:3]}")
    return [msg for _, msg in delivered]


def read_partition(bootstrap, topic, partition, count, start=OFFSET_BEGINNING):
    """Exactly `count` records of one partition from `start`, by assign (no group)."""
    config = base_config(bootstrap)
    config.update({"group.id": "carteiro-check-reader", "enable.auto.commit": False})
    consumer = Consumer(config)
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        records = []
        end = deadline()
        while len(records) < count and time.monotonic() < end:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            check(msg.error() is None, f"consume {topic}[{partition}]: {msg.error()}")
            records.append(msg)
        check(
            len(records) == count,
            f"read {len(records)} of {count} records of {topic}[{partition}] within {WAIT_S} s",
        )
        # Nothing more: one more short poll must come back empty.
        extra = consumer.poll(1.0)
        check(
            extra is None or (extra.error() is not None and extra.error().code() == KafkaError._PARTITION_EOF),
            f"an unexpected record after the {count} of {topic}[{partition}]: offset {extra and extra.offset()}",
        )
        return records
    finally:
        consumer.close()


# ---------------------------------------------------------------- scenarios


def scenario_producer(bootstrap):
    seed = int(os.environ.get("CARTEIRO_TEST_SEED", str(time.time_ns() % 2**32)))
    print(f"seed {seed} (CARTEIRO_TEST_SEED={seed} reproduces the payloads)", flush=True)
    rng = random.Random(seed)
    n = 50

    def one(acks):
        topic = f"acks-{acks}"  # auto-created by the producer's metadata request
        records = [
            (0, f"k{i}".encode(), rng.randbytes(rng.randint(0, 300)) + f"|acks={acks}|{i}".encode(), None)
            for i in range(n)
        ]
        delivered = produce_all(bootstrap, topic, records, {"acks": acks})
        if acks == "0":
            # No answer from the broker: librdkafka reports no offset.
            check(
                all(m.offset() is None or m.offset() < 0 for m in delivered),
                f"acks=0 delivery reports carry no offset (got {[m.offset() for m in delivered][:5]})",
            )
        else:
            offsets = sorted(m.offset() for m in delivered)
            check(offsets == list(range(n)), f"acks={acks}: offsets {offsets[:5]}... are not 0..{n - 1}")
        # Bounded wait for the records to become visible (acks=0 has no
        # answer to wait for), so a failure says what the broker shows.
        config = base_config(bootstrap)
        config["group.id"] = "carteiro-check-watermarks"
        watcher = Consumer(config)
        end = deadline(10)
        while (marks := watcher.get_watermark_offsets(TopicPartition(topic, 0), timeout=WAIT_S)) != (0, n):
            if time.monotonic() > end:
                break
            time.sleep(0.1)
        watcher.close()
        check(marks == (0, n), f"acks={acks}: watermarks are {marks} after flush, expected (0, {n}): the broker does not show the records")
        back = read_partition(bootstrap, topic, 0, n)
        for i, (msg, (_, key, value, _)) in enumerate(zip(back, records)):
            check(msg.offset() == i, f"acks={acks}: record {i} read at offset {msg.offset()}")
            check(msg.key() == key, f"acks={acks}: record {i} key {msg.key()!r} != {key!r}")
            check(msg.value() == value, f"acks={acks}: record {i} value differs ({len(msg.value())} bytes read, {len(value)} sent)")
        ok(f"acks={acks}: {n} records produced, flushed, read back in order with their keys and values")

    for acks in ("1", "all", "0"):
        step(f"producer acks={acks}", one, acks)

    def idempotent():
        topic = "idempotent"
        records = [(0, None, f"once-{i}".encode(), None) for i in range(n)]
        delivered = produce_all(bootstrap, topic, records, {"enable.idempotence": "true"})
        offsets = [m.offset() for m in delivered]
        check(sorted(offsets) == list(range(n)), f"enable.idempotence=true: offsets {sorted(offsets)[:5]}... are not 0..{n - 1}")
        back = read_partition(bootstrap, topic, 0, n)
        values = [m.value() for m in back]
        check(values == [v for (_, _, v, _) in records], "enable.idempotence=true: not each record once, in order")
        ok(f"enable.idempotence=true: {n} records, each stored once, in order")

    step("producer enable.idempotence=true", idempotent)


def scenario_admin(bootstrap):
    admin = AdminClient(base_config(bootstrap))
    topic = "admin-topic"
    create_topic(admin, topic, 2, {"retention.ms": "3600000"})
    ok(f"created {topic} with 2 partitions and retention.ms=3600000")

    futures = admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)], request_timeout=WAIT_S)
    try:
        futures[topic].result(timeout=WAIT_S)
        check(False, f"creating {topic} a second time succeeded")
    except KafkaException as e:
        err = e.args[0]
        check(
            err.code() == KafkaError.TOPIC_ALREADY_EXISTS,
            f"second create of {topic}: expected TOPIC_ALREADY_EXISTS, got {err!r}",
        )
    ok("a second create answers TOPIC_ALREADY_EXISTS")

    parts = partitions_of(admin, topic)
    check(parts == [0, 1], f"list_topics: {topic} has partitions {parts}, expected [0, 1]")
    ok(f"list_topics shows {topic} with partitions {parts}")

    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = result(admin.describe_configs([resource], request_timeout=WAIT_S)[resource], "describe_configs")
    retention = configs.get("retention.ms")
    check(retention is not None, f"describe_configs has no retention.ms: {sorted(configs)}")
    check(retention.value == "3600000", f"retention.ms is {retention.value!r}, set to 3600000")
    check(not retention.is_default, "retention.ms set on the topic is reported as a default")
    check(
        retention.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
        f"retention.ms source is {retention.source}, expected DYNAMIC_TOPIC_CONFIG",
    )
    cleanup = configs.get("cleanup.policy")
    check(cleanup is not None, f"describe_configs has no cleanup.policy: {sorted(configs)}")
    check(cleanup.value == "delete", f"cleanup.policy default is {cleanup.value!r}, expected delete")
    check(cleanup.is_default, f"cleanup.policy (not set) is not reported as a default (source {cleanup.source})")
    segment = configs.get("segment.bytes")
    check(segment is not None and segment.is_default and int(segment.value) > 0, f"segment.bytes: {segment}")
    ok(f"describe_configs: retention.ms=3600000 (topic), cleanup.policy=delete and segment.bytes={segment.value} (defaults)")

    step("create_partitions", grow_partitions, bootstrap, admin, topic)
    step("delete_topics", delete_topic, admin, topic)


def grow_partitions(bootstrap, admin, topic):
    futures = admin.create_partitions([NewPartitions(topic, 4)], request_timeout=WAIT_S)
    result(futures[topic], f"create_partitions {topic} 2 -> 4")
    end = deadline()
    while (parts := partitions_of(admin, topic)) != [0, 1, 2, 3] and time.monotonic() < end:
        time.sleep(0.2)
    check(parts == [0, 1, 2, 3], f"after create_partitions {topic} has partitions {parts}, expected 0..3")
    delivered = produce_all(bootstrap, topic, [(3, b"k", b"to the new partition", None)], {"acks": "all"})
    check(delivered[0].partition() == 3 and delivered[0].offset() == 0, "a record to new partition 3 lands at offset 0")
    ok(f"create_partitions grew {topic} from 2 to 4 partitions, and partition 3 takes records")


def delete_topic(admin, topic):
    result(admin.delete_topics([topic], request_timeout=WAIT_S)[topic], f"delete topic {topic}")
    end = deadline()
    while (parts := partitions_of(admin, topic)) is not None and time.monotonic() < end:
        time.sleep(0.2)
    check(parts is None, f"{topic} is still listed after delete_topics")
    ok(f"delete_topics removed {topic}")


class GroupMember:
    """One Consumer of a group, its current assignment and every record it read."""

    def __init__(self, bootstrap, group, name, topic):
        config = base_config(bootstrap)
        config.update(
            {
                "group.id": group,
                "client.id": name,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 300,
                "partition.assignment.strategy": "range",
                "fetch.wait.max.ms": 100,
            }
        )
        self.name = name
        self.consumer = Consumer(config)
        self.assignment = set()
        self.records = []  # (partition, offset, value)
        self.consumer.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked)

    def _assigned(self, consumer, partitions):
        self.assignment = {p.partition for p in partitions}
        print(f"  {self.name} assigned {sorted(self.assignment)}", flush=True)

    def _revoked(self, consumer, partitions):
        print(f"  {self.name} revoked {sorted(p.partition for p in partitions)}", flush=True)
        self.assignment = set()

    def poll(self, timeout=0.1):
        msg = self.consumer.poll(timeout)
        if msg is None:
            return None
        if msg.error() is not None:
            check(msg.error().code() == KafkaError._PARTITION_EOF, f"{self.name} poll: {msg.error()}")
            return None
        check(
            msg.partition() in self.assignment,
            f"{self.name} read partition {msg.partition()} outside its assignment {sorted(self.assignment)}",
        )
        self.records.append((msg.partition(), msg.offset(), msg.value()))
        return msg


def scenario_group(bootstrap):
    admin = AdminClient(base_config(bootstrap))
    topic = "group-topic"
    create_topic(admin, topic, 4)
    group = "split-group"
    a = GroupMember(bootstrap, group, "member-a", topic)
    b = GroupMember(bootstrap, group, "member-b", topic)

    # Both join before anything is produced, so neither reads a record the
    # other is then assigned.
    end = deadline()
    while time.monotonic() < end:
        a.poll()
        b.poll()
        if a.assignment and b.assignment and a.assignment | b.assignment == {0, 1, 2, 3}:
            break
    check(a.assignment and b.assignment, f"both members assigned within {WAIT_S} s: a={a.assignment} b={b.assignment}")
    check(not a.assignment & b.assignment, f"assignments overlap: a={a.assignment} b={b.assignment}")
    check(a.assignment | b.assignment == {0, 1, 2, 3}, f"assignments do not cover 0..3: a={a.assignment} b={b.assignment}")
    ok(f"two consumers split the 4 partitions: a={sorted(a.assignment)} b={sorted(b.assignment)}")

    per_partition = 10
    first = [(p, None, f"first-{p}-{i}".encode(), None) for p in range(4) for i in range(per_partition)]
    produce_all(bootstrap, topic, first, {"acks": "all"})
    end = deadline()
    while len(a.records) + len(b.records) < len(first) and time.monotonic() < end:
        a.poll()
        b.poll()
    for _ in range(5):  # a few more polls: nothing may arrive twice
        a.poll()
        b.poll()
    read = a.records + b.records
    values = sorted(v for _, _, v in read)
    check(len(read) == len(first), f"the two members read {len(read)} records, {len(first)} were produced")
    check(values == sorted(v for _, _, v, _ in first), "the members did not read exactly the produced records once each")
    check({p for p, _, _ in a.records} <= a.assignment, "member a read a partition it does not own")
    check({p for p, _, _ in b.records} <= b.assignment, "member b read a partition it does not own")
    for member in (a, b):
        member.consumer.commit(asynchronous=False)
    ok(f"all {len(first)} records consumed exactly once between them (a {len(a.records)}, b {len(b.records)}), both committed")

    # Second round: a reads its share but commits only 5 records of each of
    # its partitions, then leaves; b must resume a's partitions at those
    # commits (offset 15), none before, none lost.
    second = [(p, None, f"second-{p}-{i}".encode(), None) for p in range(4) for i in range(per_partition)]
    produce_all(bootstrap, topic, second, {"acks": "all"})
    a_parts, b_parts = sorted(a.assignment), sorted(b.assignment)
    a_before, b_before = len(a.records), len(b.records)
    end = deadline()
    while time.monotonic() < end and (
        len(a.records) - a_before < per_partition * len(a_parts) or len(b.records) - b_before < per_partition * len(b_parts)
    ):
        a.poll()
        b.poll()
    check(len(a.records) - a_before == per_partition * len(a_parts), f"member a read {len(a.records) - a_before} of round two")
    check(len(b.records) - b_before == per_partition * len(b_parts), f"member b read {len(b.records) - b_before} of round two")
    b.consumer.commit(asynchronous=False)
    commit_at = per_partition + 5
    a.consumer.commit(offsets=[TopicPartition(topic, p, commit_at) for p in a_parts], asynchronous=False)
    committed = a.consumer.committed([TopicPartition(topic, p) for p in a_parts], timeout=WAIT_S)
    check(
        [c.offset for c in committed] == [commit_at] * len(a_parts),
        f"member a's commits read back as {[(c.partition, c.offset) for c in committed]}, expected {commit_at}",
    )
    a.consumer.close()
    ok(f"member a committed offset {commit_at} of {a_parts} and closed (left the group)")

    b_before = len(b.records)
    expected = {p: list(range(commit_at, 2 * per_partition)) for p in a_parts}
    end = deadline()
    while time.monotonic() < end:
        b.poll()
        got = {p: [o for q, o, _ in b.records[b_before:] if q == p] for p in a_parts}
        if b.assignment == {0, 1, 2, 3} and all(len(got[p]) >= len(expected[p]) for p in a_parts):
            break
    for _ in range(5):
        b.poll()
    check(b.assignment == {0, 1, 2, 3}, f"member b owns {sorted(b.assignment)} after a left, expected all 4")
    got = {p: [o for q, o, _ in b.records[b_before:] if q == p] for p in a_parts}
    check(
        got == expected,
        f"member b read a's partitions from {({p: o[:3] for p, o in got.items()})}..., expected offsets {commit_at}..{2 * per_partition - 1} exactly",
    )
    others = [(q, o) for q, o, _ in b.records[b_before:] if q not in a_parts]
    check(not others, f"member b read again records of its own partitions: {others[:5]}")
    ok(f"member b took over {a_parts} from the last commit: offsets {commit_at}..{2 * per_partition - 1}, none re-read, none lost")

    third = [(p, None, f"third-{p}".encode(), None) for p in range(4)]
    produce_all(bootstrap, topic, third, {"acks": "all"})
    b_before = len(b.records)
    end = deadline()
    while len(b.records) - b_before < 4 and time.monotonic() < end:
        b.poll()
    got = sorted(v for _, _, v in b.records[b_before:])
    check(got == sorted(v for _, _, v, _ in third), f"member b alone read {got}, expected one new record per partition")
    b.consumer.close()
    ok("member b alone reads new records of all 4 partitions")


RESTART_TOPIC = "restart-topic"
RESTART_GROUP = "restart-group"
RESTART_COMMITS = {0: 7, 1: 4}
RESTART_PER_PARTITION = 10


def restart_consumer(bootstrap):
    config = base_config(bootstrap)
    config.update(
        {
            "group.id": RESTART_GROUP,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 300,
        }
    )
    return Consumer(config)


def scenario_restart_commit(bootstrap):
    admin = AdminClient(base_config(bootstrap))
    create_topic(admin, RESTART_TOPIC, 2)
    records = [(p, None, f"r-{p}-{i}".encode(), None) for p in (0, 1) for i in range(RESTART_PER_PARTITION)]
    produce_all(bootstrap, RESTART_TOPIC, records, {"acks": "all"})
    consumer = restart_consumer(bootstrap)
    consumer.subscribe([RESTART_TOPIC])
    read = 0
    end = deadline()
    while read < len(records) and time.monotonic() < end:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            read += 1
    check(read == len(records), f"phase 1 read {read} of {len(records)} records")
    offsets = [TopicPartition(RESTART_TOPIC, p, o) for p, o in RESTART_COMMITS.items()]
    consumer.commit(offsets=offsets, asynchronous=False)
    committed = consumer.committed([TopicPartition(RESTART_TOPIC, p) for p in RESTART_COMMITS], timeout=WAIT_S)
    got = {c.partition: c.offset for c in committed}
    check(got == RESTART_COMMITS, f"committed() before the restart is {got}, expected {RESTART_COMMITS}")
    consumer.close()
    ok(f"phase 1: read {read} records, committed {RESTART_COMMITS} in group {RESTART_GROUP}")


def scenario_restart_resume(bootstrap):
    consumer = restart_consumer(bootstrap)
    committed = consumer.committed([TopicPartition(RESTART_TOPIC, p) for p in RESTART_COMMITS], timeout=WAIT_S)
    got = {c.partition: c.offset for c in committed}
    check(got == RESTART_COMMITS, f"committed() after the restart is {got}, expected {RESTART_COMMITS}")
    ok(f"phase 2: committed() after the restart is {got}")
    consumer.subscribe([RESTART_TOPIC])
    expected = {p: list(range(o, RESTART_PER_PARTITION)) for p, o in RESTART_COMMITS.items()}
    total = sum(len(v) for v in expected.values())
    read = {0: [], 1: []}
    end = deadline()
    while sum(len(v) for v in read.values()) < total and time.monotonic() < end:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        check(msg.error() is None, f"phase 2 poll: {msg.error()}")
        read[msg.partition()].append(msg.offset())
        check(
            msg.value() == f"r-{msg.partition()}-{msg.offset()}".encode(),
            f"record {msg.partition()}/{msg.offset()} has value {msg.value()!r} after the restart",
        )
    for _ in range(5):
        msg = consumer.poll(0.2)
        check(msg is None or msg.error() is not None, f"an extra record after resuming: {msg and (msg.partition(), msg.offset())}")
    check(read == expected, f"phase 2 read offsets {read}, expected {expected}")
    consumer.close()
    ok(f"phase 2: consumption resumed at the commits and read {total} records, none before them")


def scenario_offsets(bootstrap):
    topic = "times-topic"
    admin = AdminClient(base_config(bootstrap))
    create_topic(admin, topic, 1)
    base = (int(time.time() * 1000) - 3_600_000) // 1000 * 1000
    n = 10
    records = [(0, f"k{i}".encode(), f"t{i}".encode(), base + i * 1000) for i in range(n)]
    produce_all(bootstrap, topic, records, {"acks": "all"})

    config = base_config(bootstrap)
    config.update({"group.id": "times-group", "enable.auto.commit": False})
    consumer = Consumer(config)
    try:
        tp = TopicPartition(topic, 0)
        low, high = consumer.get_watermark_offsets(tp, timeout=WAIT_S, cached=False)
        check((low, high) == (0, n), f"get_watermark_offsets is ({low}, {high}), expected (0, {n})")
        ok(f"get_watermark_offsets is (0, {n})")

        cases = [
            (base - 5000, 0, "before every record"),
            (base, 0, "the first record's timestamp"),
            (base + 3000, 3, "a record's exact timestamp"),
            (base + 3500, 4, "between two records"),
            (base + (n - 1) * 1000, n - 1, "the last record's timestamp"),
            (base + n * 1000 + 1, OFFSET_END, "after every record"),
        ]
        query = [TopicPartition(topic, 0, ts) for ts, _, _ in cases]
        # One request per case: a ListOffsets names each partition once.
        for (ts, want, what), q in zip(cases, query):
            found = consumer.offsets_for_times([q], timeout=WAIT_S)
            check(len(found) == 1 and found[0].error is None, f"offsets_for_times({ts}): {found}")
            check(found[0].offset == want, f"offsets_for_times at {what} ({ts}) is {found[0].offset}, expected {want}")
        ok(f"offsets_for_times: {len(cases)} cases (before, exact, between, last, after)")

        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = []
        end = deadline()
        while len(got) < n and time.monotonic() < end:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append(msg)
        check(len(got) == n, f"read {len(got)} of {n} timestamped records")
        for i, msg in enumerate(got):
            check(
                msg.timestamp() == (TIMESTAMP_CREATE_TIME, base + i * 1000),
                f"record {i} timestamp {msg.timestamp()}, produced CreateTime {base + i * 1000}",
            )
        ok("each record reads back with its CreateTime timestamp")
    finally:
        consumer.close()


def scenario_reset(bootstrap):
    topic = "reset-topic"
    admin = AdminClient(base_config(bootstrap))
    create_topic(admin, topic, 1)
    n = 10
    produce_all(bootstrap, topic, [(0, None, f"v{i}".encode(), None) for i in range(n)], {"acks": "all"})
    past_end = 100

    def consumer_with(reset, extra=None):
        config = base_config(bootstrap)
        config.update({"group.id": f"reset-{reset}", "enable.auto.commit": False, "auto.offset.reset": reset})
        config.update(extra or {})
        return Consumer(config)

    def read(consumer, count):
        got = []
        end = deadline()
        while len(got) < count and time.monotonic() < end:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            check(msg.error() is None, f"poll: {msg.error()}")
            got.append(msg.offset())
        return got

    earliest = consumer_with("earliest")
    try:
        earliest.assign([TopicPartition(topic, 0, past_end)])
        got = read(earliest, n)
        check(got == list(range(n)), f"assign at {past_end} with earliest read offsets {got}, expected 0..{n - 1}")
        ok(f"assign past the end ({past_end}) with auto.offset.reset=earliest resets to 0 and reads all {n}")
        earliest.seek(TopicPartition(topic, 0, past_end + 1))
        got = read(earliest, n)
        check(got == list(range(n)), f"seek to {past_end + 1} with earliest read offsets {got}, expected 0..{n - 1}")
        ok(f"seek past the end ({past_end + 1}) with earliest resets to 0 again")
    finally:
        earliest.close()

    # librdkafka's position() moves only with delivered records: its
    # statistics say where the fetcher stands after the reset.
    stats = {}

    def on_stats(text):
        partition = json.loads(text).get("topics", {}).get(topic, {}).get("partitions", {}).get("0", {})
        stats.update(partition)

    latest = consumer_with("latest", {"statistics.interval.ms": 100, "stats_cb": on_stats})
    try:
        tp = TopicPartition(topic, 0, past_end)
        latest.assign([tp])
        end = deadline()
        while time.monotonic() < end:
            msg = latest.poll(0.2)
            check(msg is None or msg.error() is not None, f"latest read a record before any was produced: {msg and msg.offset()}")
            if stats.get("fetch_state") == "active" and stats.get("next_offset") == n:
                break
        check(
            stats.get("fetch_state") == "active" and stats.get("next_offset") == n,
            f"assign at {past_end} with latest: fetcher at {stats.get('next_offset')} ({stats.get('fetch_state')}), expected the end {n}",
        )
        more = 3
        produce_all(bootstrap, topic, [(0, None, f"w{i}".encode(), None) for i in range(more)], {"acks": "all"})
        got = read(latest, more)
        check(got == list(range(n, n + more)), f"latest then read offsets {got}, expected {n}..{n + more - 1}")
        ok(f"assign past the end with auto.offset.reset=latest resets to {n} and reads only the {more} new records")
    finally:
        latest.close()


SCENARIOS = {
    "producer": scenario_producer,
    "admin": scenario_admin,
    "group": scenario_group,
    "restart-commit": scenario_restart_commit,
    "restart-resume": scenario_restart_resume,
    "offsets": scenario_offsets,
    "reset": scenario_reset,
}


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in SCENARIOS:
        sys.exit(f"usage: {sys.argv[0]} BOOTSTRAP {{{'|'.join(SCENARIOS)}}}")
    bootstrap, scenario = sys.argv[1], sys.argv[2]

    bound(f"scenario {scenario}")
    print(f"confluent-kafka {ck_version()}, librdkafka {libversion()[0]}; scenario {scenario} against {bootstrap}", flush=True)
    step(scenario, SCENARIOS[scenario], bootstrap)
    finish(f"confluent-kafka {scenario}")


if __name__ == "__main__":
    main()
