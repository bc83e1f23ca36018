//! Certificate serial numbers: 128 random bits, positive, minimally encoded (RFC 5280 §4.1.2.2
//! allows up to 20 octets; CA/B Forum wants at least 64 bits of CSPRNG output).

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// A fresh serial as DER INTEGER content octets (big-endian, positive, no redundant zero byte).
pub fn random_serial() -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
    let mut b = [0u8; 16];
    SystemRandom::new().fill(&mut b)?;
    // Clear the top bit so the INTEGER is positive without a leading 0x00, and make sure the
    // first octet is non-zero so the encoding is minimal and always 16 octets long.
    b[0] &= 0x7f;
    b[0] |= 0x40;
    Ok(b.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_positive_minimal_and_distinct() {
        let a = random_serial().unwrap();
        let b = random_serial().unwrap();
        assert_eq!(a.len(), 16);
        assert!(a[0] & 0x80 == 0 && a[0] != 0);
        assert_ne!(a, b);
    }
}
