//! One audit record as an RFC 5424 message, framed for RFC 5425 (octet counting).

use kagi_hsm_core::AuditEvent;

/// The structured data's SD-ID: kagi's parameters under the documentation enterprise number
/// (RFC 5612), the arc kagi's default TSA policy uses too.
pub const SD_ID: &str = "kagi@32473";

/// Facility 13, "log audit" (RFC 5424 table 1).
const FACILITY_LOG_AUDIT: u8 = 13;

/// Severity: what a SIEM should make of the record.
fn severity(ev: &AuditEvent, mac_ok: bool) -> u8 {
    if !mac_ok {
        // A record whose MAC does not hold was written or changed behind kagi's back.
        1 // alert
    } else if ev.outcome == "ok" {
        6 // informational
    } else {
        4 // warning: denied or failed
    }
}

/// The record as one RFC 5424 message (without framing).
///
/// PROCID is left out (`-`): a record sent again, by this process or the next one, is then the
/// very same message, which a collector can drop whole.
pub fn message(ev: &AuditEvent, mac_ok: bool, hostname: &str) -> String {
    let pri = FACILITY_LOG_AUDIT * 8 + severity(ev, mac_ok);
    let mut sd = format!(
        "[{SD_ID} seq=\"{}\" mac=\"{}\" macValid=\"{}\" actor=\"{}\" outcome=\"{}\"",
        ev.seq,
        hex::encode(&ev.mac),
        mac_ok,
        param(&ev.actor),
        param(&ev.outcome)
    );
    if let Some(k) = &ev.key_id {
        sd.push_str(&format!(" key=\"{}\"", param(k)));
    }
    if let Some(p) = &ev.partition_name {
        sd.push_str(&format!(" partition=\"{}\"", param(p)));
    }
    sd.push(']');
    // The record exactly as the audit API shows it (MAC in base64 there).
    let json = serde_json::to_string(ev).unwrap_or_else(|_| "{}".into());
    format!(
        "<{pri}>1 {} {} kagi - {} {sd} {json}",
        timestamp(ev.ts),
        header_field(hostname, 255),
        header_field(&ev.action, 32),
    )
}

/// RFC 5425 octet-counting frame: `LEN SP MSG`.
pub fn frame(msg: &str) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg.as_bytes());
    out
}

/// Unix milliseconds as an RFC 5424 TIMESTAMP in UTC with milliseconds.
fn timestamp(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => "-".into(),
    }
}

/// A header field (HOSTNAME, MSGID): printable US-ASCII without spaces, at most `max` long,
/// `-` when nothing is left.
fn header_field(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if clean.is_empty() {
        "-".into()
    } else {
        clean
    }
}

/// An SD-PARAM value: `"`, `\` and `]` escaped (RFC 5424 section 6.3.3).
fn param(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        AuditEvent {
            seq: 7,
            ts: 1_796_050_000_123,
            actor: "default:ci \"x\"]".into(),
            action: "key.sign".into(),
            partition_name: Some("default".into()),
            key_id: Some("k1".into()),
            use_hi: Some(3),
            outcome: "ok".into(),
            detail: "{}".into(),
            mac: vec![0xab, 0x01],
        }
    }

    #[test]
    fn a_record_is_an_rfc5424_line_with_its_seq_and_mac() {
        let m = message(&event(), true, "kagi.example");
        assert!(
            m.starts_with("<110>1 2026-11-30T14:46:40.123Z kagi.example kagi - key.sign [kagi@32473 seq=\"7\" mac=\"ab01\" macValid=\"true\" actor=\"default:ci \\\"x\\\"\\]\" outcome=\"ok\" key=\"k1\" partition=\"default\"] {"),
            "{m}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&m[m.find("] {").unwrap() + 2..]).unwrap();
        assert_eq!(json["seq"], 7);
        // A forged record is an alert; a refusal a warning.
        assert!(message(&event(), false, "h").starts_with("<105>1 "));
        let mut denied = event();
        denied.outcome = "denied:policy".into();
        assert!(message(&denied, true, "h").starts_with("<108>1 "));
        assert_eq!(frame("abc"), b"3 abc");
        assert_eq!(frame("é"), "2 é".as_bytes());
    }
}
