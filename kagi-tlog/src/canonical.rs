//! The canonical JSON encoding of every body kagi logs or signs: RFC 8785, the JSON
//! Canonicalization Scheme (JCS).
//!
//! Written out here rather than left to `serde_json::to_string` because serde_json's key order
//! is a build-time accident: with its `preserve_order` feature (which cedar-policy turns on in
//! the `kagi` binary) objects keep insertion order, without it they are sorted. A leaf hash must
//! not depend on which crates happen to be linked, so objects are sorted here, always:
//!
//! - object members sorted by their names' UTF-16 code units (RFC 8785 §3.2.3), no whitespace;
//! - strings with only `"` `\` and U+0000..U+001F escaped, using `\b \t \n \f \r` where they
//!   exist and `\u00xx` (lower-case hex) otherwise; everything else, non-ASCII included, as is
//!   (§3.2.2.2);
//! - integers as their decimal digits; other numbers as ECMAScript's `Number.prototype.toString`
//!   writes them (§3.2.2.3), which is what JCS requires of IEEE 754 doubles.

use serde_json::{Map, Number, Value};

/// The RFC 8785 canonical form of `value`.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>) {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    // UTF-16 code-unit order, not Rust's byte (code point) order: they differ for characters
    // above U+FFFF against U+E000..U+FFFF.
    members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    out.push('{');
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, name);
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{0C}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        out.push_str(&es6_number(f));
    }
}

/// ECMAScript's Number::toString(x) for a finite double (ECMA-262 §6.1.6.1.20), from the
/// shortest round-tripping digits that Rust's `{:e}` formatting gives.
fn es6_number(x: f64) -> String {
    if x == 0.0 {
        // -0 too: ECMAScript writes it "0".
        return "0".into();
    }
    if !x.is_finite() {
        // serde_json cannot hold these; JSON has no spelling for them.
        return "null".into();
    }
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    // x = 0.d1d2...dk × 10^n, in the spec's terms.
    let k = digits.len() as i32;
    let n = exp + 1;
    let mut s = String::new();
    if x < 0.0 {
        s.push('-');
    }
    if k <= n && n <= 21 {
        s.push_str(&digits);
        s.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        s.push_str(&digits[..n as usize]);
        s.push('.');
        s.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-n) as usize));
        s.push_str(&digits);
    } else {
        s.push_str(&digits[..1]);
        if k > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push(if n >= 1 { '+' } else { '-' });
        s.push_str(&(n - 1).abs().to_string());
    }
    s
}
