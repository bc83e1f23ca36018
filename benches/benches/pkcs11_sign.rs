//! Acceptance 6 of issue 13: PKCS#11 C_Sign throughput and per-call latency through kagi's
//! module (`libkagi_pkcs11`, against a real release `kagi serve` over TLS on loopback) beside
//! SoftHSM2 (Debian `softhsm2`, loaded with dlopen through the same C ABI) on the same
//! mechanisms, in the same run:
//!
//! - RSA-2048, CKM_RSA_PKCS over a SHA-256 DigestInfo;
//! - P-256, CKM_ECDSA over a 32-byte digest;
//!
//! each with 1 and with 8 threads. Every thread opens its own session (C_OpenSession), finds the
//! key by label in it, and then loops C_SignInit + C_Sign, as a multi-threaded signer does. The
//! hardware limit is aws-lc-rs signing in-process on all cores, measured in the same run.
//!
//! kagi's C_Sign is a call to the service: the policy is checked, the usage counted durably,
//! the signature audited and logged before it is returned. SoftHSM2 is a local library with no
//! count, policy or audit; its keys here are token objects (CKA_TOKEN=TRUE) in a token of its
//! own, in a scratch folder named by SOFTHSM2_CONF, made with C_GenerateKeyPair.
//!
//! Run: `cargo bench -p kagi-benches --bench pkcs11_sign`. It builds and runs
//! `target/release/kagi` (or KAGI_BIN). KAGI_BENCH_SECS=N seconds per row (default 3);
//! SOFTHSM2_MODULE=path to use another libsofthsm2.so. Without SoftHSM2
//! (`scripts/install-test-tools.sh` installs it) its rows are skipped with a message.
//!
//! `KAGI_BENCH_ONLY=softhsm2` runs only SoftHSM2's P-256 loop (no kagi serve, no hardware row)
//! on KAGI_BENCH_THREADS threads (default 1), starting at the unix time KAGI_BENCH_START_AT if
//! set, and prints one `softhsm2 ...` line of key=value pairs: `benches/perf.sh` starts one
//! such process per core at the same instant and sums their rates, because SoftHSM2 in one
//! process serializes on its own locks and an application that wants both cores runs two.

use cryptoki_sys::*;
use kagi_benches::percentile;
use kagi_benches::serve::{agent, start};
use std::ffi::c_void;
use std::path::Path;
use std::ptr::null_mut;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// A PKCS#11 module through its function list, as any application sees it.
#[derive(Clone, Copy)]
struct Module {
    name: &'static str,
    f: &'static CK_FUNCTION_LIST,
}

fn check(what: &str, rv: CK_RV) {
    assert_eq!(rv, CKR_OK, "{what}: CK_RV 0x{rv:08x}");
}

/// A template: attribute types and the bytes of their values.
type Template = Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>;

fn ul(v: CK_ULONG) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

fn yes() -> Vec<u8> {
    vec![CK_TRUE]
}

/// CK_ATTRIBUTEs pointing into `values` (which must outlive them).
fn attributes(template: &Template, values: &mut [Vec<u8>]) -> Vec<CK_ATTRIBUTE> {
    template
        .iter()
        .zip(values.iter_mut())
        .map(|((t, _), v)| CK_ATTRIBUTE {
            type_: *t,
            pValue: v.as_mut_ptr() as *mut c_void,
            ulValueLen: v.len() as CK_ULONG,
        })
        .collect()
}

/// The label of a token or slot: 32 bytes padded with blanks.
fn padded(label: &[u8; 32]) -> String {
    String::from_utf8_lossy(label).trim_end().to_string()
}

impl Module {
    fn kagi() -> Module {
        let mut list: *mut CK_FUNCTION_LIST = null_mut();
        // SAFETY: the out pointer is valid; the module hands back its static function list.
        check("kagi C_GetFunctionList", unsafe {
            kagi_pkcs11::ffi::C_GetFunctionList(&mut list)
        });
        // SAFETY: C_GetFunctionList returned CKR_OK, so `list` points at the static list.
        Module {
            name: "kagi",
            f: unsafe { &*list },
        }
    }

    /// dlopen a module; it stays loaded for the rest of the process.
    fn load(name: &'static str, path: &Path) -> Result<Module, String> {
        // SAFETY: loading a PKCS#11 module runs its initializers; SoftHSM2's are plain C++
        // static constructors.
        let lib = unsafe { Pkcs11::new(path) }
            .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        let lib: &'static Pkcs11 = Box::leak(Box::new(lib));
        if let Err(e) = &lib.C_GetFunctionList {
            return Err(format!("{} has no C_GetFunctionList: {e}", path.display()));
        }
        let mut list: *mut CK_FUNCTION_LIST = null_mut();
        // SAFETY: the symbol is there (checked above); the out pointer is valid.
        let rv = unsafe { lib.C_GetFunctionList(&mut list) };
        if rv != CKR_OK || list.is_null() {
            return Err(format!("C_GetFunctionList of {} failed", path.display()));
        }
        // SAFETY: the list is static in a library that is never unloaded.
        Ok(Module {
            name,
            f: unsafe { &*list },
        })
    }

    /// C_Initialize with CKF_OS_LOCKING_OK: the application calls from many threads. (With
    /// NULL arguments SoftHSM2 turns its own locking off.)
    fn initialize(&self) {
        let mut args = CK_C_INITIALIZE_ARGS {
            CreateMutex: None,
            DestroyMutex: None,
            LockMutex: None,
            UnlockMutex: None,
            flags: CKF_OS_LOCKING_OK,
            pReserved: null_mut(),
        };
        // SAFETY: the arguments live across the call.
        check("C_Initialize", unsafe {
            self.f.C_Initialize.expect("C_Initialize")(&mut args as *mut _ as *mut c_void)
        });
    }

    fn finalize(&self) {
        // SAFETY: NULL is the only valid argument.
        check("C_Finalize", unsafe {
            self.f.C_Finalize.expect("C_Finalize")(null_mut())
        });
    }

    fn library_description(&self) -> String {
        let mut info = CK_INFO::default();
        // SAFETY: the out pointer is valid.
        check("C_GetInfo", unsafe {
            self.f.C_GetInfo.expect("C_GetInfo")(&mut info)
        });
        format!(
            "{} {}.{} ({}, PKCS#11 {}.{})",
            padded(&info.libraryDescription),
            info.libraryVersion.major,
            info.libraryVersion.minor,
            padded(&info.manufacturerID),
            info.cryptokiVersion.major,
            info.cryptokiVersion.minor
        )
    }

    /// The slot whose token has this label.
    fn slot_of_token(&self, label: &str) -> Option<CK_SLOT_ID> {
        let mut n: CK_ULONG = 0;
        // SAFETY: the size query: a NULL list and a valid count pointer.
        check("C_GetSlotList", unsafe {
            self.f.C_GetSlotList.expect("C_GetSlotList")(CK_TRUE, null_mut(), &mut n)
        });
        let mut slots = vec![0 as CK_SLOT_ID; n as usize];
        // SAFETY: the list has room for `n` slots.
        check("C_GetSlotList", unsafe {
            self.f.C_GetSlotList.expect("C_GetSlotList")(CK_TRUE, slots.as_mut_ptr(), &mut n)
        });
        slots.truncate(n as usize);
        slots.into_iter().find(|&slot| {
            let mut info = CK_TOKEN_INFO::default();
            // SAFETY: the out pointer is valid.
            let rv = unsafe { self.f.C_GetTokenInfo.expect("C_GetTokenInfo")(slot, &mut info) };
            rv == CKR_OK && padded(&info.label) == label
        })
    }

    fn open(&self, slot: CK_SLOT_ID) -> CK_SESSION_HANDLE {
        let mut s: CK_SESSION_HANDLE = 0;
        // SAFETY: the out pointer is valid; no notify callback.
        check("C_OpenSession", unsafe {
            self.f.C_OpenSession.expect("C_OpenSession")(
                slot,
                CKF_SERIAL_SESSION | CKF_RW_SESSION,
                null_mut(),
                None,
                &mut s,
            )
        });
        s
    }

    fn close(&self, s: CK_SESSION_HANDLE) {
        // SAFETY: a session this process opened.
        check("C_CloseSession", unsafe {
            self.f.C_CloseSession.expect("C_CloseSession")(s)
        });
    }

    fn login(&self, s: CK_SESSION_HANDLE, pin: &str) {
        let mut pin = pin.as_bytes().to_vec();
        // SAFETY: the PIN buffer lives across the call, with its length.
        check("C_Login", unsafe {
            self.f.C_Login.expect("C_Login")(s, CKU_USER, pin.as_mut_ptr(), pin.len() as CK_ULONG)
        });
    }

    /// The private key of this label, found in this session.
    fn private_key(&self, s: CK_SESSION_HANDLE, label: &str) -> CK_OBJECT_HANDLE {
        let template: Template = vec![
            (CKA_CLASS, ul(CKO_PRIVATE_KEY)),
            (CKA_LABEL, label.as_bytes().to_vec()),
        ];
        let mut values: Vec<Vec<u8>> = template.iter().map(|(_, v)| v.clone()).collect();
        let mut attrs = attributes(&template, &mut values);
        let f = self.f;
        // SAFETY (the three calls): the template and the output buffer live across the calls
        // and their lengths are the ones passed.
        check("C_FindObjectsInit", unsafe {
            f.C_FindObjectsInit.expect("C_FindObjectsInit")(
                s,
                attrs.as_mut_ptr(),
                attrs.len() as CK_ULONG,
            )
        });
        let mut found = [0 as CK_OBJECT_HANDLE; 2];
        let mut n: CK_ULONG = 0;
        check("C_FindObjects", unsafe {
            f.C_FindObjects.expect("C_FindObjects")(s, found.as_mut_ptr(), 2, &mut n)
        });
        check("C_FindObjectsFinal", unsafe {
            f.C_FindObjectsFinal.expect("C_FindObjectsFinal")(s)
        });
        assert_eq!(n, 1, "{}: one private key labelled {label}", self.name);
        found[0]
    }

    /// C_SignInit + C_Sign (one call, the buffer big enough); the signature's length.
    fn sign(
        &self,
        s: CK_SESSION_HANDLE,
        key: CK_OBJECT_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        data: &mut [u8],
        out: &mut [u8],
    ) -> usize {
        let mut mech = CK_MECHANISM {
            mechanism,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let f = self.f;
        // SAFETY: the mechanism, the data and the output buffer live across the calls, with
        // the lengths passed.
        check("C_SignInit", unsafe {
            f.C_SignInit.expect("C_SignInit")(s, &mut mech, key)
        });
        let mut len = out.len() as CK_ULONG;
        check("C_Sign", unsafe {
            f.C_Sign.expect("C_Sign")(
                s,
                data.as_mut_ptr(),
                data.len() as CK_ULONG,
                out.as_mut_ptr(),
                &mut len,
            )
        });
        len as usize
    }

    /// C_GenerateKeyPair of a token key pair with this label.
    fn generate(&self, s: CK_SESSION_HANDLE, alg: Alg, label: &str) {
        let (mechanism, mut public): (CK_MECHANISM_TYPE, Template) = match alg {
            Alg::Rsa2048 => (
                CKM_RSA_PKCS_KEY_PAIR_GEN,
                vec![
                    (CKA_MODULUS_BITS, ul(2048)),
                    (CKA_PUBLIC_EXPONENT, vec![1, 0, 1]),
                ],
            ),
            // CKA_EC_PARAMS: the DER OID of prime256v1.
            Alg::P256 => (
                CKM_EC_KEY_PAIR_GEN,
                vec![(
                    CKA_EC_PARAMS,
                    vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
                )],
            ),
        };
        public.extend([
            (CKA_TOKEN, yes()),
            (CKA_VERIFY, yes()),
            (CKA_LABEL, label.as_bytes().to_vec()),
        ]);
        let private: Template = vec![
            (CKA_TOKEN, yes()),
            (CKA_PRIVATE, yes()),
            (CKA_SENSITIVE, yes()),
            (CKA_SIGN, yes()),
            (CKA_LABEL, label.as_bytes().to_vec()),
        ];
        let mut public_values: Vec<Vec<u8>> = public.iter().map(|(_, v)| v.clone()).collect();
        let mut private_values: Vec<Vec<u8>> = private.iter().map(|(_, v)| v.clone()).collect();
        let mut public_attrs = attributes(&public, &mut public_values);
        let mut private_attrs = attributes(&private, &mut private_values);
        let mut mech = CK_MECHANISM {
            mechanism,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let (mut pubkey, mut privkey): (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) = (0, 0);
        // SAFETY: the templates, their values and the out pointers live across the call.
        check("C_GenerateKeyPair", unsafe {
            self.f.C_GenerateKeyPair.expect("C_GenerateKeyPair")(
                s,
                &mut mech,
                public_attrs.as_mut_ptr(),
                public_attrs.len() as CK_ULONG,
                private_attrs.as_mut_ptr(),
                private_attrs.len() as CK_ULONG,
                &mut pubkey,
                &mut privkey,
            )
        });
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Alg {
    Rsa2048,
    P256,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Alg::Rsa2048 => "RSA-2048",
            Alg::P256 => "P-256",
        }
    }

    fn mechanism(self) -> (CK_MECHANISM_TYPE, &'static str) {
        match self {
            Alg::Rsa2048 => (CKM_RSA_PKCS, "CKM_RSA_PKCS, SHA-256 DigestInfo"),
            Alg::P256 => (CKM_ECDSA, "CKM_ECDSA, 32-byte digest"),
        }
    }

    /// What C_Sign gets: a SHA-256 DigestInfo (RSA) or the bare digest (ECDSA).
    fn input(self) -> Vec<u8> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"pkcs11 bench");
        match self {
            Alg::Rsa2048 => {
                let mut v = vec![
                    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
                    0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
                ];
                v.extend_from_slice(digest.as_ref());
                v
            }
            Alg::P256 => digest.as_ref().to_vec(),
        }
    }

    fn signature_len(self) -> usize {
        match self {
            Alg::Rsa2048 => 256,
            Alg::P256 => 64,
        }
    }

    fn kagi_alg(self) -> &'static str {
        match self {
            Alg::Rsa2048 => "rsa-2048",
            Alg::P256 => "ec-p256",
        }
    }
}

/// One row: how many signatures, in how long, and every call's latency; and the CPU time
/// spent per signature in this process (the caller and its module) and in `kagi serve`.
struct Run {
    ops: f64,
    p50: f64,
    p99: f64,
    max: f64,
    caller_cpu_us: f64,
    server_cpu_us: Option<f64>,
}

/// CPU seconds (user + system, all threads) a process has used so far, from /proc.
fn cpu_seconds(pid: &str) -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold blanks), from field 3 on.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> f64 {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(14) + field(15)) / ticks
}

/// `threads` threads, each with its own session, sign with the key `label` for `dur`.
/// `server`: the pid of the service behind the module, whose CPU time is read too.
fn measure(
    m: Module,
    slot: CK_SLOT_ID,
    label: &str,
    alg: Alg,
    threads: usize,
    dur: Duration,
    server: Option<u32>,
) -> Run {
    let server = server.map(|p| p.to_string());
    let mut cpu_before = (0.0, 0.0);
    let (mechanism, _) = alg.mechanism();
    let go = Barrier::new(threads + 1);
    let (lat, elapsed) = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let go = &go;
                sc.spawn(move || {
                    let s = m.open(slot);
                    let key = m.private_key(s, label);
                    let mut data = alg.input();
                    let mut sig = vec![0u8; 512];
                    // Warm: the session's first signatures (connections, caches).
                    for _ in 0..3 {
                        assert_eq!(
                            m.sign(s, key, mechanism, &mut data, &mut sig),
                            alg.signature_len()
                        );
                    }
                    go.wait();
                    let start = Instant::now();
                    let mut lat = Vec::with_capacity(1 << 16);
                    while start.elapsed() < dur {
                        let t = Instant::now();
                        let n = m.sign(s, key, mechanism, &mut data, &mut sig);
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                        assert_eq!(n, alg.signature_len());
                    }
                    let elapsed = start.elapsed();
                    m.close(s);
                    (lat, elapsed)
                })
            })
            .collect();
        cpu_before = (
            cpu_seconds("self"),
            server.as_deref().map_or(0.0, cpu_seconds),
        );
        go.wait();
        let mut all = Vec::new();
        let mut longest = Duration::ZERO;
        for w in workers {
            let (lat, elapsed) = w.join().expect("signing thread");
            all.extend(lat);
            longest = longest.max(elapsed);
        }
        (all, longest)
    });
    let caller_cpu = cpu_seconds("self") - cpu_before.0;
    let server_cpu = server.as_deref().map(|p| cpu_seconds(p) - cpu_before.1);
    let mut lat = lat;
    lat.sort_by(f64::total_cmp);
    let n = lat.len() as f64;
    Run {
        ops: n / elapsed.as_secs_f64(),
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        max: lat[lat.len() - 1],
        caller_cpu_us: caller_cpu * 1e6 / n,
        server_cpu_us: server_cpu.map(|c| c * 1e6 / n),
    }
}

/// aws-lc-rs signing in-process: the hardware's limit for this key type.
fn hardware(alg: Alg, threads: usize, dur: Duration) -> f64 {
    match alg {
        Alg::Rsa2048 => {
            let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .expect("RSA keygen");
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let msg = b"pkcs11 bench";
            kagi_benches::rate(threads, dur, |_| {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                let _ = kp.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig);
            })
        }
        Alg::P256 => {
            let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            )
            .expect("P-256 keygen");
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"pkcs11 bench");
            kagi_benches::rate(threads, dur, |_| {
                let _ = kp.sign_digest(&digest);
            })
        }
    }
}

/// A SoftHSM2 of its own: a config and token folder in `dir`, a token "bench" initialized with
/// softhsm2-util, and its key pairs made with C_GenerateKeyPair. None (with the reason printed)
/// when SoftHSM2 is not installed or does not work.
fn softhsm(dir: &Path, algs: &[Alg]) -> Option<(Module, CK_SLOT_ID, CK_SESSION_HANDLE)> {
    let candidates = [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    ];
    let path = match std::env::var("SOFTHSM2_MODULE") {
        Ok(p) => Some(std::path::PathBuf::from(p)),
        Err(_) => candidates
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists()),
    };
    let skip = |why: String| {
        println!(
            "SoftHSM2 rows skipped: {why}\n  (install it with scripts/install-test-tools.sh, \
             or apt-get install softhsm2; SOFTHSM2_MODULE=path names another libsofthsm2.so)\n"
        );
        None
    };
    let Some(path) = path else {
        return skip("libsofthsm2.so not found".into());
    };
    let tokens = dir.join("softhsm-tokens");
    let conf = dir.join("softhsm2.conf");
    if let Err(e) = std::fs::create_dir_all(&tokens).and_then(|_| {
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
    }) {
        return skip(format!("cannot write its configuration: {e}"));
    }
    std::env::set_var("SOFTHSM2_CONF", &conf);
    match std::process::Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--so-pin",
            "5678",
            "--pin",
            "1234",
        ])
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return skip(format!(
                "softhsm2-util --init-token failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => return skip(format!("cannot run softhsm2-util: {e}")),
    }
    let m = match Module::load("SoftHSM2", &path) {
        Ok(m) => m,
        Err(e) => return skip(e),
    };
    m.initialize();
    let Some(slot) = m.slot_of_token("bench") else {
        return skip("the token softhsm2-util initialized is not in the slot list".into());
    };
    println!(
        "SoftHSM2: {} from {}",
        m.library_description(),
        path.display()
    );
    // Logged in for as long as one session stays open: this one, until the end.
    let s = m.open(slot);
    m.login(s, "1234");
    for &alg in algs {
        m.generate(s, alg, alg.kagi_alg());
    }
    Some((m, slot, s))
}

/// The `KAGI_BENCH_ONLY=softhsm2` mode: SoftHSM2's P-256 C_Sign loop alone, one line out.
fn softhsm_only(dur: Duration) {
    let threads: usize = kagi_benches::env("KAGI_BENCH_THREADS", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((m, slot, s)) = softhsm(dir.path(), &[Alg::P256]) else {
        println!("softhsm2 unavailable");
        std::process::exit(2);
    };
    // Processes started together still finish their setup apart: they meet at a set instant.
    if let Ok(at) = std::env::var("KAGI_BENCH_START_AT") {
        let at: f64 = at.parse().expect("KAGI_BENCH_START_AT: unix seconds");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        if at > now {
            std::thread::sleep(Duration::from_secs_f64(at - now));
        }
    }
    let alg = Alg::P256;
    let r = measure(m, slot, alg.kagi_alg(), alg, threads, dur, None);
    println!(
        "softhsm2 alg=P-256 threads={threads} secs={} ops_per_s={:.1} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} cpu_us_per_op={:.1}",
        dur.as_secs(),
        r.ops,
        r.p50,
        r.p99,
        r.max,
        r.caller_cpu_us
    );
    m.close(s);
    m.finalize();
}

fn main() {
    let secs: u64 = kagi_benches::env("KAGI_BENCH_SECS", 3);
    if std::env::var("KAGI_BENCH_ONLY").as_deref() == Ok("softhsm2") {
        softhsm_only(Duration::from_secs(secs));
        return;
    }
    let dur = Duration::from_secs(secs);
    let cores = kagi_benches::cores();
    println!("kagi PKCS#11 C_Sign benchmark: {cores} cores, {secs} s per row");
    println!(
        "(CPU us/op: this process's CPU time per signature (caller + module), + kagi serve's)\n"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let soft = softhsm(dir.path(), &[Alg::Rsa2048, Alg::P256]);

    let server = start(dir.path());
    let ca = dir.path().join("kagi-data/tls-ca.pem");
    let http = agent(&ca);
    let token = std::fs::read_to_string(dir.path().join("kagi-data/admin.token"))
        .expect("admin token")
        .trim()
        .to_string();
    for alg in [Alg::Rsa2048, Alg::P256] {
        let body = format!(
            r#"{{"name":"{}","alg":"{}"}}"#,
            alg.kagi_alg(),
            alg.kagi_alg()
        );
        let resp = http
            .post(format!("{}/api/v1/keys", server.url))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .expect("POST /api/v1/keys");
        assert_eq!(resp.status(), 201, "creating the {} key", alg.name());
    }
    std::env::remove_var("KAGI_PKCS11_CONF");
    std::env::set_var("KAGI_URL", &server.url);
    std::env::set_var("KAGI_CA", &ca);
    std::env::set_var("KAGI_TOKEN", &token);
    let kagi = Module::kagi();
    kagi.initialize();
    println!(
        "kagi: {} against kagi serve (SQLite; KAGI_BIN, else target/release/kagi) at {}",
        kagi.library_description(),
        server.url
    );
    // The machines are shared: how busy this one was says how far to trust a row.
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    println!("load average before: {}\n", load());

    println!(
        "{:<9} {:<32} {:>3} {:<9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>11}",
        "key",
        "mechanism",
        "thr",
        "module",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "/SoftHSM2",
        "/hardware",
        "CPU us/op"
    );
    for alg in [Alg::Rsa2048, Alg::P256] {
        let hw = hardware(alg, cores, dur);
        let hw1 = hardware(alg, 1, dur);
        let (_, mech) = alg.mechanism();
        println!(
            "{:<9} {:<32} {:>3} {:<9} {:>9.0} {:>9} {:>9} {:>9} {:>10} {:>10.3}",
            alg.name(),
            "aws-lc-rs in-process",
            1,
            "hardware",
            hw1,
            "",
            "",
            "",
            "",
            hw1 / hw
        );
        println!(
            "{:<9} {:<32} {:>3} {:<9} {:>9.0} {:>9} {:>9} {:>9} {:>10} {:>10.3}",
            alg.name(),
            "aws-lc-rs in-process",
            cores,
            "hardware",
            hw,
            "",
            "",
            "",
            "",
            1.0
        );
        for threads in [1, 8] {
            let soft_run = soft
                .as_ref()
                .map(|(m, slot, _)| measure(*m, *slot, alg.kagi_alg(), alg, threads, dur, None));
            let kagi_run = measure(
                kagi,
                0,
                alg.kagi_alg(),
                alg,
                threads,
                dur,
                Some(server.pid()),
            );
            let soft_ops = soft_run.as_ref().map(|r| r.ops);
            for (name, run) in [("SoftHSM2", soft_run.as_ref()), ("kagi", Some(&kagi_run))] {
                let Some(r) = run else { continue };
                let vs_soft = soft_ops
                    .map(|s| format!("{:.3}", r.ops / s))
                    .unwrap_or_else(|| "-".into());
                let cpu = match r.server_cpu_us {
                    Some(server) => format!("{:.0}+{:.0}", r.caller_cpu_us, server),
                    None => format!("{:.0}", r.caller_cpu_us),
                };
                println!(
                    "{:<9} {:<32} {:>3} {:<9} {:>9.0} {:>9.3} {:>9.3} {:>9.3} {:>10} {:>10.3} {:>11}",
                    alg.name(),
                    mech,
                    threads,
                    name,
                    r.ops,
                    r.p50,
                    r.p99,
                    r.max,
                    vs_soft,
                    r.ops / hw,
                    cpu
                );
            }
        }
        println!();
    }

    println!("load average after: {}", load());
    kagi.finalize();
    if let Some((m, _, s)) = soft {
        m.close(s);
        m.finalize();
    }
    drop(server);
}
