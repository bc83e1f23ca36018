//! The module's state between C_Initialize and C_Finalize: the service client, the slots with
//! their login states, the sessions, and the object handles. Every entry point reaches it
//! through [`module`]; no lock is held across a call to the service, so threads sign in
//! parallel (CKF_OS_LOCKING_OK: the module locks with the OS's primitives itself).
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use crate::client::Client;
use crate::config::{Config, SlotConfig, Token};
use crate::error::{Error, Result};
use crate::object::{Kind, Object};
use crate::session::Session;

static STATE: RwLock<Option<Arc<Module>>> = RwLock::new(None);

/// Session and object handles are never reused, not even across C_Finalize and
/// C_Initialize, so a stale handle is always invalid rather than someone else's.
static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

pub fn new_handle() -> CK_ULONG {
    NEXT_HANDLE.fetch_add(1, Ordering::Relaxed) as CK_ULONG
}

/// A poisoned lock only means another thread failed while holding it; the state it guards
/// is replaced whole or not at all, so it stays usable.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A slot's login: out, or in with a credential (None: the TLS client certificate).
#[derive(Clone)]
pub enum Login {
    Out,
    User(Option<Token>),
}

pub struct Slot {
    pub config: SlotConfig,
    pub login: RwLock<Login>,
}

impl Slot {
    /// Where a slot starts, and returns to when its last session closes: logged in when the
    /// configuration gives it a credential.
    pub fn initial_login(&self) -> Login {
        match (&self.config.token, self.config.certificate_login) {
            (Some(t), _) => Login::User(Some(t.clone())),
            (None, true) => Login::User(None),
            (None, false) => Login::Out,
        }
    }

    pub fn login(&self) -> Login {
        self.login
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_login(&self, login: Login) {
        *self.login.write().unwrap_or_else(PoisonError::into_inner) = login;
    }
}

/// Object handles: one per (slot, key id, kind), stable while the module runs.
#[derive(Default)]
pub struct Objects {
    pub handles: HashMap<(CK_SLOT_ID, String, Kind), CK_OBJECT_HANDLE>,
    pub entries: HashMap<CK_OBJECT_HANDLE, (CK_SLOT_ID, Object)>,
    /// The id of the key each label last named: a search by label that answers another key,
    /// or none, shows the key of this id destroyed (labels are unique in a partition).
    pub labels: HashMap<(CK_SLOT_ID, String), String>,
}

pub struct Module {
    pub client: Client,
    pub url: String,
    pub slots: Vec<Slot>,
    pub sessions: Mutex<HashMap<CK_SESSION_HANDLE, Arc<Mutex<Session>>>>,
    pub objects: RwLock<Objects>,
}

/// The initialized module, or CKR_CRYPTOKI_NOT_INITIALIZED.
pub fn module() -> Result<Arc<Module>> {
    STATE
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .ok_or_else(|| Error::rv(CKR_CRYPTOKI_NOT_INITIALIZED))
}

/// C_Initialize: read the configuration and make the client. Nothing is sent to the service
/// yet, so a module loaded by a program that never uses it costs no connection.
pub fn initialize() -> Result<()> {
    let mut state = STATE.write().unwrap_or_else(PoisonError::into_inner);
    if state.is_some() {
        return Err(Error::rv(CKR_CRYPTOKI_ALREADY_INITIALIZED));
    }
    let config = Config::load()?;
    let client = Client::new(&config)?;
    let slots = config
        .slots
        .into_iter()
        .map(|c| {
            let slot = Slot {
                config: c,
                login: RwLock::new(Login::Out),
            };
            slot.set_login(slot.initial_login());
            slot
        })
        .collect();
    *state = Some(Arc::new(Module {
        client,
        url: config.url,
        slots,
        sessions: Mutex::new(HashMap::new()),
        objects: RwLock::new(Objects::default()),
    }));
    Ok(())
}

/// C_Finalize: drop the state. Calls already running finish on their own reference to it.
pub fn finalize() -> Result<()> {
    let mut state = STATE.write().unwrap_or_else(PoisonError::into_inner);
    match state.take() {
        Some(_) => Ok(()),
        None => Err(Error::rv(CKR_CRYPTOKI_NOT_INITIALIZED)),
    }
}

impl Module {
    pub fn slot(&self, id: CK_SLOT_ID) -> Result<&Slot> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.slots.get(i))
            .ok_or_else(|| Error::rv(CKR_SLOT_ID_INVALID))
    }

    pub fn session(&self, h: CK_SESSION_HANDLE) -> Result<Arc<Mutex<Session>>> {
        lock(&self.sessions)
            .get(&h)
            .cloned()
            .ok_or_else(|| Error::rv(CKR_SESSION_HANDLE_INVALID))
    }

    pub fn session_slot(&self, h: CK_SESSION_HANDLE) -> Result<CK_SLOT_ID> {
        let session = self.session(h)?;
        let slot = lock(&session).slot;
        Ok(slot)
    }

    /// The credential a session's calls to the service carry, or CKR_USER_NOT_LOGGED_IN.
    pub fn credential(&self, slot: CK_SLOT_ID) -> Result<Option<Token>> {
        match self.slot(slot)?.login() {
            Login::User(t) => Ok(t),
            Login::Out => Err(Error::rv(CKR_USER_NOT_LOGGED_IN)),
        }
    }

    pub fn object(&self, h: CK_OBJECT_HANDLE) -> Option<(CK_SLOT_ID, Object)> {
        self.objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .get(&h)
            .cloned()
    }
}
