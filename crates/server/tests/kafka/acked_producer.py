"""Produces numbered records with acks=all through librdkafka (confluent-kafka)
until killed or until --count records are acknowledged, printing one line per
acknowledged record: "acked <partition> <offset> <value>", flushed at once.

Usage: acked_producer.py BOOTSTRAP TOPIC COUNT
"""

import sys

from confluent_kafka import Producer


def main() -> int:
    bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 2,
            # Give up quickly once the broker is gone: the test kills it.
            "message.timeout.ms": 10000,
            "enable.idempotence": False,
        }
    )
    acked = 0

    def delivered(err, msg):
        nonlocal acked
        if err is None:
            acked += 1
            print(f"acked {msg.partition()} {msg.offset()} {msg.value().decode()}", flush=True)
        else:
            print(f"failed {msg.value().decode()} {err}", flush=True)

    sent = 0
    while acked < count:
        try:
            producer.produce(topic, value=f"record-{sent}".encode(), on_delivery=delivered)
            sent += 1
        except BufferError:
            producer.poll(0.05)
            continue
        producer.poll(0)
    producer.flush(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
