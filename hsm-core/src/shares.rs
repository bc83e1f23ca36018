//! Shamir M-of-N shares of the master key (vsss-rs over GF(256), byte-wise).
//!
//! Text form of a share: `kagi-share-v1:<threshold>:<hex>`. The threshold travels with the share
//! so `kagi unseal` can say how many more are needed; it is not secret.
//!
//! Shares are verifiable one by one: `init` stores a commitment (a domain-separated SHA-256) of
//! every share it hands out, and `unseal` refuses a share that does not match its index's
//! commitment before it joins the pool, so one forged share cannot spoil the real ones. A hash
//! of 32 random-looking bytes tells a database reader nothing about the share. Because any
//! `threshold` shares determine the whole polynomial, the commitments of every index are
//! recomputed after an unseal and compared with the stored ones ([`point_at`]): a database
//! writer who swaps them is noticed at the next unseal.

use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::error::{HsmError, Result};

const PREFIX: &str = "kagi-share-v1";
const COMMITMENT_DOMAIN: &[u8] = b"kagi-share-commitment-v1\0";
/// Bytes of one commitment in the stored list (index i at offset (i - 1) * 32).
pub(crate) const COMMITMENT_LEN: usize = 32;

/// The commitment to one share (its index byte and its value bytes).
pub(crate) fn commitment(share: &[u8]) -> [u8; COMMITMENT_LEN] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(COMMITMENT_DOMAIN);
    ctx.update(share);
    let mut out = [0u8; COMMITMENT_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Check one parsed share against the stored commitment list before it may join the pool.
pub(crate) fn check_commitment(share: &[u8], commitments: &[u8]) -> Result<()> {
    let index = usize::from(share[0]);
    let count = commitments.len() / COMMITMENT_LEN;
    let Some(expected) = commitments.get((index - 1) * COMMITMENT_LEN..index * COMMITMENT_LEN)
    else {
        return Err(HsmError::BadShare(format!(
            "share #{index} is not one of the {count} shares this instance made: check that it belongs to this instance"
        )));
    };
    aws_lc_rs::constant_time::verify_slices_are_equal(&commitment(share), expected).map_err(
        |_| {
            HsmError::BadShare(format!(
                "share #{index} does not match the commitment stored when the instance was initialized: it is damaged, forged or from another instance, and was not added (if every holder's share is refused, see THREAT-MODEL.md on the 'share_commitments' row)"
            ))
        },
    )
}

/// The share with index `x` of the polynomial through `shares` (each `[index, bytes...]`; at
/// least `threshold` of them): Lagrange interpolation in GF(256), byte by byte, as vsss-rs
/// splits. With exactly `threshold` genuine shares this is the share `init` gave index `x`.
pub(crate) fn point_at(shares: &[Zeroizing<Vec<u8>>], x: u8) -> Result<Zeroizing<Vec<u8>>> {
    use vsss_rs::Gf256;
    let first = shares
        .first()
        .ok_or_else(|| HsmError::BadShare("no share".into()))?;
    let xs: Vec<Gf256> = shares.iter().map(|s| Gf256::from(s[0])).collect();
    let at = Gf256::from(x);
    // The Lagrange basis at `x`; in GF(2^8) subtraction is addition.
    let mut basis = Vec::with_capacity(shares.len());
    for (i, xi) in xs.iter().enumerate() {
        let mut l = Gf256::from(1u8);
        for (j, xj) in xs.iter().enumerate() {
            if i != j {
                let den = *xi + *xj;
                if u8::from(den) == 0 {
                    return Err(HsmError::BadShare("two shares have the same index".into()));
                }
                l = l * (at + *xj) / den;
            }
        }
        basis.push(l);
    }
    let mut out = Zeroizing::new(Vec::with_capacity(first.len()));
    out.push(x);
    for k in 1..first.len() {
        let mut y = Gf256::from(0u8);
        for (s, l) in shares.iter().zip(&basis) {
            let v = s
                .get(k)
                .ok_or_else(|| HsmError::BadShare("the shares differ in length".into()))?;
            y += Gf256::from(*v) * *l;
        }
        out.push(u8::from(y));
    }
    Ok(out)
}

/// The commitments of indexes 1..=count of the polynomial through `shares`.
pub(crate) fn commitments_from(shares: &[Zeroizing<Vec<u8>>], count: u8) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(usize::from(count) * COMMITMENT_LEN);
    for x in 1..=count {
        out.extend_from_slice(&commitment(&point_at(shares, x)?));
    }
    Ok(out)
}

/// `count` shares of `secret`, any `threshold` of which rebuild it, and their commitments.
pub(crate) fn split(
    secret: &[u8],
    threshold: usize,
    count: usize,
) -> Result<(Vec<Zeroizing<String>>, Vec<u8>)> {
    if threshold == 0 || count == 0 || threshold > count || count > 255 {
        return Err(HsmError::BadInput(format!(
            "cannot make {count} shares with threshold {threshold}: need 1 <= threshold <= shares <= 255"
        )));
    }
    let raw: Vec<Zeroizing<Vec<u8>>> = if threshold == 1 {
        // vsss-rs wants threshold >= 2; one-of-N is just N copies (a constant polynomial).
        (1..=count)
            .map(|i| {
                let mut s = Zeroizing::new(Vec::with_capacity(1 + secret.len()));
                s.push(u8::try_from(i).map_err(|_| HsmError::BadInput("over 255 shares".into()))?);
                s.extend_from_slice(secret);
                Ok(s)
            })
            .collect::<Result<_>>()?
    } else {
        vsss_rs::Gf256::split_array(threshold, count, secret, OsRng)
            .map_err(|e| HsmError::BadInput(format!("share split failed: {e:?}")))?
            .into_iter()
            .map(Zeroizing::new)
            .collect()
    };
    let mut commitments = Vec::with_capacity(count * COMMITMENT_LEN);
    let mut texts = Vec::with_capacity(count);
    for s in &raw {
        commitments.extend_from_slice(&commitment(s));
        texts.push(Zeroizing::new(format!(
            "{PREFIX}:{threshold}:{}",
            hex::encode(&s[..])
        )));
    }
    Ok((texts, commitments))
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
        let (shares, commitments) = split(&secret, 2, 3).unwrap();
        let a = parse(&shares[0]).unwrap();
        let b = parse(&shares[1]).unwrap();
        let c = parse(&shares[2]).unwrap();
        assert_eq!(a.0, 2);
        for s in [&a.1, &b.1, &c.1] {
            check_commitment(s, &commitments).unwrap();
        }
        // Any two shares give back the third, so the commitments can be recomputed.
        let pool = [a.1.clone(), c.1.clone()];
        assert_eq!(&point_at(&pool, 2).unwrap()[..], &b.1[..]);
        assert_eq!(commitments_from(&pool, 3).unwrap(), commitments);
        let got = combine(2, &[a.1, c.1]).unwrap();
        assert_eq!(&got[..], &secret[..]);
    }

    #[test]
    fn a_forged_share_fails_its_commitment() {
        let (shares, commitments) = split(&[3u8; 32], 3, 5).unwrap();
        let mut forged = parse(&shares[1]).unwrap().1;
        forged[7] ^= 1;
        assert!(check_commitment(&forged, &commitments).is_err());
        let mut beyond = forged.clone();
        beyond[0] = 6;
        assert!(check_commitment(&beyond, &commitments).is_err());
        let pool: Vec<_> = shares[2..].iter().map(|s| parse(s).unwrap().1).collect();
        assert_eq!(commitments_from(&pool, 5).unwrap(), commitments);
    }

    #[test]
    fn one_of_one() {
        let secret = [9u8; 32];
        let (shares, commitments) = split(&secret, 1, 1).unwrap();
        let a = parse(&shares[0]).unwrap();
        check_commitment(&a.1, &commitments).unwrap();
        assert_eq!(
            commitments_from(std::slice::from_ref(&a.1), 1).unwrap(),
            commitments
        );
        assert_eq!(&combine(1, &[a.1]).unwrap()[..], &secret[..]);
    }

    #[test]
    fn garbage_share_is_rejected() {
        assert!(parse("nope").is_err());
        assert!(parse("kagi-share-v1:2:zz").is_err());
        assert!(parse("kagi-share-v1:2:00").is_err());
    }
}
