//! W3C Baggage encoding and strict, bounded decoding.

use crate::error::AttributeError;

/// Members a baggage header carries at most (W3C: at least 64 propagated).
pub const MAX_MEMBERS: usize = 64;
/// Bytes a baggage header carries at most (W3C: at least 8192 propagated).
pub const MAX_BYTES: usize = 8192;

/// Whether `b` may appear in a spanline metadata key.
pub(crate) fn is_metadata_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*')
}

/// RFC 7230 `tchar`: what a baggage key is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// W3C `baggage-octet`: what may stand unescaped in a value.
fn is_value_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E) && b != b'%'
}

/// Encode members as a `baggage` header value, enforcing the limits.
pub(crate) fn encode<'a>(
    members: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<String, AttributeError> {
    let mut out = String::new();
    let mut count = 0;
    for (key, value) in members {
        count += 1;
        if count > MAX_MEMBERS {
            return Err(AttributeError::TooManyMembers { max: MAX_MEMBERS });
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(key);
        out.push('=');
        for &b in value.as_bytes() {
            if is_value_byte(b) {
                out.push(b as char);
            } else {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xF)] as char);
            }
        }
        if out.len() > MAX_BYTES {
            return Err(AttributeError::TooLarge {
                size: out.len(),
                max: MAX_BYTES,
            });
        }
    }
    Ok(out)
}

/// The result of decoding an inbound baggage header.
#[derive(Debug, Default)]
pub(crate) struct Decoded<'a> {
    /// Valid members, in order.
    pub(crate) members: Vec<(&'a str, String)>,
    /// Members skipped: malformed, or beyond the limits.
    pub(crate) rejected: usize,
}

/// Decode a `baggage` header strictly. Only the first [`MAX_BYTES`] bytes
/// and [`MAX_MEMBERS`] members are read; whole members beyond them are
/// dropped, and so is any malformed member. Properties (`;k=v`) are ignored.
pub(crate) fn decode(header: &str) -> Decoded<'_> {
    let mut decoded = Decoded::default();
    let mut consumed = 0usize;
    for member in header.split(',') {
        consumed += member.len() + 1;
        if consumed > MAX_BYTES + 1 || decoded.members.len() >= MAX_MEMBERS {
            // This member and every one after it are dropped whole.
            let rest = &header[consumed.min(header.len())..];
            decoded.rejected += 1;
            if !rest.is_empty() {
                decoded.rejected += 1 + rest.bytes().filter(|&b| b == b',').count();
            }
            break;
        }
        let member = member.trim_matches(|c| c == ' ' || c == '\t');
        if member.is_empty() {
            continue;
        }
        let kv = member.split(';').next().unwrap_or("");
        let Some((key, value)) = kv.split_once('=') else {
            decoded.rejected += 1;
            continue;
        };
        let key = key.trim_matches(|c| c == ' ' || c == '\t');
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        if key.is_empty() || !key.bytes().all(is_token_byte) {
            decoded.rejected += 1;
            continue;
        }
        match decode_value(value) {
            Some(v) => decoded.members.push((key, v)),
            None => decoded.rejected += 1,
        }
    }
    decoded
}

/// A strict baggage value: only `baggage-octet`s and `%XX` escapes.
fn decode_value(value: &str) -> Option<String> {
    if value.bytes().all(|b| b == b'%' || is_value_byte(b)) {
        percent_decode(value)
    } else {
        None
    }
}

/// Decode `%XX` escapes (either case); other bytes pass through. `None` on a
/// malformed escape or when the result is not UTF-8.
pub fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_val(*bytes.get(i + 1)?)?;
            let lo = hex_val(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_values_needing_escapes() {
        let header = encode([("user.id", "a b,c;d=é%")]).unwrap();
        assert_eq!(header, "user.id=a%20b%2Cc%3Bd=%C3%A9%25");
        let d = decode(&header);
        assert_eq!(d.members, vec![("user.id", "a b,c;d=é%".to_owned())]);
        assert_eq!(d.rejected, 0);
    }

    #[test]
    fn ignores_properties_and_whitespace() {
        let d = decode(" a = 1 ;prop=x , b=2");
        assert_eq!(d.members, vec![("a", "1".into()), ("b", "2".into())]);
    }

    #[test]
    fn rejects_malformed_members_individually() {
        let d = decode("good=1,noequals,bad key=2,x=%zz,y=\"q\",ok=2");
        assert_eq!(d.members, vec![("good", "1".into()), ("ok", "2".into())]);
        assert_eq!(d.rejected, 4);
    }

    #[test]
    fn drops_whole_members_past_the_member_limit() {
        let header: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        let joined = header.join(",");
        let d = decode(&joined);
        assert_eq!(d.members.len(), MAX_MEMBERS);
        assert_eq!(d.rejected, 100 - MAX_MEMBERS);
    }

    #[test]
    fn drops_whole_members_past_the_byte_limit() {
        let big = "v".repeat(3000);
        let header = format!("a={big},b={big},c={big},d=1");
        let d = decode(&header);
        assert_eq!(d.members.len(), 2, "a and b fit in 8192 bytes, c does not");
        assert_eq!(d.rejected, 2);
    }

    #[test]
    fn one_megabyte_header_is_bounded_work() {
        let header = "x".repeat(1 << 20);
        let d = decode(&header);
        assert!(d.members.is_empty());
        assert_eq!(d.rejected, 1);
    }

    #[test]
    fn encode_enforces_limits() {
        let big = "v".repeat(9000);
        assert!(matches!(
            encode([("k", big.as_str())]),
            Err(AttributeError::TooLarge { .. })
        ));
        let many: Vec<(String, String)> = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(matches!(
            encode(many.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            Err(AttributeError::TooManyMembers { .. })
        ));
    }
}
