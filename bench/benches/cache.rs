//! The answer cache's semantic index: what a lookup costs (a scan of one
//! partition's unit vectors by dot product), by partition size and by the
//! embedding's dimensions (the mock's 256, OpenAI's 1,536).

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tollgate_engine::cache::semantic::{normalized, Index};

fn vectors(n: usize, dims: usize, seed: &mut u64) -> Vec<Box<[f32]>> {
    (0..n)
        .map(|_| {
            let v = (0..dims)
                .map(|_| {
                    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                })
                .collect();
            normalized(v).expect("a direction")
        })
        .collect()
}

fn semantic_scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("semantic_scan");
    let now = Instant::now();
    let later = now + Duration::from_secs(3600);
    let partition = [7u8; 32];
    for (n, dims) in [(100, 256), (1_000, 256), (1_000, 1_536), (10_000, 256), (100_000, 256)] {
        let mut seed = 42;
        let mut index = Index::default();
        for (i, v) in vectors(n, dims, &mut seed).into_iter().enumerate() {
            let mut answer = [0u8; 32];
            answer[..8].copy_from_slice(&(i as u64).to_le_bytes());
            index.insert(partition, v, answer, later, n);
        }
        let query = vectors(1, dims, &mut seed).remove(0);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{n}x{dims}"), |b| {
            b.iter(|| black_box(index.nearest(&partition, black_box(&query), 0.99, now)))
        });
    }
    g.finish();
}

criterion_group!(benches, semantic_scan);
criterion_main!(benches);
