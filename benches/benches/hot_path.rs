//! The per-frame hot path: what the server does 50 times a second per channel, and what each agent
//! does 50 times a second.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use radio_benches::voice_frame::voice_frame;
use radio_proto::{FrameReader, Message};
use radio_server::broadcast::playback::Playback;
use radio_server::broadcast::router::Router;
use radio_server::broadcast::station_output::StationOutput;
use radio_server::pipeline::EncodedFrame;

fn wire(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_audio_frame", |b| {
        let msg = voice_frame(42);
        b.iter(|| std::hint::black_box(msg.to_bytes()))
    });
    let one = voice_frame(42).to_bytes();
    g.bench_function("decode_audio_frame", |b| {
        b.iter(|| {
            let mut reader = FrameReader::new();
            reader.push(std::hint::black_box(&one));
            match reader.next_message() {
                Ok(Some(Message::AudioFrame(f))) => f.sequence,
                other => panic!("not an audio frame: {other:?}"),
            }
        })
    });
    let stream: Vec<u8> = (0..1000)
        .flat_map(|s| voice_frame(s).to_bytes().to_vec())
        .collect();
    g.throughput(Throughput::Elements(1000));
    g.bench_function("decode_1000_frames_in_1200_byte_chunks", |b| {
        b.iter(|| {
            let mut reader = FrameReader::new();
            let mut n = 0;
            for chunk in stream.chunks(1200) {
                reader.push(chunk);
                while let Ok(Some(_)) = reader.next_message() {
                    n += 1;
                }
            }
            assert_eq!(n, 1000);
        })
    });
    g.finish();
}

fn opus_encode(c: &mut Criterion) {
    let pcm: Vec<f32> = (0..48_000)
        .map(|i| (i as f32 * std::f32::consts::TAU * 440.0 / 48_000.0).sin() * 0.5)
        .collect();
    let mut g = c.benchmark_group("opus");
    g.throughput(Throughput::Elements(50));
    g.bench_function("encode_1s_voice_32kbps", |b| {
        b.iter(|| radio_server::pipeline::encode_pcm(&pcm, 32_000).map(|f| f.len()))
    });
    g.finish();
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    for agents in [22usize, 1000, 10_000] {
        g.throughput(Throughput::Elements(agents as u64));
        g.bench_with_input(
            BenchmarkId::new("route_one_frame", agents),
            &agents,
            |b, &n| {
                b.iter_batched(
                    || {
                        let outputs: Vec<_> = (0..n)
                            .map(|i| {
                                let o = Arc::new(StationOutput::new(&format!("s{i}"), 250));
                                o.attach();
                                o
                            })
                            .collect();
                        let mut router = Router::new(outputs.clone());
                        let frames = (0..1)
                            .map(|_| EncodedFrame {
                                payload: Bytes::from(vec![0x5a; 80]),
                                pcm_peak: 0.5,
                            })
                            .collect();
                        let id = router.add(Playback::frames(1, "bench", frames));
                        for i in 0..n {
                            router.route(&format!("s{i}"), Some(id));
                        }
                        (router, outputs)
                    },
                    |(mut router, outputs)| {
                        router.tick(0);
                        (router, outputs)
                    },
                    BatchSize::LargeInput,
                )
            },
        );
    }
    g.finish();
}

criterion_group!(benches, wire, opus_encode, fanout);
criterion_main!(benches);
