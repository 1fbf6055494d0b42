//! A blocking Kafka connection for tests: requests encoded with the
//! `kafka-protocol` codec's client side, replies decoded, and raw frames for
//! the hostile ones.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{
    Decodable, HeaderVersion, Request, StrBytes, encode_request_header_into_buffer,
};

/// How long a test waits for any one reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// One client connection.
pub struct KafkaConnection {
    stream: TcpStream,
    next_correlation: i32,
}

impl KafkaConnection {
    /// Connects to `address`.
    pub fn open(address: &str) -> KafkaConnection {
        let stream = TcpStream::connect(address).expect("connect to the Kafka listener");
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        KafkaConnection {
            stream,
            next_correlation: 1,
        }
    }

    /// Sends `request` at `version` without waiting; its correlation id.
    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> i32 {
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(StrBytes::from_static_str("carteiro-test"));
        let mut body = BytesMut::new();
        encode_request_header_into_buffer(&mut body, &header).expect("header encodes");
        request.encode(&mut body, version).expect("request encodes");
        self.send_frame(&body);
        correlation_id
    }

    /// Reads the reply to a request of type `R` sent at `version`.
    pub fn receive<R: Request>(&mut self, version: i16, correlation_id: i32) -> R::Response {
        let mut frame = self.read_frame().expect("a reply, not a closed connection");
        let header_version = R::Response::header_version(version);
        let header = ResponseHeader::decode(&mut frame, header_version).expect("reply header");
        assert_eq!(
            header.correlation_id, correlation_id,
            "replies come in order"
        );
        let reply = R::Response::decode(&mut frame, version).expect("reply decodes");
        assert!(
            frame.is_empty(),
            "{} bytes left after the reply",
            frame.len()
        );
        reply
    }

    /// Sends `request` and reads its reply.
    pub fn call<R: Request>(&mut self, request: &R, version: i16) -> R::Response {
        let id = self.send(request, version);
        self.receive::<R>(version, id)
    }

    /// Writes a frame: its length, then its bytes.
    pub fn send_frame(&mut self, body: &[u8]) {
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_u32(body.len() as u32);
        frame.put_slice(body);
        self.stream.write_all(&frame).expect("send");
    }

    /// Writes bytes as they are.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Ends the sending side.
    pub fn finish_sending(&mut self) {
        self.stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
    }

    /// The next reply frame, or `None` if the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut prefix = [0u8; 4];
        match self.stream.read_exact(&mut prefix) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("reading a reply: {e}"),
        }
        let length = u32::from_be_bytes(prefix) as usize;
        assert!(length < 256 << 20, "reply length {length}");
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).expect("reply body");
        Some(Bytes::from(body))
    }

    /// True once the broker has closed the connection (within the reply timeout).
    pub fn is_closed_by_broker(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
        }
    }
}

/// A request frame's bytes for `key` at `version` with a raw body.
pub fn raw_request(key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut frame = BytesMut::new();
    frame.put_i16(key);
    frame.put_i16(version);
    frame.put_i32(correlation_id);
    frame.put_i16(4);
    frame.put_slice(b"test");
    if let Ok(api) = ApiKey::try_from(key)
        && api.request_header_version(version) >= 2
    {
        frame.put_u8(0);
    }
    frame.put_slice(body);
    frame.to_vec()
}

/// The error code of the first partition of the first topic of a produce reply.
pub fn first_produce_error(reply: &kafka_protocol::messages::ProduceResponse) -> i16 {
    reply.responses[0].partition_responses[0].error_code
}

/// Reads a v0 ApiVersions reply's error code and API count from a frame.
pub fn api_versions_v0(mut frame: Bytes) -> (i32, i16, usize) {
    let correlation_id = frame.get_i32();
    let error = frame.get_i16();
    let count = frame.get_i32();
    (correlation_id, error, count.max(0) as usize)
}
