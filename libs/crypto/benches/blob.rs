//! Ciphertext blob throughput: seal and open of 256 B and 4 KiB plaintexts, header parsing.
//! `cargo bench -p keyledger-crypto`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keyledger_crypto::{open, parse_header, seal, EncryptionContext, KeyMaterial};

fn context() -> EncryptionContext {
    let mut ec = EncryptionContext::new();
    ec.insert("tenant".into(), "111122223333".into());
    ec.insert("purpose".into(), "benchmark".into());
    ec
}

fn blob_benches(c: &mut Criterion) {
    let material = KeyMaterial::generate();
    let ec = context();
    let key_id = [0x5Au8; 16];
    for size in [256usize, 4096] {
        let plaintext = vec![0xA5u8; size];
        let mut group = c.benchmark_group(format!("blob/{size}B"));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function("seal", |b| {
            b.iter(|| seal(&material, key_id, 1, black_box(&ec), black_box(&plaintext)));
        });
        let blob = seal(&material, key_id, 1, &ec, &plaintext);
        group.bench_function("open", |b| {
            b.iter(|| open(&material, black_box(&blob), black_box(&ec)).unwrap());
        });
        group.finish();
    }
    let blob = seal(&material, key_id, 1, &ec, &[0u8; 64]);
    c.bench_function("blob/parse_header", |b| {
        b.iter(|| parse_header(black_box(&blob)).unwrap());
    });
}

criterion_group!(benches, blob_benches);
criterion_main!(benches);
