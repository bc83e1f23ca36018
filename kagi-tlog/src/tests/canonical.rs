//! RFC 8785 output for the value types kagi logs, whatever serde_json's map order is.

use crate::canonical_json;
use serde_json::{json, Map, Value};

#[test]
fn members_are_sorted_whatever_the_insertion_order() {
    // Inserted in reverse order: with serde_json's preserve_order feature the map iterates
    // this way, without it sorted; the canonical form is the same either way.
    let mut m = Map::new();
    for k in ["z", "b", "a", "B", "aa", "", "10", "1"] {
        m.insert(k.into(), json!(k.len()));
    }
    // The dev-dependency turns preserve_order on: the map really is in insertion order here.
    assert_eq!(m.keys().next().map(String::as_str), Some("z"));
    assert_ne!(
        Value::Object(m.clone()).to_string(),
        canonical_json(&Value::Object(m.clone()))
    );
    assert_eq!(
        canonical_json(&Value::Object(m)),
        r#"{"":0,"1":1,"10":2,"B":1,"a":1,"aa":2,"b":1,"z":1}"#
    );
    let nested = json!({"outer": {"y": [3, {"b": null, "a": true}], "x": false}});
    assert_eq!(
        canonical_json(&nested),
        r#"{"outer":{"x":false,"y":[3,{"a":true,"b":null}]}}"#
    );
}

#[test]
fn member_names_sort_by_utf16_code_units() {
    // RFC 8785 §3.2.3's example: U+1F600 (surrogates D83D DE00) sorts before U+FB33 in UTF-16,
    // after it by code point.
    let v = json!({"\u{fb33}": "hebrew", "\u{1f600}": "emoji", "\r": "cr", "1": "one", "\u{80}": "ctl", "ö": "o"});
    assert_eq!(
        canonical_json(&v),
        "{\"\\r\":\"cr\",\"1\":\"one\",\"\u{80}\":\"ctl\",\"ö\":\"o\",\"\u{1f600}\":\"emoji\",\"\u{fb33}\":\"hebrew\"}"
    );
}

#[test]
fn strings_escape_only_what_rfc8785_escapes() {
    let s = "\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\"\\/ \u{7f}é\u{2028}€😀";
    assert_eq!(
        canonical_json(&json!(s)),
        "\"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f\\\"\\\\/ \u{7f}é\u{2028}€😀\""
    );
    // The key kagi entries hold: hex, base64 (with + and /) and names pass through unchanged.
    assert_eq!(canonical_json(&json!("q+/A==")), "\"q+/A==\"");
}

#[test]
fn numbers_follow_ecmascript() {
    let cases: &[(Value, &str)] = &[
        (json!(0), "0"),
        (json!(-0.0), "0"),
        (json!(1_700_000_000i64), "1700000000"),
        (json!(i64::MIN), "-9223372036854775808"),
        (json!(u64::MAX), "18446744073709551615"),
        (json!(1.0), "1"),
        (json!(-1.5), "-1.5"),
        (json!(0.1), "0.1"),
        (json!(123.456), "123.456"),
        (json!(1e21), "1e+21"),
        (json!(1e20), "100000000000000000000"),
        (json!(1.5e-7), "1.5e-7"),
        (json!(0.000001), "0.000001"),
        (json!(4.5e300), "4.5e+300"),
        (json!(5e-324), "5e-324"),
        (json!(1.7976931348623157e308), "1.7976931348623157e+308"),
        (json!(333333333.3333333), "333333333.3333333"),
    ];
    for (v, want) in cases {
        assert_eq!(canonical_json(v), *want, "{v:?}");
    }
}
