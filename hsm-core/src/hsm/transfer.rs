//! Moving keys in and out, only ever wrapped: the import key, import, export to a trusted key.

use super::*;

impl Hsm {
    /// The partition's RSA-3072 import key (created on first use), SPKI DER.
    pub fn import_public_key(&self, s: &Session) -> Result<Vec<u8>> {
        s.require(Role::Officer, "import keys")?;
        let u = self.unsealed()?;
        match self.live_row(s.partition(), IMPORT_KEY_LABEL) {
            Ok(row) => Ok(row.public_key),
            Err(HsmError::KeyNotFound(_)) => {
                let mut spec = KeySpec::new(IMPORT_KEY_LABEL, Algorithm::Rsa3072);
                spec.operations = vec![Operation::Wrap];
                let attrs = self.attrs_for(s, &spec, true)?;
                let (pkcs8, spki) = crypto::generate(Algorithm::Rsa3072)?;
                let attrs = KeyAttributes {
                    public_key: spki,
                    ..attrs
                };
                match self.store_new_key(&u, s, attrs, &pkcs8, "key.generate") {
                    Ok(info) => Ok(info.public_key_der),
                    // Another request created it first.
                    Err(HsmError::KeyExists(_)) => {
                        Ok(self.live_row(s.partition(), IMPORT_KEY_LABEL)?.public_key)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Open a key's sealed PKCS#8, for unwrap/export only. Never leaves this crate.
    pub(super) fn open_pkcs8(
        &self,
        u: &Unsealed,
        row: &KeyRow,
    ) -> Result<(KeyAttributes, Zeroizing<Vec<u8>>)> {
        let attrs = row.attrs()?;
        let integrity = || HsmError::KeyIntegrity {
            label: row.label.clone(),
        };
        let pkcs8 = self
            .sealer(u, &attrs.partition)?
            .open(
                row.sealed.as_deref().ok_or_else(integrity)?,
                &attrs.associated_data(),
            )
            .ok_or_else(integrity)?;
        Ok((attrs, pkcs8))
    }

    /// Import a key wrapped (see [`crate::wrap_for_import`]) to the partition's import key.
    pub fn import_key(&self, s: &Session, spec: &KeySpec, wrapped: &[u8]) -> Result<KeyInfo> {
        s.require(Role::Officer, "import keys")?;
        let u = self.unsealed()?;
        let attrs = self.new_attrs(s, spec, false)?;
        let import_row = self
            .live_row(s.partition(), IMPORT_KEY_LABEL)
            .map_err(|_| {
                HsmError::BadInput(
                "fetch the import key first (GET /api/v1/keys/import-key) and wrap the key to it"
                    .into(),
            )
            })?;
        let (_, import_pkcs8) = self.open_pkcs8(&u, &import_row)?;
        let pkcs8 = wrap::unwrap(&import_pkcs8, wrapped)?;
        let key = crypto::load(spec.algorithm, &pkcs8)?;
        let attrs = KeyAttributes {
            public_key: key.public_key_der()?,
            ..attrs
        };
        self.store_new_key(&u, s, attrs, &pkcs8, "key.import")
    }
}

impl Hsm {
    /// Export a key wrapped to a trusted RSA wrapping key in the same partition.
    /// Export a key wrapped to a trusted RSA wrapping key in the same partition. Under a
    /// quorum this files an approval request; once approved, the requester collects the
    /// wrapped key from the request.
    pub fn export_wrapped(
        &self,
        s: &Session,
        label: &str,
        wrapping_label: &str,
    ) -> Result<Gated<Vec<u8>>> {
        s.require(Role::Officer, "export keys")?;
        // Refuse what can never be exported before asking anyone to approve it.
        self.export_checked(s.partition(), label, wrapping_label)?;
        let action = ApprovalAction::ExportWrapped {
            label: label.to_string(),
            wrapping_key: wrapping_label.to_string(),
        };
        let text = format!("export key '{label}' wrapped to the trusted key '{wrapping_label}'");
        if let Some(pending) = self.gate(s, &action, &text)? {
            return Ok(Gated::Pending(Box::new(pending)));
        }
        let out = self.run_action(s, s.partition(), &action, serde_json::json!({}))?;
        out.map(Gated::Done)
            .ok_or_else(|| HsmError::Store("internal: the export produced nothing".into()))
    }

    /// Check an export and wrap the key (in memory only); the op records it.
    pub(crate) fn export_op(
        &self,
        partition: &str,
        label: &str,
        wrapping_label: &str,
    ) -> Result<(ApplyFn, EventParts, Vec<u8>)> {
        let (attrs, pkcs8, wattrs) = self.export_checked(partition, label, wrapping_label)?;
        let wrapped = wrap::wrap_for_import(&wattrs.public_key, &pkcs8)?;
        let apply: ApplyFn = Box::new(|_| Ok(()));
        Ok((
            apply,
            EventParts {
                action: "key.export_wrapped",
                key_id: Some(attrs.id.clone()),
                detail: serde_json::json!({"label": attrs.label, "wrapping_key": wattrs.label, "mechanism": wrap::WRAP_MECHANISM}),
                use_hi: None,
            },
            wrapped,
        ))
    }

    /// The key (exportable, usable) and its wrapping key (trusted, wrap, active), or why not.
    pub(super) fn export_checked(
        &self,
        partition: &str,
        label: &str,
        wrapping_label: &str,
    ) -> Result<(KeyAttributes, Zeroizing<Vec<u8>>, KeyAttributes)> {
        let u = self.unsealed()?;
        let row = self.live_row(partition, label)?;
        let wrow = self.live_row(partition, wrapping_label)?;
        let (attrs, pkcs8) = self.open_pkcs8(&u, &row)?;
        let wattrs = self.open_pkcs8(&u, &wrow)?.0;
        if !attrs.exportable_under_wrap {
            return Err(HsmError::NotExportable(attrs.label));
        }
        check_usable(&attrs, Operation::Sign).or_else(|e| match e {
            HsmError::OperationNotAllowed { .. } => Ok(()),
            e => Err(e),
        })?;
        if !wattrs.trusted || !wattrs.allows(Operation::Wrap) || wattrs.state != KeyState::Active {
            return Err(HsmError::UntrustedWrappingKey(wattrs.label));
        }
        Ok((attrs, pkcs8, wattrs))
    }
}
