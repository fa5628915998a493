//! Hex: lowercase encoding and strict decoding (either case, no prefix, no spaces).

/// Why a string is not the hex that was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// Not the expected number of hex digits.
    #[error("must be {expected} hex digits, got {got} characters")]
    Length {
        /// Digits expected.
        expected: usize,
        /// Characters given.
        got: usize,
    },
    /// An odd number of digits (a byte is two).
    #[error("an odd number of hex digits ({0})")]
    Odd(usize),
    /// A character that is not a hex digit.
    #[error("{ch:?} at position {pos} is not a hex digit")]
    Digit {
        /// The character.
        ch: char,
        /// Its position (in characters).
        pos: usize,
    },
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

fn nibble(s: &str, pos: usize, c: u8) -> Result<u8, HexError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(HexError::Digit {
            ch: s[pos..].chars().next().unwrap_or('?'),
            pos: s[..pos].chars().count(),
        }),
    }
}

/// Decodes hex digits into `out`, which must take exactly half of them.
fn decode_into(s: &str, out: &mut [u8]) -> Result<(), HexError> {
    // A non-ASCII character is not a digit: it is reported at its position.
    for (i, o) in out.iter_mut().enumerate() {
        let b = s.as_bytes();
        let hi = nibble(s, 2 * i, b[2 * i])?;
        let lo = nibble(s, 2 * i + 1, b[2 * i + 1])?;
        *o = (hi << 4) | lo;
    }
    Ok(())
}

/// Decodes an even number of hex digits (either case).
pub fn decode(s: &str) -> Result<Vec<u8>, HexError> {
    if !s.len().is_multiple_of(2) {
        if let Some((pos, ch)) = s.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(HexError::Digit {
                ch,
                pos: s[..pos].chars().count(),
            });
        }
        return Err(HexError::Odd(s.len()));
    }
    let mut out = vec![0u8; s.len() / 2];
    decode_into(s, &mut out)?;
    Ok(out)
}

/// Decodes exactly 64 hex digits (either case) into 32 bytes.
pub fn decode32(s: &str) -> Result<[u8; 32], HexError> {
    if s.len() != 64 {
        return Err(HexError::Length {
            expected: 64,
            got: s.chars().count(),
        });
    }
    let mut out = [0u8; 32];
    decode_into(s, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_either_case() {
        let bytes: Vec<u8> = (0..=255).collect();
        let s = encode(&bytes);
        assert_eq!(s.len(), 512);
        assert_eq!(decode(&s).unwrap(), bytes);
        assert_eq!(decode(&s.to_uppercase()).unwrap(), bytes);
        assert_eq!(decode("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert_eq!(decode("abc"), Err(HexError::Odd(3)));
        assert_eq!(decode("0g"), Err(HexError::Digit { ch: 'g', pos: 1 }));
        assert_eq!(decode("é0"), Err(HexError::Digit { ch: 'é', pos: 0 }));
        assert_eq!(decode("0é"), Err(HexError::Digit { ch: 'é', pos: 1 }));
        assert_eq!(
            decode32("00"),
            Err(HexError::Length {
                expected: 64,
                got: 2
            })
        );
        let mut s = "0".repeat(64);
        s.replace_range(5..6, "x");
        assert_eq!(
            decode32(&s).unwrap_err().to_string(),
            "'x' at position 5 is not a hex digit"
        );
        // 64 bytes of 2-byte characters: the first is reported, nothing panics.
        assert_eq!(
            decode32(&"é".repeat(32)),
            Err(HexError::Digit { ch: 'é', pos: 0 })
        );
        // 62 ASCII digits and one 2-byte character: 64 bytes, 63 characters.
        let s = format!("{}é", "0".repeat(62));
        assert_eq!(decode32(&s), Err(HexError::Digit { ch: 'é', pos: 62 }));
    }
}
