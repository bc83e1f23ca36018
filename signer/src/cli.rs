//! Command-line syntax of `kagi`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "kagi",
    version,
    about = "kagi: code signing and keys on a software HSM",
    after_help = "Client commands read KAGI_URL (default https://127.0.0.1:8443), \
KAGI_CA (default ./kagi-data/tls-ca.pem) and KAGI_TOKEN (default: contents of ./kagi-data/admin.token).

Exit codes:
  0  done
  1  error (printed as 'error: <code>: <message>')
  2  the command line is wrong (usage)
  3  pending approval: the change waits for an M-of-N quorum; the request and its id are printed
     (with --output json, the service's JSON answer)"
)]
pub struct Cli {
    /// text (for people) or json (the service's JSON answer, for scripts); list and show
    /// commands, approvals pending, and the log and audit checks.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "KAGI_OUTPUT",
        default_value = "text"
    )]
    pub output: OutputFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the kagi HTTPS service (initializes a development instance on first run).
    Serve(ServeArgs),
    /// Initialize a production instance: encrypts each unseal share to its custodian (or prints
    /// them once) and prints the admin token once.
    Init(InitArgs),
    /// Submit one unseal share to the running service.
    Unseal(UnsealArgs),
    /// Break-glass administration by the unseal-share holders.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Manage keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Sign a file: it is hashed locally, only the digest is sent.
    Sign(SignArgs),
    /// Read and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage credentials (tokens).
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Manage partitions (each has its own sealing key and credentials).
    #[command(subcommand)]
    Partition(PartitionCommand),
    /// Manage identities: people, CI pipelines and factory lines, each with its own token.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Validate, submit, list and activate policy documents.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Review and decide M-of-N approval requests.
    #[command(subcommand)]
    Approval(ApprovalCommand),
    /// The certificate authority: CAs, issuance, revocation.
    #[command(subcommand)]
    Ca(CaCommand),
    /// The public transparency log of every signature: checkpoints, proofs, verification.
    #[command(subcommand)]
    Log(LogCommand),
    /// Verify a raw or CMS signature locally: signature, chain to kagi's root, and the
    /// transparency-log proof 'kagi sign' saved beside it (SIG.tlog.json).
    Verify(VerifyArgs),
    /// Copy the embedded SQLite database to a new file (mode 0600), consistently, while
    /// 'kagi serve' runs on it. Run it on the service's host. PostgreSQL: use pg_dump.
    Backup(BackupArgs),
    /// Whether the service is ready, and why not: sealed, failed closed, a rollback a witness
    /// showed, witnesses below their quorum, the database (exit 1 when not ready).
    Status,
    /// After a detected rollback, once the witnesses' operators reset kagi's log on them and
    /// kagi restarted: let kagi sign again (officers; the policy's quorum approves). Keys
    /// with usage limits and the policy's quotas stay frozen until officers set them again.
    RecoverRollback {
        /// Why signing may resume (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Run a transparency-log witness (C2SP tlog-witness) in its own process and data folder:
    /// it cosigns a log's checkpoints only if each is consistent with the last one it saw.
    #[command(subcommand)]
    Witness(WitnessCommand),
}

/// Where the database is, found as `kagi serve` finds it: flag, then KAGI_DATA /
/// KAGI_DATABASE_URL, then the --config file (KAGI_CONFIG), then ./kagi-data.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The backup file to write; it must not exist yet.
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// The data folder 'kagi serve' uses (default ./kagi-data) [env KAGI_DATA, config "data"]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The database URL 'kagi serve' uses, if not SQLite in the data folder
    /// [env KAGI_DATABASE_URL, config "database_url"]
    #[arg(long)]
    pub database_url: Option<String>,
    /// The JSON config file 'kagi serve' reads [env KAGI_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub use kagi_verify::{LogCommand, VerifyArgs};

#[derive(Debug, Subcommand)]
pub enum WitnessCommand {
    /// Make a witness: its Ed25519 key (0600) and database in DIR; prints its cosignature
    /// verifier key, which logs and relying parties configure.
    Init {
        /// The witness's data folder (created 0700 if missing; must not hold a witness yet).
        #[arg(long)]
        data: PathBuf,
        /// The witness's name in its cosignatures: a schema-less URL that identifies it, e.g.
        /// witness.example.com/w1 (no spaces, no '+').
        #[arg(long)]
        name: String,
    },
    /// Print the witness's cosignature verifier key (<name>+<key hash>+<base64 key>).
    Key {
        #[arg(long)]
        data: PathBuf,
    },
    /// Serve POST /add-checkpoint over plain HTTP (cosignatures are self-authenticating).
    Serve(WitnessServeArgs),
    /// Print the latest checkpoint size and root the witness saved for each log.
    Status {
        #[arg(long)]
        data: PathBuf,
    },
    /// Forget the checkpoint saved for one log, so its next checkpoint is taken as new: the
    /// witness operator's part of a log's recovery after a rollback (README, Backups). Prints
    /// what was forgotten; works while the witness serves.
    Forget {
        #[arg(long)]
        data: PathBuf,
        /// The log's origin (the first line of its checkpoints; kagi's is kagi-tlog).
        #[arg(long)]
        origin: String,
    },
}

#[derive(Debug, Args)]
pub struct WitnessServeArgs {
    /// The witness's data folder (made by 'kagi witness init').
    #[arg(long)]
    pub data: PathBuf,
    /// Address to listen on (plain HTTP).
    #[arg(long, default_value = "127.0.0.1:7380")]
    pub listen: String,
    /// A log to witness, by its signed-note verifier key (kagi's: GET /log/key); repeat for
    /// more. Keys listed one per line in DATA/logs.txt are witnessed too.
    #[arg(long = "log", value_name = "VKEY")]
    pub logs: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// List the CAs.
    List,
    /// Show a CA; with -o, write its certificate (PEM).
    Show {
        name: String,
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
    /// Create a root CA whose key is generated inside the HSM (needs the policy's approvals).
    CreateRoot(CaCreateArgs),
    /// Create an intermediate CA under a root (needs the policy's approvals).
    CreateIntermediate {
        #[command(flatten)]
        ca: CaCreateArgs,
        /// The CA that signs it.
        #[arg(long)]
        parent: String,
    },
    /// Revoke a CA (needs the policy's approvals); its parent's CRL lists it.
    RevokeCa {
        name: String,
        /// RFC 5280 reason: keyCompromise, cACompromise, superseded, cessationOfOperation, ...
        #[arg(long, default_value = "unspecified")]
        reason: String,
        #[arg(long)]
        approval: Option<String>,
    },
    /// List the certificate profiles (the same as 'kagi ca profile list').
    Profiles,
    /// Certificate profiles: list, show, and add your own (officers; behind the quorum).
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Issue one certificate for a CSR file (PEM or DER).
    Issue {
        /// The CSR file.
        csr: PathBuf,
        #[arg(long)]
        profile: String,
        /// Issuing CA (default: devices for device, code-signing for code-signing and
        /// timestamping, services for tls-server and ocsp-signing).
        #[arg(long)]
        ca: Option<String>,
        /// Validity in days, or "forever" (profiles that allow it).
        #[arg(long)]
        days: Option<String>,
        /// Write the certificate here (PEM) instead of stdout.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// Also write the CA chain after the certificate.
        #[arg(long)]
        chain: bool,
        /// Issue although the CSR's device serial number has a live certificate for another key
        /// (officers only; the audit record names the certificate it takes the serial from).
        #[arg(long)]
        override_serial_in_use: bool,
    },
    /// Issue a certificate for every CSR (*.csr, *.pem, *.der) in DIR, with a progress bar.
    /// Each certificate is written next to its CSR as NAME.crt; refusals are listed.
    IssueBatch {
        dir: PathBuf,
        #[arg(long)]
        profile: String,
        #[arg(long)]
        ca: Option<String>,
        #[arg(long)]
        days: Option<String>,
        /// Where to write the certificates (default: DIR).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke an issued certificate; its CA's CRL is regenerated at once.
    Revoke {
        serial: String,
        /// RFC 5280 reason: keyCompromise, affiliationChanged, superseded, cessationOfOperation, ...
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// List certificates a CA issued, newest first.
    Certs {
        ca: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// The next page: the serial 'kagi ca certs' printed as "next page".
        #[arg(long)]
        before: Option<String>,
    },
    /// Fetch a CA's current CRL (DER) from the service.
    Crl {
        ca: String,
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
    },
}

/// `kagi ca profile ...`.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// List the built-in profiles and your partition's own.
    List,
    /// Print a profile's spec: TOML, which 'kagi ca profile add' reads back, or the service's
    /// JSON with --output json.
    Show { name: String },
    /// Add a profile from FILE (TOML or JSON, the fields of ca/profiles/builtin.toml), or
    /// replace your custom profile of the same name. Built-in profiles cannot be replaced.
    /// Officers only; the change is audited with the whole spec and waits for the quorum.
    Add {
        file: PathBuf,
        /// The id of the approved request, once the quorum approved it.
        #[arg(long)]
        approval: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct CaCreateArgs {
    /// Short name of the CA (URLs use it: /crl/NAME.crl).
    #[arg(long)]
    pub name: String,
    /// RFC 4514 subject, e.g. "CN=Example Device CA,O=Example".
    #[arg(long)]
    pub subject: String,
    /// ec-p256, ec-p384, rsa-2048, rsa-3072 or rsa-4096.
    #[arg(long, default_value = "ec-p256")]
    pub alg: String,
    #[arg(long)]
    pub days: Option<i64>,
    /// The id of the approved request, once the quorum approved it.
    #[arg(long)]
    pub approval: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Create an identity; its token is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// person, pipeline or line.
        #[arg(long)]
        kind: String,
        /// Comma-separated roles; default: user for pipelines and lines, officer,user for people.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// RFC 3339 time after which the token is refused.
        #[arg(long)]
        expires: Option<String>,
        /// Partition (administrators only); default: yours.
        #[arg(long)]
        partition: Option<String>,
        /// A TLS client certificate (PEM or DER) that also authenticates this identity.
        #[arg(long)]
        client_cert: Option<PathBuf>,
        /// Under a quorum: the approved request that allows the administrator or officer role.
        #[arg(long)]
        approval: Option<String>,
    },
    /// Set your own console password (persons only): at a terminal typed twice without echo,
    /// otherwise read as one line from standard input; the token in KAGI_TOKEN says whose. The
    /// console at /ui signs in with name + password.
    SetPassword,
    /// List identities of your partition.
    List,
    /// Revoke an identity's token for good (by id, from 'kagi identity list'). Under a quorum,
    /// revoking an approver or an administrator needs an approved request.
    Revoke {
        id: String,
        /// The approved request's id.
        #[arg(long)]
        approval: Option<String>,
    },
    /// Unlock a locked identity (by id). Failed logins lock nothing; a lock comes from an older
    /// version or the database.
    Unlock { id: String },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy document offline: schema, rules and fields, with the line of any error.
    Validate { file: PathBuf },
    /// Submit a document as a new version (validated by the service first).
    Submit { file: PathBuf },
    /// List versions.
    List,
    /// Print one version; without one, the policy in force (version 0 is the built-in
    /// bootstrap policy, in force until a version is activated).
    Show { version: Option<i64> },
    /// Activate a version (under a quorum: files an approval request with the diff).
    Activate { version: i64 },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalCommand {
    /// List requests.
    List,
    /// Show one request: what it would change and who approved.
    Show {
        id: String,
        /// For an executed export you requested: write the wrapped key here.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
    /// Approve a request (a named officer other than the requester).
    Approve { id: String },
    /// Reject a request (a named officer), or withdraw your own.
    Reject { id: String },
}

#[derive(Debug, Subcommand)]
pub enum PartitionCommand {
    /// Create a partition; then 'kagi credential create --partition NAME' gives it users.
    Create { name: String },
    /// List the partitions.
    List,
}

/// Every setting of `kagi serve` also has an environment variable and a config-file key (shown
/// in brackets); a flag wins over the environment, the environment over the file, the file over
/// the default. The variables are read by `kagi serve` alone.
#[derive(Debug, Args, Default)]
#[command(
    after_help = "Each setting is a flag, an environment variable and a config-file key (in brackets). \
A flag wins over the environment variable, which wins over the --config file, which wins over the default. \
'kagi serve --print-config' shows the result and where each value came from."
)]
pub struct ServeArgs {
    /// Data folder (SQLite database, TLS material, development secrets). Default ./kagi-data
    /// [env KAGI_DATA, config "data"]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Database URL (postgres://...); default is SQLite at <data>/kagi.db
    /// [env KAGI_DATABASE_URL, config "database_url"]
    #[arg(long)]
    pub database_url: Option<String>,
    /// Address to listen on for HTTPS. Default 127.0.0.1:8443 [env KAGI_LISTEN, config "listen"]
    #[arg(long)]
    pub listen: Option<String>,
    /// A name clients reach the service by (DNS name or IP address; repeat for more): put in the
    /// TLS certificate beside the loopback names; the first one is used in the banner and the
    /// default public URL [env KAGI_HOSTNAME, comma-separated; config "hostnames", a list]
    #[arg(long = "hostname", value_name = "NAME")]
    pub hostnames: Vec<String>,
    /// Plain-HTTP address for CRLs, CA certificates and OCSP ("off" disables).
    /// Default 127.0.0.1:8080 [env KAGI_PUBLIC_LISTEN, config "public_listen"]
    #[arg(long)]
    pub public_listen: Option<String>,
    /// Base URL put in certificates' CRL and OCSP pointers. Default http://<first hostname>:<public
    /// port>, else http://<public listen address> [env KAGI_PUBLIC_URL, config "public_url"]
    #[arg(long)]
    pub public_url: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM, leaf first) instead of one kagi issues;
    /// needs --tls-key [env KAGI_TLS_CERT, config "tls_cert"]
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, SEC1 or RSA) of --tls-cert [env KAGI_TLS_KEY, config "tls_key"]
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA that certifies signing keys. Default code-signing [env KAGI_SIGNING_CA, config "signing_ca"]
    #[arg(long, value_name = "CA")]
    pub signing_ca: Option<String>,
    /// Policy OID the TSA puts in time-stamp tokens when the request names none.
    /// Default 1.3.6.1.4.1.32473.1 [env KAGI_TSA_POLICY_OID, config "tsa_policy_oid"]
    #[arg(long, value_name = "OID")]
    pub tsa_policy_oid: Option<String>,
    /// CA EST enrollments use. Default devices [env KAGI_EST_CA, config "est_ca"]
    #[arg(long, value_name = "CA")]
    pub est_ca: Option<String>,
    /// Profile EST enrollments use. Default device [env KAGI_EST_PROFILE, config "est_profile"]
    #[arg(long, value_name = "PROFILE")]
    pub est_profile: Option<String>,
    /// Refused logins one source address may make before back-off starts. Default 10
    /// [env KAGI_MAX_FAILED_LOGINS, config "max_failed_logins"]
    #[arg(long, value_name = "N")]
    pub max_failed_logins: Option<i64>,
    /// Seconds over which refused logins are audited as one record per source. Default 60
    /// [env KAGI_FAILED_LOGIN_WINDOW_SECS, config "failed_login_window_secs"]
    #[arg(long, value_name = "SECS")]
    pub failed_login_window_secs: Option<u64>,
    /// Seconds a person's console password stays locked after 5 wrong passwords in a row
    /// (their token keeps working). Default 900
    /// [env KAGI_CONSOLE_LOCK_SECS, config "console_lock_secs"]
    #[arg(long, value_name = "SECS")]
    pub console_lock_secs: Option<u64>,
    /// Serve transparency-log entry bodies to anyone (an open-source project's public log).
    /// Without it an entry needs an auditor's credential or that of the identity it names;
    /// checkpoints and proofs are public either way
    /// [env KAGI_LOG_ENTRIES_PUBLIC=true|false, config "log_entries_public"]
    #[arg(long)]
    pub log_entries_public: bool,
    /// Answer anonymous RFC 3161 requests at /tsa, within a per-source rate limit (default: the
    /// TSA needs a credential) [env KAGI_OPEN_TSA=true|false, config "open_tsa"]
    #[arg(long)]
    pub open_tsa: bool,
    /// A witness that must cosign the transparency log before results are released, as
    /// URL=VKEY (the witness's cosignature verifier key, `kagi witness key` prints it);
    /// repeat for each witness. Without witnesses a restored database is not detected
    /// [env KAGI_WITNESSES (comma or space separated), config "witnesses" (a list)]
    #[arg(long = "witness", value_name = "URL=VKEY")]
    pub witnesses: Vec<String>,
    /// Cosignatures needed before a result is released. Default: every witness
    /// [env KAGI_WITNESS_QUORUM, config "witness_quorum"]
    #[arg(long, value_name = "K")]
    pub witness_quorum: Option<usize>,
    /// Seconds a caller waits for the witnesses' quorum before it gets 503
    /// witness_unavailable (the use stays counted). Default 10
    /// [env KAGI_WITNESS_TIMEOUT, config "witness_timeout"]
    #[arg(long, value_name = "SECS")]
    pub witness_timeout: Option<u64>,
    /// Forward every audit record to this syslog collector as RFC 5424 over TLS (RFC 5425),
    /// at least once and in sequence order, as tls://HOST:PORT (port 6514 by default); needs
    /// --syslog-ca [env KAGI_SYSLOG, config "syslog"]
    #[arg(long, value_name = "tls://HOST:PORT")]
    pub syslog: Option<String>,
    /// PEM file of the CA that issued the syslog collector's certificate (the only CA trusted
    /// for it) [env KAGI_SYSLOG_CA, config "syslog_ca"]
    #[arg(long, value_name = "FILE")]
    pub syslog_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) kagi presents to a syslog collector that requires
    /// one (mutual TLS); needs --syslog-key [env KAGI_SYSLOG_CERT, config "syslog_cert"]
    #[arg(long, value_name = "FILE")]
    pub syslog_cert: Option<PathBuf>,
    /// Private key (PEM) of --syslog-cert [env KAGI_SYSLOG_KEY, config "syslog_key"]
    #[arg(long, value_name = "FILE")]
    pub syslog_key: Option<PathBuf>,
    /// HOSTNAME in forwarded messages. Default: the first --hostname, else the machine's name
    /// [env KAGI_SYSLOG_HOSTNAME, config "syslog_hostname"]
    #[arg(long, value_name = "NAME")]
    pub syslog_hostname: Option<String>,
    /// JSON file with any of the settings above, by their config keys
    /// (e.g. {"data": "/srv/kagi", "hostnames": ["kagi.example.com"]}) [env KAGI_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective settings as JSON, with where each came from, and exit without
    /// starting or touching the data folder (a database password is shown as ***)
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Number of unseal shares to create.
    #[arg(long)]
    pub shares: usize,
    /// Number of shares needed to unseal.
    #[arg(long)]
    pub threshold: usize,
    /// Data folder holding the SQLite database. Default ./kagi-data
    #[arg(long, conflicts_with = "database_url")]
    pub data: Option<PathBuf>,
    /// Database URL (postgres://...).
    #[arg(long)]
    pub database_url: Option<String>,
    /// The custodians' age public keys, one file each ("age1..."), as many as --shares: share
    /// N is encrypted to the Nth file's key and written to --share-dir; no share is printed.
    #[arg(long, num_args = 1..)]
    pub share_recipients: Vec<PathBuf>,
    /// Where the encrypted shares go (share-1.age, share-2.age, ...).
    #[arg(long, default_value = "kagi-shares", requires = "share_recipients")]
    pub share_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct UnsealArgs {
    /// File holding one share line, or an age-encrypted share (with --identity); without it the
    /// share is read from standard input.
    #[arg(long)]
    pub share_file: Option<PathBuf>,
    /// The custodian's age identity file ("AGE-SECRET-KEY-1..."): the share file is decrypted
    /// here, and only the share is sent.
    #[arg(long, requires = "share_file")]
    pub identity: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// A quorum of unseal shares unlocks an administrator credential, or gives it a new token
    /// (printed once; the old one stops working). Works while every administrator is locked out.
    Recover(RecoverArgs),
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Name of the administrator credential (e.g. "admin").
    #[arg(long)]
    pub credential: String,
    /// Replace the credential's secret instead of only unlocking it.
    #[arg(long)]
    pub new_token: bool,
    /// Files each holding one share line, or an age-encrypted share (repeat); without them the
    /// shares are read from standard input, one per line, up to an empty line or the end.
    #[arg(long = "share-file")]
    pub share_files: Vec<PathBuf>,
    /// Age identity files that decrypt the encrypted share files (repeat: each file is tried
    /// with every identity).
    #[arg(long, requires = "share_files")]
    pub identity: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a key inside the HSM.
    Create(KeyCreateArgs),
    /// List the keys of your partition.
    List,
    /// Show one key's attributes, usage count and limit.
    Show { name: String },
    /// Destroy a key.
    Destroy { name: String },
    /// Disable a key: it signs nothing (error key_suspended) until 'kagi key enable'. Officers;
    /// audited. The key's state reads "suspended".
    #[command(alias = "suspend")]
    Disable { name: String },
    /// Enable a disabled (suspended) key again. Officers; audited.
    #[command(alias = "resume")]
    Enable { name: String },
    /// Deactivate a key for good (SP 800-57): it signs nothing more (error key_deactivated)
    /// and still verifies. Officers; audited; no way back.
    Deactivate { name: String },
    /// Mark a key compromised for good: it signs and verifies nothing more (error
    /// key_compromised); only destroying it is left. Officers, behind the policy's quorum if
    /// it has one; audited with the reason.
    Compromise {
        name: String,
        /// Why the key is compromised (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Make a new version of a key under the same name (officers): new signatures use it,
    /// the old version is deactivated (verify only) in the same audited change, and a
    /// code-signing certificate of the old version is re-issued for the new one (same CA,
    /// same subject). The usage limit counts per name unless the key was created with
    /// --limit-per version.
    Rotate { name: String },
    /// Print a key's public key (PEM).
    Public {
        name: String,
        /// An earlier version (see 'kagi key show'): its public key checks the signatures it
        /// made before the key was rotated. Default: the current version.
        #[arg(long)]
        version: Option<i64>,
        /// Write the PEM here instead of standard output.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
    /// Import a private key, wrapped locally for the HSM (RSA-OAEP-SHA256 + AES-KWP).
    Import(KeyImportArgs),
    /// Give a signing key a code-signing certificate from the signing CA (for CMS signatures).
    Certify {
        name: String,
        /// RFC 4514 subject; default "CN=<name>,O=kagi".
        #[arg(long)]
        subject: Option<String>,
        /// Validity in days (the code-signing profile allows up to 1095).
        #[arg(long)]
        days: Option<i64>,
        /// Write the certificate (PEM) here instead of standard output.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// Also write the CA chain after the certificate.
        #[arg(long)]
        chain: bool,
    },
    /// Print a signing key's current certificate (PEM).
    Cert {
        name: String,
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        #[arg(long)]
        chain: bool,
    },
    /// Wrap a private key (PKCS#8) to the partition's import key, to keep it outside and sign
    /// with 'kagi sign --wrapped-key'. Nothing is stored in the HSM.
    Wrap {
        /// The private key as PKCS#8, DER or PEM.
        #[arg(long)]
        pkcs8: PathBuf,
        /// Where to write the wrapped key.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
    },
    /// Change the own password of a key created with --key-auth; needs the current one. Both
    /// are asked for at the terminal unless given as files (first line).
    SetAuth {
        name: String,
        /// The current password is this file's first line.
        #[arg(long)]
        key_auth_file: Option<PathBuf>,
        /// The new password is this file's first line.
        #[arg(long)]
        new_key_auth_file: Option<PathBuf>,
    },
    /// Change a key's usage limit; raising it needs M-of-N approval under a quorum policy.
    SetLimit {
        name: String,
        /// The new limit; omit for unlimited.
        #[arg(long)]
        usage_limit: Option<i64>,
    },
    /// Export an exportable-under-wrap key, wrapped under a trusted wrapping key.
    ExportWrapped {
        name: String,
        /// Label of the trusted wrapping key.
        #[arg(long)]
        wrapping_key: String,
        /// Where to write the wrapped key bytes.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
    },
}

/// Attributes shared by `key create` and `key import`.
#[derive(Debug, Args)]
pub struct KeyAttrArgs {
    /// Allowed number of uses; unlimited when absent.
    #[arg(long)]
    pub usage_limit: Option<i64>,
    /// Start of the signing period (SP 800-57 originator usage period), RFC 3339 (e.g.
    /// 2030-01-01T00:00:00Z): before it the key is in pre-activation and signs nothing.
    #[arg(long, alias = "sign-from")]
    pub not_before: Option<String>,
    /// End of the signing period, RFC 3339: after it the key is deactivated and only
    /// verifies.
    #[arg(long, alias = "sign-until")]
    pub not_after: Option<String>,
    /// End of the verification period (recipient usage period), RFC 3339, no earlier than
    /// --not-after: after it the key verifies nothing (key_verification_period_over).
    #[arg(long)]
    pub verify_until: Option<String>,
    /// Allow export, only wrapped under a trusted wrapping key.
    #[arg(long)]
    pub exportable_under_wrap: bool,
    /// Mark as a trusted wrapping key (RSA with the wrap operation).
    #[arg(long)]
    pub trusted: bool,
    /// Comma-separated operations: sign, verify, wrap. Default sign,verify.
    #[arg(long, value_delimiter = ',')]
    pub operations: Option<Vec<String>>,
    /// Per-key authorization: every use of the key needs its own password (at least 8
    /// characters), on top of the caller's login. Asked for at the terminal (twice), or read
    /// from --key-auth-file. A lost key password is a lost key: kagi keeps no copy.
    #[arg(long)]
    pub key_auth: bool,
    /// With --key-auth: the key's password is this file's first line.
    #[arg(long, requires = "key_auth")]
    pub key_auth_file: Option<PathBuf>,
    /// What the usage limit counts once the key is rotated: 'name' (default: every version's
    /// uses together, so rotating does not reset it) or 'version' (each version from 0).
    /// Sealed with the key: fixed at creation.
    #[arg(long, value_parser = ["name", "version"])]
    pub limit_per: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    #[arg(long)]
    pub name: String,
    /// ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519
    #[arg(long)]
    pub alg: String,
    #[command(flatten)]
    pub attrs: KeyAttrArgs,
}

#[derive(Debug, Args)]
pub struct KeyImportArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub alg: String,
    /// The private key as PKCS#8, DER or PEM ("-----BEGIN PRIVATE KEY-----").
    #[arg(long)]
    pub pkcs8: PathBuf,
    #[command(flatten)]
    pub attrs: KeyAttrArgs,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Label of a key in the HSM.
    #[arg(
        long,
        required_unless_present = "wrapped_key",
        conflicts_with = "wrapped_key"
    )]
    pub key: Option<String>,
    /// A key kept outside, wrapped with 'kagi key wrap' (needs --alg).
    #[arg(long, requires = "alg")]
    pub wrapped_key: Option<PathBuf>,
    /// Algorithm of the --wrapped-key.
    #[arg(long)]
    pub alg: Option<String>,
    /// Signature format: raw (the bare signature), cms (detached CMS SignedData, DER, with
    /// the key's certificate chain: the key needs 'kagi key certify' first) or sigstore (a
    /// Sigstore bundle, JSON, with a short-lived certificate naming you and its log entry;
    /// ECDSA keys only).
    #[arg(long, default_value = "raw")]
    pub format: String,
    /// With --format cms or sigstore: add an RFC 3161 timestamp of the signature from kagi's
    /// TSA.
    #[arg(long)]
    pub timestamp: bool,
    /// File to sign.
    pub file: PathBuf,
    /// Where to write the signature.
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// sha256, sha384 or sha512; default: sha256 for every key type.
    #[arg(long)]
    pub digest: Option<String>,
    /// RSA padding: pkcs1 (default) or pss.
    #[arg(long)]
    pub padding: Option<String>,
    /// The key's own password (a key created with --key-auth) is this file's first line.
    #[arg(long)]
    pub key_auth_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit log's Merkle tree and check its signed checkpoint.
    Verify,
    /// Write every audit record as JSON lines.
    Export {
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Create a credential; its token is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated roles: administrator, officer, user, auditor.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// Partition of the new credential (administrators only); default: yours.
        #[arg(long)]
        partition: Option<String>,
    },
    /// List the credentials of your partition.
    List,
}
