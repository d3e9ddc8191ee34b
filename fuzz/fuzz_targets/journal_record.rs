//! Journal records as stored on disk (agent and server) and carried in `JournalBatch`: any
//! bytes decode to a record or an error, never a panic, and a record re-encodes to itself.
//!
//! Run with `fuzz/run.sh journal_record` (see fuzz/README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;
use radio_proto::{Decode, Encode, JournalBatch, JournalRecord};

fuzz_target!(|data: &[u8]| {
    let mut slice = data;
    if let Ok(record) = JournalRecord::decode(&mut slice) {
        let mut bytes = Vec::new();
        record.encode(&mut bytes);
        assert_eq!(bytes.len(), record.encoded_len());
        assert!(bytes.len() <= JournalRecord::MAX_LEN);
        let again = JournalRecord::decode(&mut bytes.as_slice()).expect("re-encoded record");
        assert_eq!(again, record);
    }
    let mut slice = data;
    if let Ok(batch) = JournalBatch::decode(&mut slice) {
        assert!(!batch.records.is_empty() && batch.records.len() <= JournalBatch::MAX_RECORDS);
        assert!(batch.records.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    }
});
