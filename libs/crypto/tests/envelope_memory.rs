//! The envelope format runs in memory bounded by the chunk size, whatever the file size.
//! A test binary of its own, so the peak resident size (VmHWM) measures this test alone.

use std::io::{self, Read, Seek, SeekFrom, Write};

use keyledger_crypto::envelope::{self, EnvelopeHeader, DEFAULT_CHUNK_SIZE};
use keyledger_crypto::{DataKey, EncryptionContext};

const INPUT_BYTES: u64 = 32 * 1024 * 1024;

/// Yields `remaining` pseudo-random bytes without holding them.
struct Generator {
    remaining: u64,
    state: u64,
}

impl Read for Generator {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.remaining) as usize;
        for b in &mut buf[..n] {
            self.state = self.state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            *b = (self.state >> 56) as u8;
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Hashes what is written, keeping nothing.
struct HashSink(blake3::Hasher, u64);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        self.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn encrypting_and_decrypting_32_mib_stays_within_a_few_chunks_of_memory() {
    let before = peak_rss_kib();
    let key = DataKey::generate(32);
    let header = EnvelopeHeader::new(
        "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000000".into(),
        EncryptionContext::new(),
        vec![1; 200],
    );
    let mut file = tempfile::tempfile().unwrap();
    let mut expected = blake3::Hasher::new();
    {
        // Hash the generator's output on the way in, by teeing it.
        struct Tee<'a>(Generator, &'a mut blake3::Hasher);
        impl Read for Tee<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.read(buf)?;
                self.1.update(&buf[..n]);
                Ok(n)
            }
        }
        let input = Tee(Generator { remaining: INPUT_BYTES, state: 7 }, &mut expected);
        let n = envelope::encrypt(&key, &header, input, io::BufWriter::new(&mut file)).unwrap();
        assert_eq!(n, INPUT_BYTES);
    }
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut reader = io::BufReader::new(file);
    let parsed = envelope::read_header(&mut reader).unwrap();
    let mut sink = HashSink(blake3::Hasher::new(), 0);
    assert_eq!(envelope::decrypt_body(&key, &parsed, &mut reader, &mut sink).unwrap(), INPUT_BYTES);
    assert_eq!(sink.1, INPUT_BYTES);
    assert_eq!(sink.0.finalize(), expected.finalize());

    let grown_kib = peak_rss_kib().saturating_sub(before);
    eprintln!("peak RSS grew by {grown_kib} KiB");
    // A few 64 KiB chunk buffers plus I/O buffers; buffering the file would be 32 MiB.
    let limit_kib = 12 * 1024;
    assert!(grown_kib < limit_kib, "peak RSS grew by {grown_kib} KiB (chunk size {DEFAULT_CHUNK_SIZE} bytes)");
}
