//! Deterministic pseudo-random values for generators: a value depends only on its seed,
//! column and row number, so a row generated again after a restart is the same row.

/// SplitMix64: a fast, well-mixed 64-bit hash of `x`.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The random bits of `column` in `row`, under `seed`.
pub fn bits(seed: u64, column: u64, row: u64) -> u64 {
    mix(seed ^ mix(column.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ mix(row)))
}

/// A value in `[min, max]` (inclusive).
pub fn int_in(bits: u64, min: i64, max: i64) -> i64 {
    let span = (max as i128 - min as i128 + 1) as u128;
    (min as i128 + (bits as u128 % span) as i128) as i64
}

/// A value in `[min, max]`.
pub fn float_in(bits: u64, min: f64, max: f64) -> f64 {
    let unit = (bits >> 11) as f64 / (1u64 << 53) as f64;
    min + unit * (max - min)
}

/// `length` letters and digits.
pub fn text(bits: u64, length: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut state = bits;
    (0..length)
        .map(|_| {
            state = mix(state);
            ALPHABET[(state % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_deterministic_and_in_range() {
        assert_eq!(bits(1, 2, 3), bits(1, 2, 3));
        assert_ne!(bits(1, 2, 3), bits(1, 2, 4));
        for row in 0..1000 {
            let v = int_in(bits(0, 0, row), -5, 5);
            assert!((-5..=5).contains(&v));
            let f = float_in(bits(0, 1, row), 1.0, 2.0);
            assert!((1.0..=2.0).contains(&f));
        }
        assert_eq!(int_in(u64::MAX, i64::MIN, i64::MAX), int_in(u64::MAX, i64::MIN, i64::MAX));
        assert_eq!(text(7, 12).len(), 12);
    }
}
