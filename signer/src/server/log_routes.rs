//! The transparency log over HTTP: checkpoint, verifier key, inclusion and consistency proofs
//! for anyone (no credentials: verifiers and witnesses need them, and checkpoints are signed),
//! and entry bodies for those allowed to read them. An entry names an identity, a key and a
//! time, so a public entry would let anyone count a line's output or a team's releases: by
//! default an auditor reads every entry and any other identity only its own; the
//! `log_entries_public` setting opens them to everyone. The full recomputation is an auditor's
//! call under /api/v1.

use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use base64::Engine;
use der::DecodePem;
use kagi_hsm_core::tlog::tiles::{bundle, TileRef};
use kagi_hsm_core::{Role, Session};
use serde::Deserialize;
use serde_json::json;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

use super::auth::{Caller, ClientCertificate};
use super::error_codes::Code;
use super::errors::ApiError;
use super::handler::{blocking, ApiResult};
use super::state::AppState;

fn b64(h: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// `GET /log/checkpoint[?size=N]`: the signed note (text/plain).
pub async fn checkpoint(state: web::Data<AppState>, q: web::Query<SizeQuery>) -> ApiResult {
    let size = q.size;
    let cp = blocking(&state.hsm, move |h| h.tlog_checkpoint(size)).await?;
    match cp {
        Some(c) => Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .insert_header(("Cache-Control", "no-cache"))
            .body(c.note)),
        None => Err(ApiError::new(
            Code::NoCheckpoint,
            "the transparency log has no checkpoint at that size (none yet, or the size is not one a batch ended at)",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeQuery {
    #[serde(default)]
    size: Option<i64>,
}

/// `GET /log/key`: the verifier key (C2SP signed-note format) to pin.
pub async fn key(state: web::Data<AppState>) -> ApiResult {
    let k = blocking(&state.hsm, |h| h.tlog_verifier_key()).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(format!("{k}\n")))
}

/// `GET /log/entries/N` on the HTTPS listener: public under `log_entries_public`; otherwise an
/// auditor reads any entry and another identity the entries that name it. Any other entry is
/// answered exactly as one past the end of the log (404 `not_found`, the same message), so a
/// caller learns nothing about entries that are not theirs.
pub async fn entry(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<i64>,
) -> ApiResult {
    let index = path.into_inner();
    if state.log_entries_public {
        return read(&state, index).await;
    }
    if req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .is_none()
        && req.conn_data::<ClientCertificate>().is_none()
    {
        return Err(private_entries());
    }
    let Caller(session) = Caller::extract(&req).await?;
    if session.has_role(Role::Auditor) {
        return read(&state, index).await;
    }
    let found = blocking(&state.hsm, move |h| h.tlog_entry(index)).await;
    let e = match found {
        Ok(e) => e,
        Err(e) if e.code() == Code::NotFound.as_str() => return Err(no_entry(index)),
        Err(e) => return Err(e),
    };
    if !names(e.body.as_bytes(), &session, &state.pki.urls.base) {
        return Err(no_entry(index));
    }
    Ok(HttpResponse::Ok().json(e))
}

/// `GET /log/entries/N` on the plain-HTTP listener: public under `log_entries_public`, else
/// 401 whatever the request carries. A credential sent in clear text is never looked at, so
/// no client is ever rewarded for sending one there.
pub async fn public_entry(state: web::Data<AppState>, path: web::Path<i64>) -> ApiResult {
    if state.log_entries_public {
        return read(&state, path.into_inner()).await;
    }
    Err(private_entries())
}

async fn read(state: &AppState, index: i64) -> ApiResult {
    let e = blocking(&state.hsm, move |h| h.tlog_entry(index)).await?;
    Ok(HttpResponse::Ok().json(e))
}

fn private_entries() -> ApiError {
    ApiError::new(
        Code::Unauthenticated,
        "log entries are private on this instance: ask the HTTPS API with the token of an \
         auditor, or of the identity that made the entry (KAGI_TOKEN); checkpoints and proofs \
         need no credential",
    )
}

fn no_entry(index: i64) -> ApiError {
    ApiError::new(
        Code::NotFound,
        format!(
            "no log entry {index} that you may read: an identity reads the entries that name \
             it, an auditor every entry"
        ),
    )
}

/// Whether the entry `body` names `session`: kagi's own entries by their `identity` (the
/// session's actor, `partition:name`), Sigstore entries by their certificate's URI
/// subjectAltName (the identity URI kagi put there). Anything else names no one.
fn names(body: &[u8], session: &Session, public_url: &str) -> bool {
    if let Ok(sig) = kagi_tlog::SignatureEntry::parse(body) {
        return sig.identity == session.actor();
    }
    let Ok(rekord) = kagi_tlog::HashedRekord::parse(body) else {
        return false;
    };
    let Ok(cert) = x509_cert::Certificate::from_pem(rekord.certificate_pem.as_bytes()) else {
        return false;
    };
    let want = crate::sigstore::identity_uri(public_url, session);
    let sans = match cert.tbs_certificate().get_extension::<SubjectAltName>() {
        Ok(Some((_, san))) => san,
        _ => return false,
    };
    sans.0.iter().any(|n| match n {
        GeneralName::UniformResourceIdentifier(u) => u.as_str() == want,
        _ => false,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    index: i64,
    size: i64,
}

pub async fn inclusion(state: web::Data<AppState>, q: web::Query<InclusionQuery>) -> ApiResult {
    let (index, size) = (q.index, q.size);
    let proof = blocking(&state.hsm, move |h| h.tlog_inclusion_proof(index, size)).await?;
    Ok(HttpResponse::Ok().json(json!({
        "index": index, "tree_size": size,
        "hashes": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    first: i64,
    second: i64,
}

pub async fn consistency(state: web::Data<AppState>, q: web::Query<ConsistencyQuery>) -> ApiResult {
    let (first, second) = (q.first, q.second);
    let proof = blocking(&state.hsm, move |h| h.tlog_consistency_proof(first, second)).await?;
    Ok(HttpResponse::Ok().json(json!({
        "first": first, "second": second,
        "hashes": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
    })))
}

/// `POST /api/v1/log/verify` (auditor): recompute the whole log from its entries.
pub async fn verify(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(session) = caller;
    let (entries, checkpoints) = blocking(&state.hsm, move |h| h.tlog_verify(&session)).await?;
    Ok(HttpResponse::Ok().json(json!({"entries": entries, "checkpoints": checkpoints})))
}

// ---- C2SP tlog-tiles -----------------------------------------------------------------------

/// Full tiles and bundles never change; partial ones are revalidated (a client asks for the
/// widths its checkpoint needs, and the full tile replaces them).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Parse `<N>[.p/<W>]` (N in the spec's `x001/x234/067` encoding) into index and width.
fn parse_tile_index(s: &str) -> Option<(u64, Option<u16>)> {
    let (index_part, width) = match s.split_once(".p/") {
        Some((i, w)) => {
            let n: u16 = w.parse().ok().filter(|n: &u16| n.to_string() == w)?;
            if !(1..=255).contains(&n) {
                return None;
            }
            (i, Some(n))
        }
        None => (s, None),
    };
    let parts: Vec<&str> = index_part.split('/').collect();
    let (last, leading) = parts.split_last()?;
    let mut digits = String::with_capacity(parts.len() * 3);
    for (n, p) in leading.iter().enumerate() {
        let d = p.strip_prefix('x')?;
        // The first element is never all zeros: one index, one path.
        if n == 0 && d == "000" {
            return None;
        }
        digits.push_str(d);
    }
    digits.push_str(last);
    if !parts
        .iter()
        .enumerate()
        .all(|(n, p)| p.len() == if n + 1 == parts.len() { 3 } else { 4 })
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((digits.parse().ok()?, width))
}

fn bad_tile_path(path: &str, entries: bool) -> ApiError {
    let form = if entries {
        "/log/tile/entries/<N>[.p/<W>]"
    } else {
        "/log/tile/<L>/<N>[.p/<W>]"
    };
    ApiError::new(
        Code::BadPath,
        format!(
            "'{path}' is not a tile path: the form is {form}, with L a level 0-63, N the index in 3-digit groups (all but the last prefixed 'x', e.g. x001/234 for 1234) and W a width 1-255 (C2SP tlog-tiles)"
        ),
    )
}

fn octets(body: Vec<u8>, cache: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("Cache-Control", cache))
        .body(body)
}

/// `GET /log/tile/<L>/<N>[.p/<W>]`: a tile of Merkle tree hashes, for anyone.
pub async fn tile(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let raw = path.into_inner();
    let t = raw
        .split_once('/')
        .and_then(|(l, rest)| {
            let level: u32 = l
                .parse()
                .ok()
                .filter(|n: &u32| n.to_string() == l && *n <= 63)?;
            let (index, width) = parse_tile_index(rest)?;
            Some(TileRef {
                level,
                index,
                width,
            })
        })
        .ok_or_else(|| bad_tile_path(&raw, false))?;
    let bytes = blocking(&state.hsm, move |h| h.tlog_tile(&t)).await?;
    Ok(octets(
        bytes,
        if t.width.is_none() {
            IMMUTABLE
        } else {
            "no-cache"
        },
    ))
}

fn parse_bundle_path(raw: &str) -> Result<TileRef, ApiError> {
    let (index, width) = parse_tile_index(raw).ok_or_else(|| bad_tile_path(raw, true))?;
    Ok(TileRef {
        level: 0,
        index,
        width,
    })
}

/// `GET /log/tile/entries/<N>[.p/<W>]` on the HTTPS listener: an entry bundle, under the rule
/// of `/log/entries/<index>`: everyone when entries are public; else an auditor any bundle,
/// and another identity a bundle only when every entry in it names it (404 otherwise, as for
/// a bundle beyond the log). Private bundles are never cached by shared caches.
pub async fn entry_bundle(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult {
    let t = parse_bundle_path(&path.into_inner())?;
    if state.log_entries_public {
        return read_bundle(&state, t, None).await;
    }
    if req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .is_none()
        && req.conn_data::<ClientCertificate>().is_none()
    {
        return Err(private_entries());
    }
    let Caller(session) = Caller::extract(&req).await?;
    if session.has_role(Role::Auditor) {
        return read_bundle(&state, t, None).await;
    }
    read_bundle(&state, t, Some(session)).await
}

/// `GET /log/tile/entries/...` on the plain-HTTP listener: only when entries are public.
pub async fn public_entry_bundle(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let t = parse_bundle_path(&path.into_inner())?;
    if state.log_entries_public {
        return read_bundle(&state, t, None).await;
    }
    Err(private_entries())
}

/// The bundle, for everyone (`only_for` None) or only if every entry names `only_for`.
async fn read_bundle(state: &AppState, t: TileRef, only_for: Option<Session>) -> ApiResult {
    let public = only_for.is_none() && state.log_entries_public;
    let found = blocking(&state.hsm, move |h| h.tlog_entry_bundle(&t)).await;
    let bodies = match (found, &only_for) {
        (Ok(b), _) => b,
        // Someone who may not read every entry learns nothing from the difference between a
        // bundle beyond the log and one they may not read.
        (Err(e), Some(_)) if e.code() == Code::NotFound.as_str() => return Err(no_bundle(&t)),
        (Err(e), _) => return Err(e),
    };
    if let Some(session) = &only_for {
        if !bodies
            .iter()
            .all(|b| names(b, session, &state.pki.urls.base))
        {
            return Err(no_bundle(&t));
        }
    }
    let bytes = bundle(&bodies).map_err(ApiError::from)?;
    let cache = match (public, t.width) {
        (true, None) => IMMUTABLE,
        (true, Some(_)) => "no-cache",
        (false, _) => "private, no-store",
    };
    Ok(octets(bytes, cache))
}

fn no_bundle(t: &TileRef) -> ApiError {
    ApiError::new(
        Code::NotFound,
        format!(
            "no entry bundle {}{} that you may read: an identity reads a bundle only when every entry in it names it, an auditor every bundle",
            t.index,
            t.width.map(|w| format!(".p/{w}")).unwrap_or_default()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::parse_tile_index;

    #[test]
    fn tile_paths_parse_as_the_spec_encodes_them() {
        assert_eq!(parse_tile_index("000"), Some((0, None)));
        assert_eq!(parse_tile_index("067"), Some((67, None)));
        assert_eq!(parse_tile_index("x001/000"), Some((1000, None)));
        assert_eq!(parse_tile_index("x001/x234/067"), Some((1234067, None)));
        assert_eq!(
            parse_tile_index("x001/x234/067.p/8"),
            Some((1234067, Some(8)))
        );
        assert_eq!(parse_tile_index("001.p/255"), Some((1, Some(255))));
        for bad in [
            "",
            "1",
            "01",
            "0001",
            "x000/001",
            "001/001",
            "x01/001",
            "x001/01",
            "abc",
            "00a",
            "001.p/0",
            "001.p/256",
            "001.p/08",
            "001.p/",
            "001.p",
            "x001",
            "001/",
            "/001",
            "x1000/000",
            "001.p/1/2",
            "-01",
            "+01",
            // 21 digits overflow a u64.
            "x999/x999/x999/x999/x999/x999/999",
        ] {
            assert_eq!(parse_tile_index(bad), None, "{bad:?}");
        }
    }
}
