//! The C2SP tlog-witness protocol (https://c2sp.org/tlog-witness): the body of
//! `POST <prefix>/add-checkpoint`, the witness's answers as a client reads them, and the
//! witness's own decision, as pure functions both sides share.
//!
//! A request body is an old size line (`old <N>\n`), at most 63 consistency proof lines (one
//! base64 hash each), an empty line, then the signed checkpoint note. The witness answers:
//!
//! | status | when | body |
//! |---|---|---|
//! | 200 | cosigned | cosignature lines (`— <name> <base64>\n`) to append to the note |
//! | 400 | malformed body or checkpoint, or old size above the checkpoint's size | text |
//! | 403 | no signature by a key the witness trusts for the origin | text |
//! | 404 | the witness does not know the checkpoint's origin | text |
//! | 409 | the old size is not the witness's latest size, or same size with another root | `<size>\n`, `text/x.tlog.size` |
//! | 422 | the consistency proof does not verify | text |
//!
//! The witness's check and its save of the new latest checkpoint must happen atomically (the
//! spec's race: two requests checked against the same state, the smaller saved last, rolls the
//! witness back); [`check_add_checkpoint`] is the check, and the caller runs it inside the same
//! write transaction that saves [`Accepted`].

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::merkle::{empty_root, Hash};
use crate::note::{open_note, parse_checkpoint_body, unverified_text};
use crate::proof::verify_consistency;
use crate::Error;

/// The `Content-Type` of a 409 answer whose body is the witness's latest size.
pub const CONFLICT_CONTENT_TYPE: &str = "text/x.tlog.size";

/// The spec's limit on consistency proof lines in one request.
pub const MAX_PROOF_LINES: usize = 63;

/// The body of POST /add-checkpoint (C2SP tlog-witness): "old <N>\n", proof hashes (base64, one
/// per line), empty line, the signed checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old_size: u64,
    pub proof: Vec<[u8; 32]>,
    pub checkpoint: String,
}

impl AddCheckpoint {
    /// The request body, byte for byte as the spec lays it out.
    pub fn to_body(&self) -> String {
        let mut out = format!("old {}\n", self.old_size);
        for h in &self.proof {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parse a request body. Every deviation from the spec's layout is
    /// [`Error::Malformed`] (a witness answers it with 400): a missing or non-canonical old
    /// size line, a proof line that is not base64 of 32 bytes, more than 63 proof lines, a
    /// proof with an old size of 0, a missing empty line, or an empty checkpoint. The
    /// checkpoint note itself is checked later, against the log's key.
    pub fn parse(body: &str) -> Result<AddCheckpoint, Error> {
        let bad = |why: String| {
            Error::Malformed(format!(
                "not an add-checkpoint request ({why}): the body must be 'old <size>\\n', at most {MAX_PROOF_LINES} base64 proof hashes one per line, an empty line, then the signed checkpoint"
            ))
        };
        let (first, mut rest) = body
            .split_once('\n')
            .ok_or_else(|| bad("there is no old size line ending in a newline".into()))?;
        let size_text = first
            .strip_prefix("old ")
            .ok_or_else(|| bad(format!("the first line '{first}' is not 'old <size>'")))?;
        let old_size = size_text
            .parse::<u64>()
            .ok()
            .filter(|n| n.to_string() == size_text)
            .ok_or_else(|| {
                bad(format!(
                    "the old size '{size_text}' is not a decimal number without leading zeros"
                ))
            })?;
        let mut proof = Vec::new();
        loop {
            let (line, after) = rest.split_once('\n').ok_or_else(|| {
                bad("there is no empty line between the proof and the checkpoint".into())
            })?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad(format!(
                    "it has more than {MAX_PROOF_LINES} proof lines"
                )));
            }
            let hash = B64
                .decode(line)
                .ok()
                .and_then(|h| <[u8; 32]>::try_from(h).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "proof line {} '{line}' is not base64 of a 32-byte hash",
                        proof.len() + 1
                    ))
                })?;
            proof.push(hash);
        }
        if old_size == 0 && !proof.is_empty() {
            return Err(bad(
                "the old size is 0 but it carries a proof: a proof from the empty tree must be empty"
                    .into(),
            ));
        }
        if rest.is_empty() {
            return Err(bad("the checkpoint after the empty line is missing".into()));
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            checkpoint: rest.to_string(),
        })
    }
}

/// The witness's answer to a request: how a client reads it from (HTTP status, body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessAnswer {
    /// 200: the cosignature note-signature lines ("— <name> <base64>\n"), to append to the note.
    Cosigned(String),
    /// 409 Conflict: the witness's latest size of this log (body: decimal size + "\n", content
    /// type text/x.tlog.size).
    Conflict(u64),
    /// Any other status, with the body text (403 unknown key / bad signature, 404 unknown
    /// origin, 422 bad proof, 400 malformed, ...).
    Refused { status: u16, message: String },
}

impl WitnessAnswer {
    /// Read a witness's HTTP answer. A 200 whose body is not one or more signature lines, and
    /// a 409 whose body is not a size, are [`WitnessAnswer::Refused`] with that status and a
    /// message saying what was wrong: the client cannot use them.
    pub fn from_response(status: u16, body: &str) -> WitnessAnswer {
        match status {
            200 => {
                let lines_ok = !body.is_empty()
                    && body.ends_with('\n')
                    && body[..body.len() - 1]
                        .split('\n')
                        .all(|l| l.starts_with("\u{2014} ") && l.len() > "\u{2014} ".len());
                if lines_ok {
                    WitnessAnswer::Cosigned(body.to_string())
                } else {
                    WitnessAnswer::Refused {
                        status,
                        message: format!(
                            "the witness answered 200 but its body is not cosignature lines ('\u{2014} <name> <base64>' each ending in a newline): {:?}",
                            truncate(body)
                        ),
                    }
                }
            }
            409 => match body
                .strip_suffix('\n')
                .and_then(|s| s.parse::<u64>().ok().filter(|n| n.to_string() == s))
            {
                Some(size) => WitnessAnswer::Conflict(size),
                None => WitnessAnswer::Refused {
                    status,
                    message: format!(
                        "the witness answered 409 but its body is not its latest size as a decimal line: {:?}",
                        truncate(body)
                    ),
                },
            },
            _ => WitnessAnswer::Refused {
                status,
                message: truncate(body).to_string(),
            },
        }
    }

    /// The HTTP status a witness sends for this answer.
    pub fn status(&self) -> u16 {
        match self {
            WitnessAnswer::Cosigned(_) => 200,
            WitnessAnswer::Conflict(_) => 409,
            WitnessAnswer::Refused { status, .. } => *status,
        }
    }

    /// The body a witness sends for this answer.
    pub fn body(&self) -> String {
        match self {
            WitnessAnswer::Cosigned(lines) => lines.clone(),
            WitnessAnswer::Conflict(size) => format!("{size}\n"),
            WitnessAnswer::Refused { message, .. } => {
                if message.ends_with('\n') {
                    message.clone()
                } else {
                    format!("{message}\n")
                }
            }
        }
    }

    /// The `Content-Type` a witness sends for this answer.
    pub fn content_type(&self) -> &'static str {
        match self {
            WitnessAnswer::Conflict(_) => CONFLICT_CONTENT_TYPE,
            _ => "text/plain; charset=utf-8",
        }
    }

    /// A refusal with this status and the message that says why.
    pub fn refused(status: u16, message: impl Into<String>) -> WitnessAnswer {
        WitnessAnswer::Refused {
            status,
            message: message.into(),
        }
    }
}

/// At most 1,000 bytes of a peer's body in a message (cut on a character boundary).
fn truncate(body: &str) -> &str {
    let mut end = body.len().min(1000);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    &body[..end]
}

/// The origin line of a checkpoint note, read without checking any signature: what a witness
/// looks the log's key up by (an unknown origin is answered 404 before any other check).
pub fn checkpoint_origin(checkpoint: &str) -> Result<String, Error> {
    let text = unverified_text(checkpoint)?;
    let origin = text.split('\n').next().unwrap_or("");
    if origin.is_empty() {
        return Err(Error::Malformed(
            "the checkpoint's first line (its origin) is empty".into(),
        ));
    }
    Ok(origin.to_string())
}

/// A checkpoint the witness may cosign: save it as the origin's latest, then cosign `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The checkpoint's text (the note without its signatures): what the cosignature covers.
    pub text: String,
}

/// The witness's check of one request against its latest checkpoint of the log (`latest`:
/// size and root, `None` if it never cosigned one), with the log's key (`key_name`,
/// `public_key`) already looked up by the checkpoint's origin. The checks run in the spec's
/// order: a signature by the log's key (403), a well-formed checkpoint (400), old size not
/// above the checkpoint's size (400), old size equal to the witness's size (409 with its size),
/// same size only with the same root (409), and the consistency proof (422).
///
/// The caller must run this and save the [`Accepted`] checkpoint in one atomic step. A server
/// can run the first three checks, [`open_add_checkpoint`], before it takes its lock, and
/// [`check_opened`] under it.
pub fn check_add_checkpoint(
    req: &AddCheckpoint,
    key_name: &str,
    public_key: &[u8; 32],
    latest: Option<(u64, Hash)>,
) -> Result<Accepted, WitnessAnswer> {
    check_opened(req, open_add_checkpoint(req, key_name, public_key)?, latest)
}

/// The checks of a request that need nothing the witness saved: the log's signature (403), a
/// well-formed checkpoint of that log (400, 404), and an old size not above its size (400).
/// Run before the witness's lock, they keep a caller without the log's key from ever taking
/// it. The checkpoint is returned as [`Accepted`] for [`check_opened`], not yet accepted.
pub fn open_add_checkpoint(
    req: &AddCheckpoint,
    key_name: &str,
    public_key: &[u8; 32],
) -> Result<Accepted, WitnessAnswer> {
    let text = match open_note(&req.checkpoint, key_name, public_key) {
        Ok(text) => text,
        Err(Error::BadSignature(why)) => {
            return Err(WitnessAnswer::refused(
                403,
                format!("the checkpoint is not signed by the log key this witness trusts for '{key_name}': {why}"),
            ))
        }
        Err(e) => {
            return Err(WitnessAnswer::refused(
                400,
                format!("the checkpoint is not a valid signed note: {e}"),
            ))
        }
    };
    let (origin, size, root) =
        parse_checkpoint_body(&text).map_err(|e| WitnessAnswer::refused(400, e.to_string()))?;
    if origin != key_name {
        return Err(WitnessAnswer::refused(
            404,
            format!("the checkpoint's origin '{origin}' is not the log '{key_name}' its signature is checked for"),
        ));
    }
    if req.old_size > size {
        return Err(WitnessAnswer::refused(
            400,
            format!(
                "the old size {} is above the checkpoint's size {size}: the old size is the size of an earlier checkpoint",
                req.old_size
            ),
        ));
    }
    Ok(Accepted {
        origin,
        size,
        root,
        text,
    })
}

/// The checks of an opened request ([`open_add_checkpoint`]) against the witness's latest
/// checkpoint: the old size is the witness's (409 with its size), the same size only with the
/// same root (409), and the consistency proof (422). Run under the witness's lock.
pub fn check_opened(
    req: &AddCheckpoint,
    opened: Accepted,
    latest: Option<(u64, Hash)>,
) -> Result<Accepted, WitnessAnswer> {
    let (size, root) = (opened.size, opened.root);
    let (latest_size, latest_root) = latest.unwrap_or((0, empty_root()));
    if req.old_size != latest_size {
        return Err(WitnessAnswer::Conflict(latest_size));
    }
    if size == latest_size {
        if root != latest_root {
            // A fork: the same size with another root. The body is still the witness's size,
            // so a client reads it as it reads any 409.
            return Err(WitnessAnswer::Conflict(latest_size));
        }
        if !req.proof.is_empty() {
            return Err(WitnessAnswer::refused(
                422,
                "the checkpoint has the witness's size, so the consistency proof must be empty",
            ));
        }
    } else if !verify_consistency(req.old_size, size, &req.proof, &latest_root, &root) {
        return Err(WitnessAnswer::refused(
            422,
            format!(
                "the consistency proof from size {} to {size} does not verify against the checkpoint this witness saved: the log is not append-only, or the proof is wrong",
                req.old_size
            ),
        ));
    }
    Ok(opened)
}
