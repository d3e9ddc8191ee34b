//! The uptime journal's durable steps, on the machine's disk (ext4, the temporary directory):
//! the server storing an agent's batch before it acknowledges (`UptimeJournal::store_batch`,
//! which flushes), and the agent appending a record (flushed before `append` returns) and
//! deleting what an acknowledgement covers (flushed too). Each is bounded by the flush, so
//! these are figures of the disk more than of the code.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use radio_proto::{JournalAck, JournalBatch, JournalEvent, JournalRecord, OutputState};
use radio_server::records::store::Store;
use relay_agent::journal::Journal;

fn heartbeat(seq: u64) -> JournalRecord {
    JournalRecord {
        seq,
        unix_ms: 1_795_000_000_000 + seq * 60_000,
        event: JournalEvent::Heartbeat {
            link_up: true,
            output: OutputState::OnAir,
            frames_received: seq * 3000,
            frames_played: seq * 2998,
            frames_lost: seq * 2,
            heartbeats_dropped: 0,
        },
    }
}

fn server_store_batch(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let mut g = c.benchmark_group("journal");
    for size in [1u64, 64] {
        g.throughput(Throughput::Elements(size));
        let mut next = 1u64;
        g.bench_with_input(
            BenchmarkId::new("server_store_batch", size),
            &size,
            |b, &size| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        // New sequence numbers each time: a re-upload of the same keys would
                        // measure overwrites, which only happen after a lost acknowledgement.
                        let batch = JournalBatch {
                            journal_id: 7,
                            records: (next..next + size).map(heartbeat).collect(),
                        };
                        next += size;
                        let start = Instant::now();
                        let ack = store
                            .uptime()
                            .store_batch("binh-trung", &batch)
                            .expect("store batch");
                        total += start.elapsed();
                        assert_eq!(ack.last_seq - ack.first_seq + 1, size);
                    }
                    total
                })
            },
        );
    }
    g.finish();
}

fn agent_append_and_ack(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    // Room for every record the bench writes, so that none is thinned out.
    let (journal, _) = Journal::open(dir.path(), usize::MAX).expect("journal");
    let mut g = c.benchmark_group("journal");
    g.throughput(Throughput::Elements(1));
    g.bench_function("agent_append", |b| {
        b.iter(|| {
            journal
                .append(
                    1_795_000_000_000,
                    JournalEvent::Output {
                        state: OutputState::OnAir,
                    },
                )
                .expect("append")
        })
    });
    // Clear what the append bench left, so each ack below covers exactly its own records.
    while let Some(batch) = journal.pending(JournalBatch::MAX_RECORDS).expect("pending") {
        let (first, last) = (
            batch.records[0].seq,
            batch.records[batch.records.len() - 1].seq,
        );
        journal
            .acknowledge(&JournalAck {
                journal_id: batch.journal_id,
                first_seq: first,
                last_seq: last,
            })
            .expect("ack");
    }
    // Each iteration first appends the records to acknowledge (untimed, one flush each), so
    // fewer samples keep the run short.
    g.sample_size(20);
    for size in [1usize, 64] {
        g.throughput(Throughput::Elements(size as u64));
        g.bench_with_input(BenchmarkId::new("agent_ack", size), &size, |b, &size| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    for _ in 0..size {
                        journal
                            .append(
                                1_795_000_000_000,
                                JournalEvent::Output {
                                    state: OutputState::OnAir,
                                },
                            )
                            .expect("append");
                    }
                    let batch = journal.pending(size).expect("pending").expect("records");
                    let ack = JournalAck {
                        journal_id: batch.journal_id,
                        first_seq: batch.records[0].seq,
                        last_seq: batch.records[batch.records.len() - 1].seq,
                    };
                    let start = Instant::now();
                    let deleted = journal.acknowledge(&ack).expect("ack");
                    total += start.elapsed();
                    assert_eq!(deleted, size);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, server_store_batch, agent_append_and_ack);
criterion_main!(benches);
