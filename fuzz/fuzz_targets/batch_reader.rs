//! Feeds arbitrary bytes to every entry point of the record-batch reader.
//! Only a panic, an out-of-bounds read or a hang is a finding: every input
//! must give a typed error or valid records.
#![no_main]

use carteiro::record::{ATTRIBUTES_AT, BATCH_HEADER_BYTES, BatchHeader, CRC_AT, RecordBatch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    read_all(data);
    // The CRC stops almost every mutation at the door; a copy with the CRC
    // made right lets the fuzzer reach the record parser.
    if data.len() >= BATCH_HEADER_BYTES {
        let mut fixed = data.to_vec();
        let crc = crc32c::crc32c(&fixed[ATTRIBUTES_AT..]);
        fixed[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        read_all(&fixed);
    }
});

fn read_all(data: &[u8]) {
    let _ = BatchHeader::parse(data);
    let mut rest = data;
    // A buffer may hold several batches, as a fetch reply does.
    while let Ok((batch, tail)) = RecordBatch::parse(rest) {
        let _ = batch.validate();
        // A compressed batch's records are decompressed (bounded) here.
        if let Ok(records) = batch.records() {
            for record in records.iter().flatten() {
                let _ = record.key.map(<[u8]>::len);
                for header in record.headers.iter() {
                    let _ = (header.key.len(), header.value.map(<[u8]>::len));
                }
            }
        }
        rest = tail;
    }
}
