//! RFC 868 time: seconds since 1900-01-01 00:00 UTC as a big-endian 32-bit
//! number. The count wraps in February 2036; sending it modulo 2^32 is what
//! the RFC's clients expect and keeps working across the wrap.

/// Seconds from 1900 to 1970.
const EPOCH_OFFSET: u64 = 2_208_988_800;

pub fn now() -> [u8; 4] {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    encode(unix)
}

fn encode(unix: u64) -> [u8; 4] {
    ((unix + EPOCH_OFFSET) as u32).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_the_2036_wrap() {
        assert_eq!(u32::from_be_bytes(encode(0)), 2_208_988_800);
        // 2036-02-07 06:28:16 UTC is 2^32 seconds after 1900: it wraps to 0.
        let wrap = (1u64 << 32) - EPOCH_OFFSET;
        assert_eq!(u32::from_be_bytes(encode(wrap - 1)), u32::MAX);
        assert_eq!(u32::from_be_bytes(encode(wrap)), 0);
        assert_eq!(u32::from_be_bytes(encode(wrap + 5)), 5);
    }
}
