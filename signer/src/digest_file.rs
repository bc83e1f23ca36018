//! Hashing a file for `kagi sign`: streamed in fixed-size chunks so a multi-gigabyte artifact
//! needs no more memory than a small one.

use aws_lc_rs::digest;
use hsm_core::DigestAlg;
use std::io::Read;
use std::path::Path;

const CHUNK: usize = 64 * 1024;

pub fn digest_file(path: &Path, alg: DigestAlg) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    digest_reader(file, alg)
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
