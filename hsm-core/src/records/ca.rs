//! What the certificate authority keeps in the HSM's store: its CAs, every certificate it issued,
//! revocations and the newest CRL of each CA. The X.509 work itself lives in the `ca` crate;
//! hsm-core holds the keys, counts their uses and keeps these rows in the same transactions.
//!
//! This is the records area: hsm-core's core modules never import it. It uses the core's
//! generic hooks only: [`crate::StagedRow`] to commit certificate rows in the transaction that
//! counts the CA key's use, and [`SignOp`] with a CA purpose to sign.
//!
//! CA keys carry the sealed `certify` operation (a CA's service keys `service-sign`), so a
//! key user cannot have a CA key sign an arbitrary digest (a forged certificate): they sign
//! only through [`Hsm::sign_and_store_certificate`] and [`Hsm::sign_as_ca`], which the CA
//! calls with data it built itself.

use diesel::prelude::*;
use serde::Serialize;

use crate::algorithm::Algorithm;
use crate::attributes::{KeyInfo, Operation};
use crate::auth::{Role, Session};
use crate::commit::{now_ms, ApplyFn};
use crate::error::{HsmError, Result};
use crate::hsm::approvals::{record_mac, record_mac_ok, ApprovalAction, ChangeGrant};
use crate::hsm::{
    lock_err, user_event, Gated, Hsm, QuotaCharge, SignKey, SignOp, SignPurpose, SignRequest,
    Signed, StagedRows, Staging,
};
use crate::store::schema::{ca_certificate_counts, cas, certificates, crls, device_serials};
use crate::store::AnyConnection;
use crate::StagedRow;

/// Where CA keys are named: `ca.<CA>` for a CA, `ca.<CA>.<service>` for its service keys.
pub use crate::attributes::RESTRICTED_NAMESPACE as CA_KEY_NAMESPACE;

/// The changes a CA asks the quorum for ([`ApprovalAction::Authorize`]).
pub const CREATE_CA: &str = "create_ca";
pub const REVOKE_CA: &str = "revoke_ca";

/// Rows per multi-row INSERT: 12 columns each stays far below both backends' bind limits.
const INSERT_CHUNK: usize = 200;

/// A certificate authority: its key's label and its own certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CaRecord {
    pub name: String,
    pub partition: String,
    pub key_label: String,
    /// `None` for a root.
    pub parent: Option<String>,
    #[serde(skip)]
    pub cert_der: Vec<u8>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<i64>,
}

#[derive(Queryable, Insertable, Clone)]
#[diesel(table_name = cas)]
struct CaRow {
    name: String,
    partition_name: String,
    key_label: String,
    parent: Option<String>,
    cert_der: Vec<u8>,
    created_at: i64,
    revoked_at: Option<i64>,
    revocation_reason: Option<i64>,
    mac: Vec<u8>,
}

impl CaRow {
    fn mac_input(&self) -> Vec<u8> {
        let mut out = b"kagi-ca-v1".to_vec();
        let parent = self.parent.as_deref().unwrap_or("");
        for part in [
            self.name.as_bytes(),
            self.partition_name.as_bytes(),
            self.key_label.as_bytes(),
            parent.as_bytes(),
            &self.cert_der,
        ] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part);
        }
        out.push(self.parent.is_some() as u8);
        out.extend_from_slice(&self.created_at.to_be_bytes());
        out
    }

    fn record(self) -> CaRecord {
        CaRecord {
            name: self.name,
            partition: self.partition_name,
            key_label: self.key_label,
            parent: self.parent,
            cert_der: self.cert_der,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
            revocation_reason: self.revocation_reason,
        }
    }
}

/// A certificate about to be stored: built by the CA around the signature hsm-core just made.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    /// Lowercase hex of the serial's INTEGER content octets.
    pub serial: String,
    pub ca_name: String,
    pub profile: String,
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    pub der: Vec<u8>,
    /// SHA-256 of the certified SubjectPublicKeyInfo (DER).
    pub spki_sha256: [u8; 32],
}

/// A device serial number a certificate claims: under its CA, one live (unrevoked, unexpired)
/// certificate holds each serial number, and only the same key may renew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialClaim {
    /// The subject's serialNumber attribute, as the CSR wrote it.
    pub serial_number: String,
    /// Take the serial number over from a live certificate of another key. Officers only; the
    /// issuance's audit record says so.
    pub override_in_use: bool,
}

/// The live certificate that holds a device serial number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialHolder {
    /// Its serial (lowercase hex).
    pub cert_serial: String,
    /// Hex SHA-256 of its SubjectPublicKeyInfo.
    pub spki_sha256: String,
}

#[derive(Queryable, Insertable)]
#[diesel(table_name = device_serials)]
struct DeviceSerialRow {
    ca_name: String,
    serial_number: String,
    cert_serial: String,
    spki_sha256: String,
    not_after: i64,
}

/// What one issuance stages: its certificate row and, for a profile with one live certificate
/// per device serial, the serial number it claims.
pub struct StagedCertificate {
    cert: CertificateRecord,
    claim: Option<SerialClaim>,
}

fn serial_in_use(ca: &str, serial_number: &str, holder: &str) -> HsmError {
    HsmError::SerialInUse(format!(
        "device serial number '{}' already has a live certificate from CA '{ca}' (serial {holder}) for another key: \
         a second certificate for a serial is how a cloned device gets an identity. Renew with the same key, \
         have an officer revoke the old certificate first ('kagi ca revoke {holder}'), or have an officer issue \
         with the audited override (--override-serial-in-use)",
        serial_number.chars().take(64).collect::<String>()
    ))
}

/// Add `n` to CA `ca`'s issued count, in the transaction that stores the certificates.
fn count_issued(c: &mut AnyConnection, ca: &str, n: i64) -> Result<()> {
    use diesel::sql_types::{BigInt, Text};
    // `$1` numbers the parameter on both backends (SQLite takes it as a parameter name).
    let q = diesel::sql_query(
        "INSERT INTO ca_certificate_counts (ca_name, issued) VALUES ($1, $2) \
         ON CONFLICT (ca_name) DO UPDATE SET issued = ca_certificate_counts.issued + excluded.issued",
    )
    .bind::<Text, _>(ca)
    .bind::<BigInt, _>(n);
    match c {
        AnyConnection::Postgresql(pg) => q.execute(pg)?,
        AnyConnection::Sqlite(sq) => q.execute(sq)?,
    };
    Ok(())
}

/// The live holder of `serial_number` under `ca_name`, if any, read on `c`.
fn live_holder(
    c: &mut AnyConnection,
    ca_name: &str,
    serial_number: &str,
    now: i64,
) -> Result<Option<SerialHolder>> {
    let row: Option<DeviceSerialRow> = device_serials::table
        .filter(device_serials::ca_name.eq(ca_name))
        .filter(device_serials::serial_number.eq(serial_number))
        .first(c)
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    if row.not_after <= now {
        return Ok(None);
    }
    // The claim holds while any certificate of its key from this CA is live: renewals leave
    // the older certificates live too, so revoking the newest alone does not free the serial.
    // Reading the rows also covers a revocation made by another process.
    // The first live one settles it: a key renewed a hundred times is not counted each time.
    let live = certificates::table
        .filter(certificates::ca_name.eq(ca_name))
        .filter(certificates::spki_sha256.eq(&row.spki_sha256))
        .filter(certificates::revoked_at.is_null())
        .filter(certificates::not_after.gt(now))
        .select(certificates::serial)
        .first::<String>(c)
        .optional()?
        .is_some();
    // No row for the claiming certificate means it was claimed earlier in this same batch (its
    // row is inserted with the batch's rows): it holds.
    let pending = !live
        && certificates::table
            .filter(certificates::serial.eq(&row.cert_serial))
            .count()
            .get_result::<i64>(c)?
            == 0;
    Ok((live || pending).then_some(SerialHolder {
        cert_serial: row.cert_serial,
        spki_sha256: row.spki_sha256,
    }))
}

/// A stored certificate.
#[derive(Debug, Clone, Serialize, Queryable, Insertable)]
#[diesel(table_name = certificates)]
pub struct CertificateRecord {
    pub serial: String,
    pub ca_name: String,
    pub profile: String,
    pub subject: String,
    pub issued_to: String,
    pub not_before: i64,
    pub not_after: i64,
    #[serde(skip)]
    pub der: Vec<u8>,
    pub issued_at: i64,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<i64>,
    /// Hex SHA-256 of the certified SubjectPublicKeyInfo (DER).
    pub spki_sha256: Option<String>,
}

/// One entry of a CRL.
#[derive(Debug, Clone)]
pub struct RevokedEntry {
    pub serial: String,
    pub revoked_at: i64,
    pub reason: Option<i64>,
}

/// The newest CRL of a CA.
#[derive(Debug, Clone, Queryable, Insertable)]
#[diesel(table_name = crls)]
pub struct CrlRecord {
    pub ca_name: String,
    pub number: i64,
    pub this_update: i64,
    pub next_update: i64,
    pub der: Vec<u8>,
}

fn ca_not_found(name: &str) -> HsmError {
    HsmError::NotFound(format!(
        "CA '{}' ('kagi ca list' shows the CAs)",
        name.chars().take(64).collect::<String>()
    ))
}

fn ca_tampered(name: &str) -> HsmError {
    HsmError::Integrity(format!(
        "CA '{name}' does not match its MAC: its row was changed outside kagi. Restore it from a backup"
    ))
}

/// Serials as kagi stores them: lowercase hex without separators, so "7B:1F:65" (as openssl
/// prints it) and "7b1f65" name the same certificate.
/// One identity (`partition:name`) and its certificates per day: (days since 1970-01-01, count).
pub type IssuedPerDay = (String, Vec<(i64, i64)>);

pub fn normalize_serial(serial: &str) -> String {
    serial
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .flat_map(|c| c.to_lowercase())
        .collect()
}

/// The audit subject of an issued certificate; its revocation record carries it.
fn cert_subject(serial: &str) -> String {
    format!("cert:{serial}")
}

/// The audit subject of a CA; its records carry the CA's creation and revocation.
fn ca_subject(name: &str) -> String {
    format!("ca:{name}")
}

impl Hsm {
    /// Generate the key of a new CA, named `ca.<name>`. It has no usage limit (a CA signs for
    /// years), can never be exported, and signs only what the CA builds (`certify`).
    pub fn create_ca_key(&self, s: &Session, name: &str, alg: Algorithm) -> Result<KeyInfo> {
        crate::hsm::validate_label(name)?;
        self.create_restricted_key(
            s,
            &format!("{CA_KEY_NAMESPACE}{name}"),
            alg,
            Operation::Certify,
            "ca.key_generate",
        )
    }

    /// Generate a CA's service key (OCSP responder, TSA, CT signer), named
    /// `ca.<CA>.<service>`: it signs only the responses the service builds (`service-sign`).
    /// The service's own session may create it, so OCSP and the TSA need no officer online.
    pub fn create_ca_service_key(
        &self,
        s: &Session,
        ca_name: &str,
        service: &str,
        alg: Algorithm,
    ) -> Result<KeyInfo> {
        let name = format!("{ca_name}.{service}");
        crate::hsm::validate_label(&name)?;
        self.create_restricted_key(
            s,
            &format!("{CA_KEY_NAMESPACE}{name}"),
            alg,
            Operation::ServiceSign,
            "ca.key_generate",
        )
    }

    /// Ask for permission to create or revoke a CA: [`Hsm::authorize_change`] for a
    /// `create_ca` or `revoke_ca` change, which only officers may ask for.
    pub fn authorize_ca_change(
        &self,
        s: &Session,
        action: ApprovalAction,
        summary: &str,
        approval: Option<&str>,
    ) -> Result<Gated<ChangeGrant>> {
        s.require(Role::Officer, "create or revoke CAs")?;
        if !matches!(action.name(), CREATE_CA | REVOKE_CA) {
            return Err(HsmError::BadInput("not a CA change".into()));
        }
        self.authorize_change(s, action, summary, approval)
    }

    /// Store a new CA whose certificate the `ca` crate built and signed.
    pub fn register_ca(&self, s: &Session, rec: &CaRecord, grant: &ChangeGrant) -> Result<()> {
        s.require(Role::Officer, "create CAs")?;
        match grant.action() {
            ApprovalAction::Authorize { change, params, .. }
                if change == CREATE_CA && params["name"] == rec.name.as_str() => {}
            _ => {
                return Err(HsmError::Conflict(
                    "the approval does not cover this CA: file a request for it".into(),
                ))
            }
        }
        crate::hsm::validate_label(&rec.name)?;
        let u = self.unsealed()?;
        let mut row = CaRow {
            name: rec.name.clone(),
            partition_name: rec.partition.clone(),
            key_label: rec.key_label.clone(),
            parent: rec.parent.clone(),
            cert_der: rec.cert_der.clone(),
            created_at: rec.created_at,
            revoked_at: None,
            revocation_reason: None,
            mac: Vec::new(),
        };
        row.mac = record_mac(&u, &row.mac_input())?;
        let consume = grant.consume();
        let apply: ApplyFn = Box::new(move |c| {
            let exists: i64 = cas::table
                .filter(cas::name.eq(&row.name))
                .count()
                .get_result(c)?;
            if exists > 0 {
                return Err(HsmError::Conflict(format!(
                    "a CA named '{}' already exists: pick another name",
                    row.name
                )));
            }
            if let Some(consume) = consume {
                consume(c)?;
            }
            diesel::insert_into(cas::table).values(&row).execute(c)?;
            Ok(())
        });
        let detail = serde_json::json!({
            "name": rec.name, "parent": rec.parent, "key": rec.key_label,
            "cert_sha256": hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &rec.cert_der)),
            "approval": grant.approval(),
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(s, "ca.create", Some(ca_subject(&rec.name)), detail),
        )?;
        Ok(())
    }

    /// Mark a CA revoked: it issues nothing more, and its parent's CRL lists it.
    pub fn revoke_ca(
        &self,
        s: &Session,
        name: &str,
        reason: i64,
        grant: &ChangeGrant,
    ) -> Result<()> {
        s.require(Role::Officer, "revoke CAs")?;
        match grant.action() {
            ApprovalAction::Authorize { change, params, .. }
                if change == REVOKE_CA && params["name"] == name && params["reason"] == reason => {}
            _ => {
                return Err(HsmError::Conflict(
                    "the approval does not cover this revocation: file a request for it".into(),
                ))
            }
        }
        let u = self.unsealed()?;
        let ca = self.ca(name)?;
        if ca.revoked_at.is_some() {
            return Err(HsmError::Conflict(format!(
                "CA '{name}' is already revoked"
            )));
        }
        let consume = grant.consume();
        let n = name.to_string();
        let now = now_ms() / 1000;
        let apply: ApplyFn = Box::new(move |c| {
            if let Some(consume) = consume {
                consume(c)?;
            }
            diesel::update(cas::table.filter(cas::name.eq(&n)))
                .set((
                    cas::revoked_at.eq(Some(now)),
                    cas::revocation_reason.eq(Some(reason)),
                ))
                .execute(c)?;
            Ok(())
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "ca.revoke",
                Some(ca_subject(name)),
                serde_json::json!({"name": name, "reason": reason, "approval": grant.approval()}),
            ),
        )?;
        Ok(())
    }

    /// All CAs, each checked against its MAC.
    pub fn list_cas(&self) -> Result<Vec<CaRecord>> {
        let u = self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        let rows: Vec<CaRow> = cas::table.order(cas::created_at.asc()).load(&mut c)?;
        rows.into_iter()
            .map(|r| {
                if record_mac_ok(&u, &r.mac_input(), &r.mac)? {
                    Ok(r.record())
                } else {
                    Err(ca_tampered(&r.name))
                }
            })
            .collect()
    }

    /// One CA, checked against its MAC.
    pub fn ca(&self, name: &str) -> Result<CaRecord> {
        let u = self.unsealed()?;
        // Read before the row: a change recorded after this still invalidates what is read.
        let generation = u.integrity.ca_generation()?;
        if let Some((g, rec)) = self
            .inner
            .ca_records
            .lock()
            .map_err(|_| lock_err())?
            .get(name)
        {
            if *g == generation {
                return Ok(rec.clone());
            }
        }
        let mut c = self.inner.store.conn()?;
        let row: CaRow = cas::table
            .filter(cas::name.eq(name))
            .first(&mut c)
            .optional()?
            .ok_or_else(|| ca_not_found(name))?;
        if !record_mac_ok(&u, &row.mac_input(), &row.mac)? {
            return Err(ca_tampered(name));
        }
        let rec = row.record();
        self.inner
            .ca_records
            .lock()
            .map_err(|_| lock_err())?
            .insert(name.to_string(), (generation, rec.clone()));
        Ok(rec)
    }

    /// Sign a digest the CA built itself (a CA certificate, a CRL, an OCSP response) with a CA
    /// key or a CA's service key. Counted and audited like every use.
    pub fn sign_as_ca(
        &self,
        s: &Session,
        label: &str,
        req: &SignRequest,
        audit_detail: serde_json::Value,
    ) -> Result<Signed> {
        self.sign_op(
            s,
            SignOp {
                key: SignKey::Stored(label),
                request: req,
                purpose: SignPurpose::Service,
                quotas: &[],
                audit: audit_detail,
                staging: Staging::KagiEntry,
            },
        )
    }

    /// Sign a certificate's TBS digest with a CA key and store the certificate `build` makes from
    /// the signature, in the transaction that counts the use and charges `quotas`. The
    /// certificate is returned only once all of that is durable; if any quota or limit is
    /// exhausted, nothing is signed, counted or stored.
    ///
    /// With a `claim`, the certificate also claims its device serial number in that transaction:
    /// if another key's certificate still holds it, nothing is stored and the error is
    /// [`HsmError::SerialInUse`], unless an officer asked for the override.
    #[allow(clippy::too_many_arguments)]
    pub fn sign_and_store_certificate(
        &self,
        s: &Session,
        label: &str,
        req: &SignRequest,
        quotas: &[QuotaCharge],
        audit_detail: serde_json::Value,
        claim: Option<&SerialClaim>,
        build: &mut dyn FnMut(&[u8]) -> Result<NewCertificate>,
    ) -> Result<(CertificateRecord, Signed)> {
        if claim.is_some_and(|c| c.override_in_use) {
            s.require(
                Role::Officer,
                "issue a certificate for a device serial number in use",
            )?;
        }
        let issued_to = s.actor();
        let mut made: Option<CertificateRecord> = None;
        let mut record = |sig: &[u8]| -> Result<StagedRows> {
            let cert = build(sig)?;
            // Whoever holds a compromised key can prove possession in a CSR: it gets no
            // certificate, whichever CA or profile it asks.
            let u = self.unsealed()?;
            {
                let mut c = self.inner.store.conn()?;
                u.integrity.catch_up(&mut c, &u.audit)?;
            }
            let spki = hex::encode(cert.spki_sha256);
            if let Some(label) = u.integrity.compromised_key_with_spki(&spki)? {
                return Err(HsmError::KeyCompromised(label));
            }
            let row = CertificateRecord {
                serial: cert.serial,
                ca_name: cert.ca_name,
                profile: cert.profile,
                subject: cert.subject,
                issued_to: issued_to.clone(),
                not_before: cert.not_before,
                not_after: cert.not_after,
                der: cert.der,
                issued_at: now_ms() / 1000,
                revoked_at: None,
                revocation_reason: None,
                spki_sha256: Some(hex::encode(cert.spki_sha256)),
            };
            made = Some(row.clone());
            Ok(StagedRows::new(StagedCertificate {
                cert: row,
                claim: claim.cloned(),
            }))
        };
        let signed = self.sign_op(
            s,
            SignOp {
                key: SignKey::Stored(label),
                request: req,
                purpose: SignPurpose::Certify,
                quotas,
                audit: audit_detail,
                staging: Staging::Rows(&mut record),
            },
        )?;
        let cert = made.ok_or(HsmError::Crypto("the certificate was not built"))?;
        Ok((cert, signed))
    }

    /// The live (unrevoked, unexpired) certificate that holds device serial number
    /// `serial_number` under CA `ca_name`, if any: what issuance checks before it signs.
    pub fn device_serial_holder(
        &self,
        ca_name: &str,
        serial_number: &str,
    ) -> Result<Option<SerialHolder>> {
        let mut c = self.inner.store.conn()?;
        live_holder(&mut c, ca_name, serial_number, now_ms() / 1000)
    }

    /// The error a certificate for `serial_number` meets while `holder` holds it.
    pub fn serial_in_use(ca_name: &str, serial_number: &str, holder: &SerialHolder) -> HsmError {
        serial_in_use(ca_name, serial_number, &holder.cert_serial)
    }

    /// A stored certificate by serial (lowercase hex). Its revocation is also read from the
    /// audit log, so a row edited back to "not revoked" still reads as revoked.
    pub fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>> {
        let serial = normalize_serial(serial);
        let mut c = self.inner.store.conn()?;
        let row: Option<CertificateRecord> = certificates::table
            .filter(certificates::serial.eq(&serial))
            .first(&mut c)
            .optional()?;
        // Reading the verified log takes a connection of its own.
        drop(c);
        let Some(mut row) = row else {
            return Ok(None);
        };
        if row.revoked_at.is_none() {
            if let Some(r) = self.audited_revocations(Some(&serial))?.into_iter().next() {
                row.revoked_at = Some(r.1.revoked_at);
                row.revocation_reason = r.1.reason;
            }
        }
        Ok(Some(row))
    }

    /// Revocations as the verified audit log records them: (CA, entry). `serial` narrows to
    /// one.
    fn audited_revocations(&self, serial: Option<&str>) -> Result<Vec<(String, RevokedEntry)>> {
        const ACTION: &str = "ca.revoke_certificate";
        let u = self.unsealed()?;
        let events = match serial {
            Some(s) => u.audited(&self.inner.store, ACTION, &cert_subject(s))?,
            // Every revocation's subject is "cert:<serial>".
            None => u.audited_prefix(&self.inner.store, ACTION, "cert:")?,
        };
        let rows: Vec<(String, i64)> = events.into_iter().map(|e| (e.detail, e.ts)).collect();
        let mut out = Vec::with_capacity(rows.len());
        // A key's compromise revoked every certificate of the key in its own record.
        let compromised = {
            let mut c = self.inner.store.conn()?;
            u.integrity
                .compromise_revocations(&mut c, &u.audit, serial)?
        };
        for (ca, serial, ts) in compromised {
            out.push((
                ca,
                RevokedEntry {
                    serial,
                    revoked_at: ts / 1000,
                    reason: Some(crate::hsm::keyring::KEY_COMPROMISE),
                },
            ));
        }
        for (detail, ts) in rows {
            let d: serde_json::Value = serde_json::from_str(&detail).unwrap_or_default();
            let (Some(serial), Some(ca)) = (d["serial"].as_str(), d["ca"].as_str()) else {
                continue;
            };
            out.push((
                ca.to_string(),
                RevokedEntry {
                    serial: serial.to_string(),
                    revoked_at: ts / 1000,
                    reason: d["reason"].as_i64(),
                },
            ));
        }
        Ok(out)
    }

    /// The newest certificates of a CA, newest first.
    /// Revocation comes from the same source as OCSP and the CRL: the audit log's
    /// revocation records as well as the rows, so a row edited back to "not revoked" still
    /// lists as revoked.
    pub fn list_certificates(&self, ca_name: &str, limit: i64) -> Result<Vec<CertificateRecord>> {
        self.list_certificates_before(ca_name, limit, None)
    }

    /// [`Hsm::list_certificates`] from a cursor: the page after the certificate with serial
    /// `before` (the last one of the previous page), newest first. An index walk from the
    /// cursor, so page 1,000 costs what page 1 does.
    pub fn list_certificates_before(
        &self,
        ca_name: &str,
        limit: i64,
        before: Option<&str>,
    ) -> Result<Vec<CertificateRecord>> {
        let mut c = self.inner.store.conn()?;
        let mut q = certificates::table
            .filter(certificates::ca_name.eq(ca_name))
            .into_boxed();
        if let Some(before) = before {
            let before = normalize_serial(before);
            let at: i64 = certificates::table
                .filter(certificates::serial.eq(&before))
                .filter(certificates::ca_name.eq(ca_name))
                .select(certificates::issued_at)
                .first(&mut c)
                .optional()?
                .ok_or_else(|| {
                    HsmError::BadInput(format!(
                        "the cursor names no certificate of CA '{ca_name}' ({}): pass the 'next' value of the previous page",
                        before.chars().take(64).collect::<String>()
                    ))
                })?;
            // The range bound lets the index start at the cursor; the rest orders ties.
            q = q.filter(certificates::issued_at.le(at)).filter(
                certificates::issued_at
                    .lt(at)
                    .or(certificates::serial.lt(before)),
            );
        }
        let mut rows: Vec<CertificateRecord> = q
            .order((certificates::issued_at.desc(), certificates::serial.desc()))
            .limit(limit.clamp(1, 10_000))
            .load(&mut c)?;
        drop(c);
        if rows.iter().any(|r| r.revoked_at.is_none()) {
            let audited: std::collections::HashMap<String, RevokedEntry> = self
                .audited_revocations(None)?
                .into_iter()
                .filter(|(ca, _)| ca == ca_name)
                .map(|(_, e)| (e.serial.clone(), e))
                .collect();
            for row in rows.iter_mut().filter(|r| r.revoked_at.is_none()) {
                if let Some(e) = audited.get(&row.serial) {
                    row.revoked_at = Some(e.revoked_at);
                    row.revocation_reason = e.reason;
                }
            }
        }
        Ok(rows)
    }

    /// The newest unrevoked certificate of `profile` issued by `ca_name` to `issued_to`
    /// (partition:name), if any: what EST re-enrollment and kagi's own responder look up.
    pub fn latest_certificate(
        &self,
        ca_name: &str,
        profile: &str,
        issued_to: &str,
        subject: Option<&str>,
    ) -> Result<Option<CertificateRecord>> {
        let mut c = self.inner.store.conn()?;
        let mut q = certificates::table
            .filter(certificates::ca_name.eq(ca_name))
            .filter(certificates::profile.eq(profile))
            .filter(certificates::issued_to.eq(issued_to))
            .filter(certificates::revoked_at.is_null())
            .into_boxed();
        if let Some(subject) = subject {
            q = q.filter(certificates::subject.eq(subject));
        }
        Ok(q.order(certificates::issued_at.desc())
            .first(&mut c)
            .optional()?)
    }

    /// The newest unrevoked, unexpired certificate of `profile` for the key whose
    /// SubjectPublicKeyInfo hashes to `spki_sha256`, from any CA.
    pub fn certificate_for_key(
        &self,
        spki_sha256: &[u8; 32],
        profile: &str,
    ) -> Result<Option<CertificateRecord>> {
        let now = now_ms() / 1000;
        // The connection goes back to the pool before `certificate` takes one: holding two per
        // request deadlocks a busy pool.
        let rows: Vec<CertificateRecord> = {
            let mut c = self.inner.store.conn()?;
            certificates::table
                .filter(certificates::spki_sha256.eq(hex::encode(spki_sha256)))
                .filter(certificates::profile.eq(profile))
                .filter(certificates::revoked_at.is_null())
                .filter(certificates::not_after.gt(now))
                .order(certificates::issued_at.desc())
                .limit(8)
                .load(&mut c)?
        };
        for row in rows {
            // A revocation the row no longer shows still counts (see `certificate`).
            if let Some(r) = self.certificate(&row.serial)? {
                if r.revoked_at.is_none() {
                    return Ok(Some(r));
                }
            }
        }
        Ok(None)
    }

    /// The newest certificate of `profile` for a key, whether revoked, expired or current (its
    /// revocation as the verified audit log has it): why a key has no current one.
    pub fn newest_certificate_for_key(
        &self,
        spki_sha256: &[u8; 32],
        profile: &str,
    ) -> Result<Option<CertificateRecord>> {
        let serial: Option<String> = {
            let mut c = self.inner.store.conn()?;
            certificates::table
                .filter(certificates::spki_sha256.eq(hex::encode(spki_sha256)))
                .filter(certificates::profile.eq(profile))
                .order(certificates::issued_at.desc())
                .select(certificates::serial)
                .first(&mut c)
                .optional()?
        };
        match serial {
            Some(s) => self.certificate(&s),
            None => Ok(None),
        }
    }

    /// Certificates issued per identity (`partition:name`, as `issued_to` holds it) per UTC
    /// day over the last `days` days, for the console's per-line chart: identities in name
    /// order, each with (days since 1970-01-01, count) oldest first. Read from the
    /// certificate rows (each committed in the transaction of its signature's audit record),
    /// one scan of the window's `issued_at`.
    pub fn issuances_per_day(&self, days: i64) -> Result<Vec<IssuedPerDay>> {
        const DAY: i64 = 86_400;
        let days = days.clamp(1, 366);
        let first = now_ms() / 1000 / DAY - days + 1;
        let mut c = self.inner.store.conn()?;
        let rows: Vec<(String, i64)> = certificates::table
            .filter(certificates::issued_at.ge(first * DAY))
            .select((certificates::issued_to, certificates::issued_at))
            .load(&mut c)?;
        drop(c);
        let mut by: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
        for (who, at) in rows {
            let counts = by.entry(who).or_insert_with(|| vec![0; days as usize]);
            if let Some(n) = usize::try_from(at / DAY - first)
                .ok()
                .and_then(|d| counts.get_mut(d))
            {
                *n += 1;
            }
        }
        Ok(by
            .into_iter()
            .map(|(who, counts)| (who, (first..).zip(counts).collect()))
            .collect())
    }

    /// How many certificates a CA has issued.
    pub fn count_certificates(&self, ca_name: &str) -> Result<i64> {
        let mut c = self.inner.store.conn()?;
        Ok(ca_certificate_counts::table
            .filter(ca_certificate_counts::ca_name.eq(ca_name))
            .select(ca_certificate_counts::issued)
            .first(&mut c)
            .optional()?
            .unwrap_or(0))
    }

    /// Revoke an issued certificate with an RFC 5280 reason code. Officers only; audited.
    pub fn revoke_certificate(
        &self,
        s: &Session,
        serial: &str,
        reason: i64,
    ) -> Result<CertificateRecord> {
        s.require(Role::Officer, "revoke certificates")?;
        if reason == 6 || reason == 8 {
            return Err(HsmError::BadInput(
                "kagi revocations are permanent, so certificateHold (6) and removeFromCRL (8) do not apply: pick another reason".into(),
            ));
        }
        if !(0..=10).contains(&reason) || reason == 7 {
            return Err(HsmError::BadInput(format!(
                "revocation reason {reason} is not an RFC 5280 CRLReason (0-5, 9, 10)"
            )));
        }
        let u = self.unsealed()?;
        let serial = normalize_serial(serial);
        let cert = self.certificate(&serial)?.ok_or_else(|| {
            HsmError::NotFound(format!(
                "certificate with serial {} ('kagi ca certs' lists them)",
                serial.chars().take(64).collect::<String>()
            ))
        })?;
        if cert.revoked_at.is_some() {
            return Err(HsmError::Conflict(format!(
                "certificate {serial} is already revoked"
            )));
        }
        let now = now_ms() / 1000;
        let s2 = serial.clone();
        let apply: ApplyFn = Box::new(move |c| {
            let n = diesel::update(
                certificates::table
                    .filter(certificates::serial.eq(&s2))
                    .filter(certificates::revoked_at.is_null()),
            )
            .set((
                certificates::revoked_at.eq(Some(now)),
                certificates::revocation_reason.eq(Some(reason)),
            ))
            .execute(c)?;
            if n == 1 {
                Ok(())
            } else {
                Err(HsmError::Conflict(format!(
                    "certificate {s2} is already revoked"
                )))
            }
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "ca.revoke_certificate",
                Some(cert_subject(&serial)),
                serde_json::json!({"serial": serial, "ca": cert.ca_name, "reason": reason, "subject": cert.subject}),
            ),
        )?;
        Ok(CertificateRecord {
            revoked_at: Some(now),
            revocation_reason: Some(reason),
            ..cert
        })
    }

    /// Every revoked certificate of a CA, oldest revocation first; a revoked sub-CA of `ca_name`
    /// is listed too. Revocations come from the rows and from the audit log, so a row edited
    /// back to "not revoked" stays on the CRL.
    pub fn revoked_certificates(&self, ca_name: &str) -> Result<Vec<RevokedEntry>> {
        let audited: Vec<RevokedEntry> = self
            .audited_revocations(None)?
            .into_iter()
            .filter(|(ca, _)| ca == ca_name)
            .map(|(_, e)| e)
            .collect();
        let mut c = self.inner.store.conn()?;
        let rows: Vec<(String, Option<i64>, Option<i64>)> = certificates::table
            .filter(certificates::ca_name.eq(ca_name))
            .filter(certificates::revoked_at.is_not_null())
            .order(certificates::revoked_at.asc())
            .select((
                certificates::serial,
                certificates::revoked_at,
                certificates::revocation_reason,
            ))
            .load(&mut c)?;
        let mut out: Vec<RevokedEntry> = rows
            .into_iter()
            .map(|(serial, at, reason)| RevokedEntry {
                serial,
                revoked_at: at.unwrap_or(0),
                reason,
            })
            .collect();
        for e in audited {
            if !out.iter().any(|r| r.serial == e.serial) {
                out.push(e);
            }
        }
        out.sort_by_key(|e| e.revoked_at);
        Ok(out)
    }

    /// Store a newly signed CRL. Its number must exceed the stored one (CRL numbers only grow;
    /// a concurrent regeneration that lost the race gets a conflict and is discarded).
    pub fn store_crl(&self, s: &Session, crl: CrlRecord) -> Result<()> {
        let u = self.unsealed()?;
        let detail = serde_json::json!({"ca": crl.ca_name, "number": crl.number, "this_update": crl.this_update, "next_update": crl.next_update});
        let subject = format!("crl:{}", crl.ca_name);
        let number = crl.number;
        let apply: ApplyFn = Box::new(move |c| {
            let stored: Option<i64> = crls::table
                .filter(crls::ca_name.eq(&crl.ca_name))
                .select(crls::number)
                .first(c)
                .optional()?;
            match stored {
                Some(n) if n >= crl.number => Err(HsmError::Conflict(format!(
                    "CRL number {} is not above the stored {n}",
                    crl.number
                ))),
                Some(_) => {
                    diesel::update(crls::table.filter(crls::ca_name.eq(&crl.ca_name)))
                        .set((
                            crls::number.eq(crl.number),
                            crls::this_update.eq(crl.this_update),
                            crls::next_update.eq(crl.next_update),
                            crls::der.eq(&crl.der),
                        ))
                        .execute(c)?;
                    Ok(())
                }
                None => {
                    diesel::insert_into(crls::table).values(&crl).execute(c)?;
                    Ok(())
                }
            }
        });
        let mut event = user_event(s, "ca.crl", Some(subject), detail);
        event.use_hi = Some(number);
        u.committer.submit(None, Some(apply), event)?;
        Ok(())
    }

    /// The next CRL number for a CA: above both the stored CRL and the highest number the audit
    /// log records, so a restored old row cannot make numbers repeat.
    pub fn next_crl_number(&self, ca_name: &str) -> Result<i64> {
        let stored = self.crl(ca_name)?.map(|c| c.number).unwrap_or(0);
        let audited = self.audited_uses(&format!("crl:{ca_name}"))?;
        Ok(stored.max(audited) + 1)
    }

    /// The newest stored CRL of a CA.
    pub fn crl(&self, ca_name: &str) -> Result<Option<CrlRecord>> {
        let mut c = self.inner.store.conn()?;
        Ok(crls::table
            .filter(crls::ca_name.eq(ca_name))
            .first(&mut c)
            .optional()?)
    }
}

/// Issued certificates commit with their CA key's use. A serial collision fails the whole
/// batch, which then releases nothing; with 126 random bits per serial it does not happen.
/// A device serial number's claim is checked and written per certificate, so a refused claim
/// refuses that issuance alone.
impl StagedRow for StagedCertificate {
    fn claim(&self, c: &mut AnyConnection) -> Result<()> {
        let Some(claim) = &self.claim else {
            return Ok(());
        };
        let cert = &self.cert;
        let spki = cert.spki_sha256.clone().unwrap_or_default();
        let holder = live_holder(c, &cert.ca_name, &claim.serial_number, now_ms() / 1000)?;
        if let Some(h) = &holder {
            if h.spki_sha256 != spki && !claim.override_in_use {
                return Err(serial_in_use(
                    &cert.ca_name,
                    &claim.serial_number,
                    &h.cert_serial,
                ));
            }
        }
        let updated = diesel::update(
            device_serials::table
                .filter(device_serials::ca_name.eq(&cert.ca_name))
                .filter(device_serials::serial_number.eq(&claim.serial_number)),
        )
        .set((
            device_serials::cert_serial.eq(&cert.serial),
            device_serials::spki_sha256.eq(&spki),
            device_serials::not_after.eq(cert.not_after),
        ))
        .execute(c)?;
        if updated == 0 {
            diesel::insert_into(device_serials::table)
                .values(DeviceSerialRow {
                    ca_name: cert.ca_name.clone(),
                    serial_number: claim.serial_number.clone(),
                    cert_serial: cert.serial.clone(),
                    spki_sha256: spki,
                    not_after: cert.not_after,
                })
                .execute(c)?;
        }
        Ok(())
    }

    fn insert_all(rows: Vec<Self>, c: &mut AnyConnection) -> Result<()> {
        let rows: Vec<CertificateRecord> = rows.into_iter().map(|r| r.cert).collect();
        let mut per_ca: std::collections::BTreeMap<&str, i64> = Default::default();
        for r in &rows {
            *per_ca.entry(r.ca_name.as_str()).or_default() += 1;
        }
        for (ca, n) in per_ca {
            count_issued(c, ca, n)?;
        }
        match c {
            AnyConnection::Postgresql(pg) => {
                for chunk in rows.chunks(INSERT_CHUNK) {
                    diesel::insert_into(certificates::table)
                        .values(chunk)
                        .execute(pg)?;
                }
            }
            AnyConnection::Sqlite(_) => {
                for r in &rows {
                    diesel::insert_into(certificates::table)
                        .values(r)
                        .execute(c)?;
                }
            }
        }
        Ok(())
    }
}
