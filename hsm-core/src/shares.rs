//! Shamir M-of-N shares of the master key (vsss-rs over GF(256), byte-wise).
//!
//! Text form of a share: `kagi-share-v1:<threshold>:<hex>`. The threshold travels with the share
//! so `kagi unseal` can say how many more are needed; it is not secret.

use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::error::{HsmError, Result};

const PREFIX: &str = "kagi-share-v1";

pub(crate) fn split(
    secret: &[u8],
    threshold: usize,
    count: usize,
) -> Result<Vec<Zeroizing<String>>> {
    if threshold == 0 || count == 0 || threshold > count || count > 255 {
        return Err(HsmError::BadInput(format!(
            "cannot make {count} shares with threshold {threshold}: need 1 <= threshold <= shares <= 255"
        )));
    }
    if threshold == 1 {
        // vsss-rs wants threshold >= 2; one-of-N is just N copies.
        return Ok((1..=count)
            .map(|i| Zeroizing::new(format!("{PREFIX}:1:{:02x}{}", i, hex::encode(secret))))
            .collect());
    }
    let raw = vsss_rs::Gf256::split_array(threshold, count, secret, OsRng)
        .map_err(|e| HsmError::BadInput(format!("share split failed: {e:?}")))?;
    Ok(raw
        .into_iter()
        .map(|mut s| {
            let t = Zeroizing::new(format!("{PREFIX}:{threshold}:{}", hex::encode(&s)));
            zeroize::Zeroize::zeroize(&mut s);
            t
        })
        .collect())
}

/// A parsed share: (threshold, bytes). The first byte of the bytes is the share's index.
pub(crate) fn parse(text: &str) -> Result<(usize, Zeroizing<Vec<u8>>)> {
    let text = text.trim();
    let mut it = text.splitn(3, ':');
    let (p, t, h) = (it.next(), it.next(), it.next());
    if p != Some(PREFIX) {
        return Err(HsmError::BadShare(format!(
            "a share starts with '{PREFIX}:'"
        )));
    }
    let threshold: usize = t
        .and_then(|t| t.parse().ok())
        .filter(|t| (1..=255).contains(t))
        .ok_or_else(|| {
            HsmError::BadShare("the threshold field is not a number from 1 to 255".into())
        })?;
    let bytes = Zeroizing::new(
        hex::decode(h.unwrap_or(""))
            .map_err(|_| HsmError::BadShare("the share body is not hex".into()))?,
    );
    if bytes.len() != 1 + crate::seal::MASTER_KEY_LEN || bytes[0] == 0 {
        return Err(HsmError::BadShare(
            "the share has the wrong length or index".into(),
        ));
    }
    Ok((threshold, bytes))
}

pub(crate) fn combine(
    threshold: usize,
    shares: &[Zeroizing<Vec<u8>>],
) -> Result<Zeroizing<Vec<u8>>> {
    if threshold == 1 {
        let s = shares
            .first()
            .ok_or_else(|| HsmError::BadShare("no share".into()))?;
        return Ok(Zeroizing::new(s[1..].to_vec()));
    }
    let v: Vec<Vec<u8>> = shares.iter().map(|s| s.to_vec()).collect();
    let out = vsss_rs::Gf256::combine_array(&v)
        .map_err(|e| HsmError::BadShare(format!("the shares do not combine: {e:?}")));
    for mut s in v {
        zeroize::Zeroize::zeroize(&mut s);
    }
    Ok(Zeroizing::new(out?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_of_three() {
        let secret = [7u8; 32];
        let shares = split(&secret, 2, 3).unwrap();
        let a = parse(&shares[0]).unwrap();
        let c = parse(&shares[2]).unwrap();
        assert_eq!(a.0, 2);
        let got = combine(2, &[a.1, c.1]).unwrap();
        assert_eq!(&got[..], &secret[..]);
    }

    #[test]
    fn one_of_one() {
        let secret = [9u8; 32];
        let shares = split(&secret, 1, 1).unwrap();
        let a = parse(&shares[0]).unwrap();
        assert_eq!(&combine(1, &[a.1]).unwrap()[..], &secret[..]);
    }

    #[test]
    fn garbage_share_is_rejected() {
        assert!(parse("nope").is_err());
        assert!(parse("kagi-share-v1:2:zz").is_err());
        assert!(parse("kagi-share-v1:2:00").is_err());
    }
}
