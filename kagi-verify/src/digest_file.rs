//! Hashing a file for `kagi sign`: streamed in fixed-size chunks so a multi-gigabyte artifact
//! needs no more memory than a small one.

use aws_lc_rs::digest;
use kagi_crypto::DigestAlg;
use std::io::Read;
use std::path::Path;

const CHUNK: usize = 64 * 1024;

/// Files at least this large get a progress bar while they are hashed (on a terminal).
const PROGRESS_FROM: u64 = 256 * 1024 * 1024;

pub fn digest_file(path: &Path, alg: DigestAlg) -> std::io::Result<Vec<u8>> {
    use std::io::IsTerminal;
    let file = std::fs::File::open(path)?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len >= PROGRESS_FROM && std::io::stderr().is_terminal() {
        let digest = digest_reader(Progress::new(file, len), alg);
        eprintln!();
        return digest;
    }
    digest_reader(file, alg)
}

/// A reader that draws "hashing [####----] 42%" on stderr as it is read.
struct Progress<R> {
    inner: R,
    total: u64,
    done: u64,
    shown: u64,
}

impl<R> Progress<R> {
    fn new(inner: R, total: u64) -> Self {
        Progress {
            inner,
            total: total.max(1),
            done: 0,
            shown: u64::MAX,
        }
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        let pct = (self.done * 100 / self.total).min(100);
        if pct != self.shown {
            self.shown = pct;
            let filled = (pct / 5) as usize;
            eprint!(
                "\rhashing [{}{}] {pct:>3}%",
                "#".repeat(filled),
                "-".repeat(20 - filled)
            );
        }
        Ok(n)
    }
}

pub fn digest_reader(mut reader: impl Read, alg: DigestAlg) -> std::io::Result<Vec<u8>> {
    let mut ctx = digest::Context::new(algorithm(alg));
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => ctx.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(ctx.finish().as_ref().to_vec())
}

fn algorithm(alg: DigestAlg) -> &'static digest::Algorithm {
    match alg {
        DigestAlg::Sha256 => &digest::SHA256,
        DigestAlg::Sha384 => &digest::SHA384,
        DigestAlg::Sha512 => &digest::SHA512,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_digest_matches_one_shot_across_chunk_boundaries() {
        let data: Vec<u8> = (0..(CHUNK * 3 + 17)).map(|i| (i % 251) as u8).collect();
        for alg in [DigestAlg::Sha256, DigestAlg::Sha384, DigestAlg::Sha512] {
            let streamed = digest_reader(&data[..], alg).unwrap();
            assert_eq!(streamed, alg.hash(&data));
            assert_eq!(streamed.len(), alg.output_len());
        }
    }
}
