//! Finding objects and reading their attributes. Every C_FindObjectsInit asks the service
//! (for the one key when the template names a label or id, else for the partition's keys), so
//! a key another client made since shows up in the next search; handles stay the same for the
//! same key.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use std::collections::HashSet;
use std::sync::{Arc, PoisonError};

use crate::client::{first_certificate_der, KeyInfo};
use crate::config::Token;
use crate::error::{Error, Result};
use crate::module::{lock, new_handle, Login, Module, Objects};
use crate::object::{Key, Kind, Object, Value, CKA_USAGE_COUNT, CKA_USAGE_LIMIT, FRESH};
use crate::session::Find;

pub type Template = [(CK_ATTRIBUTE_TYPE, Vec<u8>)];

/// What a search asked the service for: the whole partition, the key of a label, the key of an
/// id, or the key of both a label and an id.
#[derive(Clone, Copy)]
enum Scope<'a> {
    Partition,
    Label(&'a str),
    Id(&'a str),
    LabelAndId,
}

fn handle_for(
    objects: &mut Objects,
    slot: CK_SLOT_ID,
    key: &Arc<Key>,
    kind: Kind,
    certificate: Option<Arc<Vec<u8>>>,
) -> CK_OBJECT_HANDLE {
    let h = *objects
        .handles
        .entry((slot, key.info.id.clone(), kind))
        .or_insert_with(new_handle);
    objects.entries.insert(
        h,
        (
            slot,
            Object {
                kind,
                key: key.clone(),
                certificate,
            },
        ),
    );
    h
}

/// The key of `id` is gone from the service: its handles go invalid, and its label names
/// nothing until a search shows the label's new key.
fn forget_key(objects: &mut Objects, slot: CK_SLOT_ID, id: &str) {
    for kind in [Kind::PrivateKey, Kind::PublicKey, Kind::Certificate] {
        if let Some(h) = objects.handles.remove(&(slot, id.to_string(), kind)) {
            if let Some((_, o)) = objects.entries.remove(&h) {
                let label = (slot, o.key.info.label.clone());
                if objects.labels.get(&label).is_some_and(|known| known == id) {
                    objects.labels.remove(&label);
                }
            }
        }
    }
}

/// The service shows `key` alive now: its label names it, and a key that label named
/// before is gone (labels are unique in a partition). The certificate object, if the module
/// holds one, gets the fresh key too.
fn note_alive(objects: &mut Objects, slot: CK_SLOT_ID, key: &Arc<Key>) {
    let label = (slot, key.info.label.clone());
    if let Some(before) = objects.labels.insert(label, key.info.id.clone()) {
        if before != key.info.id {
            forget_key(objects, slot, &before);
        }
    }
    if let Some(&h) = objects
        .handles
        .get(&(slot, key.info.id.clone(), Kind::Certificate))
    {
        if let Some((_, o)) = objects.entries.get_mut(&h) {
            o.key = key.clone();
        }
    }
}

impl Module {
    /// Put a key's objects in the handle table (again), returning (private, public).
    pub fn remember_key(
        &self,
        slot: CK_SLOT_ID,
        info: KeyInfo,
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
        let key = Arc::new(Key::new(info)?);
        let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        let private = handle_for(&mut objects, slot, &key, Kind::PrivateKey, None);
        let public = handle_for(&mut objects, slot, &key, Kind::PublicKey, None);
        note_alive(&mut objects, slot, &key);
        Ok((private, public))
    }

    /// The service answered that the key of `id` does not exist: drop its handles.
    pub fn forget(&self, slot: CK_SLOT_ID, id: &str) {
        let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        forget_key(&mut objects, slot, id);
    }

    /// The slot's objects as the service has them now. A template naming a label or an id
    /// asks the service for that one key, with its certificate in the same answer when the
    /// search may want it: one call, the same at 10,000 keys as at ten. Any other template
    /// lists the partition, and then certificates cost one call per key, so they are fetched
    /// only when the search may want them.
    fn refresh(
        &self,
        slot: CK_SLOT_ID,
        token: Option<&Token>,
        certificates: bool,
        template: &Template,
    ) -> Result<Vec<CK_OBJECT_HANDLE>> {
        let wanted = |ty| template.iter().find(|(t, _)| *t == ty).map(|(_, v)| v);
        let (label, id) = (wanted(CKA_LABEL), wanted(CKA_ID));
        if label.is_none() && id.is_none() {
            let infos = self.client.list_keys(token)?;
            return self.install(slot, token, certificates, infos, Scope::Partition);
        }
        // kagi labels and ids are UTF-8: other bytes match no key.
        fn as_text(v: Option<&Vec<u8>>) -> std::result::Result<Option<&str>, std::str::Utf8Error> {
            v.map(|b| std::str::from_utf8(b)).transpose()
        }
        let (Ok(label), Ok(id)) = (as_text(label), as_text(id)) else {
            return Ok(Vec::new());
        };
        let infos = self.client.find_keys(token, label, id, certificates)?;
        let scope = match (label, id) {
            (Some(label), None) => Scope::Label(label),
            (None, Some(id)) => Scope::Id(id),
            // An id with a label that does not fit finds nothing, yet the key of that id lives.
            _ => Scope::LabelAndId,
        };
        self.install(slot, token, certificates, infos, scope)
    }

    /// Put the keys the service answered in the handle table, and drop the handles of keys
    /// that answer shows destroyed.
    fn install(
        &self,
        slot: CK_SLOT_ID,
        token: Option<&Token>,
        certificates: bool,
        infos: Vec<KeyInfo>,
        scope: Scope<'_>,
    ) -> Result<Vec<CK_OBJECT_HANDLE>> {
        let mut keys = Vec::with_capacity(infos.len());
        let mut certs = Vec::with_capacity(infos.len());
        for mut info in infos {
            // A search by label or id got the certificate in its answer.
            let answered = info.certificate.take();
            match Key::new(info) {
                Ok(k) => {
                    keys.push(Arc::new(k));
                    certs.push(answered.as_deref().and_then(first_certificate_der));
                }
                // A key of an algorithm this module does not know stays invisible.
                Err(e) => eprintln!("kagi-pkcs11: {}", e.message()),
            }
        }
        if certificates && matches!(scope, Scope::Partition) {
            for (key, cert) in keys.iter().zip(certs.iter_mut()) {
                *cert = self.client.certificate(token, &key.info.label)?;
            }
        }
        let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        let live: HashSet<&str> = keys.iter().map(|k| k.info.id.as_str()).collect();
        // Keys destroyed since: their handles go invalid. A search that saw the whole
        // partition can tell for every key; one for an id, for that id; one for a label, for
        // the key that label named before (and any search, for a key whose label another key
        // took since). Only the partition-wide search looks at other handles, so a search by
        // label or id costs the same however many handles the module holds.
        let stale: Vec<String> = match scope {
            Scope::Partition => {
                let gone: HashSet<&String> = objects
                    .handles
                    .keys()
                    .filter(|(s, id, _)| *s == slot && !live.contains(id.as_str()))
                    .map(|(_, id, _)| id)
                    .collect();
                gone.into_iter().cloned().collect()
            }
            Scope::Id(gone) if !live.contains(gone) => vec![gone.to_string()],
            Scope::Label(label) => objects
                .labels
                .get(&(slot, label.to_string()))
                .filter(|id| !live.contains(id.as_str()))
                .cloned()
                .into_iter()
                .collect(),
            Scope::Id(_) | Scope::LabelAndId => Vec::new(),
        };
        for id in stale {
            forget_key(&mut objects, slot, &id);
        }
        let mut handles = Vec::with_capacity(keys.len() * 3);
        for (key, cert) in keys.iter().zip(certs) {
            handles.push(handle_for(&mut objects, slot, key, Kind::PrivateKey, None));
            handles.push(handle_for(&mut objects, slot, key, Kind::PublicKey, None));
            if let Some(cert) = cert {
                handles.push(handle_for(
                    &mut objects,
                    slot,
                    key,
                    Kind::Certificate,
                    Some(Arc::new(cert)),
                ));
            } else if certificates {
                if let Some(h) =
                    objects
                        .handles
                        .remove(&(slot, key.info.id.clone(), Kind::Certificate))
                {
                    objects.entries.remove(&h);
                }
            } else if let Some(&h) =
                objects
                    .handles
                    .get(&(slot, key.info.id.clone(), Kind::Certificate))
            {
                // Not asked this time: the certificate object the module holds stays.
                handles.push(h);
            }
            note_alive(&mut objects, slot, key);
        }
        Ok(handles)
    }

    pub fn find_init(&self, h: CK_SESSION_HANDLE, template: &Template) -> Result<()> {
        let session = self.session(h)?;
        let slot = {
            let s = lock(&session);
            if s.find.is_some() {
                return Err(Error::rv(CKR_OPERATION_ACTIVE));
            }
            s.slot
        };
        let handles = match self.slot(slot)?.login() {
            // Without a credential the service shows nothing, public objects included.
            Login::Out => Vec::new(),
            Login::User(token) => {
                let class = template
                    .iter()
                    .find(|(t, _)| *t == CKA_CLASS)
                    .map(|(_, v)| v);
                let certificates =
                    class.is_none_or(|v| *v == (CKO_CERTIFICATE as CK_ULONG).to_ne_bytes());
                let all = self.refresh(slot, token.as_ref(), certificates, template)?;
                let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
                all.into_iter()
                    .filter(|h| {
                        objects
                            .entries
                            .get(h)
                            .is_some_and(|(_, o)| o.matches(template))
                    })
                    .collect()
            }
        };
        let mut s = lock(&session);
        if s.find.is_some() {
            return Err(Error::rv(CKR_OPERATION_ACTIVE));
        }
        s.find = Some(Find { handles, next: 0 });
        Ok(())
    }

    pub fn find(&self, h: CK_SESSION_HANDLE, max: usize) -> Result<Vec<CK_OBJECT_HANDLE>> {
        let session = self.session(h)?;
        let mut s = lock(&session);
        let find = s
            .find
            .as_mut()
            .ok_or_else(|| Error::rv(CKR_OPERATION_NOT_INITIALIZED))?;
        let end = find.handles.len().min(find.next.saturating_add(max));
        let out = find.handles[find.next..end].to_vec();
        find.next = end;
        Ok(out)
    }

    pub fn find_final(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let session = self.session(h)?;
        let mut s = lock(&session);
        s.find
            .take()
            .map(|_| ())
            .ok_or_else(|| Error::rv(CKR_OPERATION_NOT_INITIALIZED))
    }

    /// An object a session may see: of its slot, and private ones only while logged in.
    pub fn visible_object(
        &self,
        h: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
    ) -> Result<(CK_SLOT_ID, Object)> {
        let slot = self.session_slot(h)?;
        let (obj_slot, o) = self
            .object(object)
            .ok_or_else(|| Error::rv(CKR_OBJECT_HANDLE_INVALID))?;
        if obj_slot != slot {
            return Err(Error::rv(CKR_OBJECT_HANDLE_INVALID));
        }
        if o.kind == Kind::PrivateKey && matches!(self.slot(slot)?.login(), Login::Out) {
            return Err(Error::rv(CKR_OBJECT_HANDLE_INVALID));
        }
        Ok((slot, o))
    }

    pub fn attributes(
        &self,
        h: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<Value>> {
        let (slot, mut o) = self.visible_object(h, object)?;
        // The usage count moves with every signature anyone makes: read it fresh. Any other
        // attribute comes from what the service last said, unless that is older than FRESH:
        // then the service is asked whether the key still exists.
        let counts = o.kind != Kind::Certificate
            && types
                .iter()
                .any(|t| *t == CKA_USAGE_COUNT || *t == CKA_USAGE_LIMIT);
        if counts || o.key.seen.elapsed() > FRESH {
            if let Ok(token) = self.credential(slot) {
                let id = o.key.info.id.clone();
                let Some(info) = self
                    .client
                    .find_keys(token.as_ref(), None, Some(&id), false)?
                    .into_iter()
                    .next()
                else {
                    self.forget(slot, &id);
                    return Err(Error::new(
                        CKR_OBJECT_HANDLE_INVALID,
                        format!("kagi key '{}' no longer exists", o.key.info.label),
                    ));
                };
                self.remember_key(slot, info)?;
                match self.object(object) {
                    Some((_, fresh)) => o = fresh,
                    None => return Err(Error::rv(CKR_OBJECT_HANDLE_INVALID)),
                }
            }
        }
        Ok(types.iter().map(|t| o.attribute(*t)).collect())
    }

    /// kagi's objects cannot be changed through PKCS#11: in particular no attribute that keeps
    /// a private key inside (CKA_SENSITIVE, CKA_EXTRACTABLE) can be turned off.
    pub fn set_attributes(
        &self,
        h: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        template: &Template,
    ) -> Result<()> {
        let (_, o) = self.visible_object(h, object)?;
        for (ty, _) in template {
            if matches!(o.attribute(*ty), Value::Invalid) {
                return Err(Error::rv(CKR_ATTRIBUTE_TYPE_INVALID));
            }
        }
        Err(Error::rv(CKR_ATTRIBUTE_READ_ONLY))
    }
}
