"""Python's grpcio-reflection, which speaks only grpc.reflection.v1alpha,
lists the broker's services and then uses them knowing nothing but what
reflection told it: it builds the message classes from the served
descriptors, creates a topic, produces a record and fetches it back.

Usage: reflection_check.py PATH_TO_CARTEIRO_BINARY
Starts the broker on an ephemeral loopback port with a temporary data
directory, and stops it with SIGTERM at the end. Exits non-zero on failure.
"""

import signal
import subprocess
import sys
import tempfile

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

EXPECTED_SERVICES = {
    "carteiro.v1.Broker",
    "carteiro.v1.Admin",
    "carteiro.v1.Groups",
    "grpc.health.v1.Health",
}
START_TIMEOUT_S = 60


def start_broker(binary, data_dir):
    broker = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--data-dir", data_dir],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = broker.stdout.readline()
    if "listening on " not in line:
        broker.kill()
        sys.exit(f"the broker did not start: {line!r}")
    address = line.split("listening on ", 1)[1].split(",", 1)[0]
    return broker, address


def unary(channel, pool, service, method_name):
    method = pool.FindServiceByName(service).FindMethodByName(method_name)
    request = GetMessageClass(method.input_type)
    reply = GetMessageClass(method.output_type)
    call = channel.unary_unary(
        f"/{service}/{method_name}",
        request_serializer=request.SerializeToString,
        response_deserializer=reply.FromString,
    )
    return request, call


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as data_dir:
        broker, address = start_broker(binary, data_dir)
        try:
            with grpc.insecure_channel(address) as channel:
                grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT_S)
                database = ProtoReflectionDescriptorDatabase(channel)
                services = set(database.get_services())
                print("services:", ", ".join(sorted(services)))
                missing = EXPECTED_SERVICES - services
                if missing:
                    sys.exit(f"reflection does not list {sorted(missing)}")
                pool = descriptor_pool.DescriptorPool(database)

                create, create_topic = unary(channel, pool, "carteiro.v1.Admin", "CreateTopic")
                described = create_topic(create(name="reflected", partitions=1), timeout=30)
                assert described.name == "reflected", described

                produce, produce_call = unary(channel, pool, "carteiro.v1.Broker", "Produce")
                record = produce.DESCRIPTOR.fields_by_name["records"].message_type
                Record = GetMessageClass(record)
                produced = produce_call(
                    produce(topic="reflected", partition=0, records=[Record(value=b"hello")]),
                    timeout=30,
                )
                assert produced.partitions[0].base_offset == 0, produced

                fetch, fetch_call = unary(channel, pool, "carteiro.v1.Broker", "Fetch")
                partition = GetMessageClass(
                    fetch.DESCRIPTOR.fields_by_name["partitions"].message_type
                )
                decoded = fetch.DESCRIPTOR.fields_by_name["format"].enum_type.values_by_name[
                    "FETCH_FORMAT_DECODED"
                ].number
                fetched = fetch_call(
                    fetch(
                        partitions=[partition(topic="reflected", partition=0, offset=0)],
                        format=decoded,
                    ),
                    timeout=30,
                )
                values = [r.value for r in fetched.partitions[0].records]
                assert values == [b"hello"], fetched
                print("created, produced and fetched through reflection alone:", values)
        finally:
            broker.send_signal(signal.SIGTERM)
            code = broker.wait(timeout=START_TIMEOUT_S)
            if code != 0:
                sys.exit(f"the broker exited with {code} after SIGTERM")


if __name__ == "__main__":
    main()
