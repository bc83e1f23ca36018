//! The console at /ui over a real socket, driven by curl as a browser would be: the session
//! cookie's flags, the CSRF checks, roles, the security headers, and the password lock that
//! ends on its own while the identity's token keeps working.

use crate::common;

use common::{stderr, Server};
use std::io::Write;
use std::process::{Command, Stdio};

use diesel::{Connection, RunQueryDsl};
use kagi_hsm_core::store::AnyConnection;

struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    /// The value of cookie `name` this answer sets.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.header("set-cookie").into_iter().find_map(|c| {
            let first = c.split(';').next()?.trim().to_string();
            let (k, v) = first.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }

    /// The CSRF token of the first form on the page.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in:\n{}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

/// One request with curl: method, path, a Cookie header, a url-encoded form body.
fn call(server: &Server, method: &str, path: &str, cookie: &str, form: &[(&str, &str)]) -> Answer {
    let mut args: Vec<String> = vec![
        "-s".into(),
        "--cacert".into(),
        "kagi-data/tls-ca.pem".into(),
        "-D".into(),
        "-".into(),
        "-X".into(),
        method.into(),
    ];
    if !cookie.is_empty() {
        args.push("-H".into());
        args.push(format!("Cookie: {cookie}"));
    }
    for (k, v) in form {
        args.push("--data-urlencode".into());
        args.push(format!("{k}={v}"));
    }
    args.push(format!("{}{}", server.http_base(), path));
    let out = Command::new("curl")
        .args(&args)
        .current_dir(server.root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {method} {path}: {}",
        stderr(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    Answer {
        status,
        headers: headers.to_string(),
        body: body.to_string(),
    }
}

const LOGIN: &str = "__Host-kagi-login";
const SESSION: &str = "__Host-kagi-console";

/// Signs `name` in through the form; returns the session cookie header value.
fn sign_in(server: &Server, name: &str, password: &str) -> Result<String, Answer> {
    let page = call(server, "GET", "/ui", "", &[]);
    assert_eq!(page.status, 200);
    let login = page.set_cookie(LOGIN).expect("a login cookie");
    let token = page.csrf();
    let a = call(
        server,
        "POST",
        "/ui/login",
        &format!("{LOGIN}={login}"),
        &[("csrf", &token), ("name", name), ("password", password)],
    );
    match (a.status, a.set_cookie(SESSION)) {
        (303, Some(id)) => Ok(format!("{SESSION}={id}")),
        _ => Err(a),
    }
}

fn person(server: &Server, name: &str, roles: &str, password: &str) -> String {
    let token = server
        .kagi_ok(&[
            "identity", "create", "--name", name, "--kind", "person", "--roles", roles,
        ])
        .trim()
        .to_string();
    set_password(server, &token, password);
    token
}

/// `kagi identity set-password`, the password on standard input.
fn set_password(server: &Server, token: &str, password: &str) -> std::process::Output {
    let mut child = Command::new(common::KAGI)
        .args(["identity", "set-password"])
        .current_dir(server.root())
        .env("KAGI_URL", server.http_base())
        .env("KAGI_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn console_sessions_csrf_roles_and_headers() {
    let server = Server::start();
    let ann_token = person(&server, "ann", "officer,user", "ann-long-passphrase");
    person(&server, "audrey", "auditor", "audrey-long-passphrase");

    // Passwords: persons only, long enough.
    let short = set_password(&server, &ann_token, "short");
    assert!(!short.status.success());
    assert!(stderr(&short).contains("bad_request"), "{}", stderr(&short));
    let line = server
        .kagi_ok(&["identity", "create", "--name", "line1", "--kind", "line"])
        .trim()
        .to_string();
    let refused = set_password(&server, &line, "a-line-has-no-password");
    assert!(
        stderr(&refused).contains("only persons"),
        "{}",
        stderr(&refused)
    );

    // The sign-in page: headers, and the login form's own cookie.
    let page = call(&server, "GET", "/ui", "", &[]);
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").join(" ");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), ["DENY"]);
    assert_eq!(page.header("x-content-type-options"), ["nosniff"]);
    assert!(page.body.contains("/api/v1"));

    // A sign-in without the login form's cookie is refused (login CSRF).
    let forged = call(
        &server,
        "POST",
        "/ui/login",
        "",
        &[
            ("csrf", &page.csrf()),
            ("name", "ann"),
            ("password", "ann-long-passphrase"),
        ],
    );
    assert_eq!(forged.status, 403);
    assert!(forged.set_cookie(SESSION).is_none());

    // Signed in: the cookie's flags.
    let login = call(&server, "GET", "/ui", "", &[]);
    let a = call(
        &server,
        "POST",
        "/ui/login",
        &format!("{LOGIN}={}", login.set_cookie(LOGIN).unwrap()),
        &[
            ("csrf", &login.csrf()),
            ("name", "ann"),
            ("password", "ann-long-passphrase"),
        ],
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let set = a
        .header("set-cookie")
        .into_iter()
        .find(|c| c.starts_with(SESSION))
        .unwrap();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    let id = a.set_cookie(SESSION).unwrap();
    assert_eq!(id.len(), 64);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    let ann = format!("{SESSION}={id}");

    // The header says who, with roles; a wrong cookie is nobody.
    let overview = call(&server, "GET", "/ui", &ann, &[]);
    assert!(
        overview.body.contains("Signed in as <strong>ann</strong>"),
        "{}",
        overview.body
    );
    assert!(overview.body.contains("officer, user"));
    assert!(overview.body.contains("Sign out"));
    let nobody = call(
        &server,
        "GET",
        "/ui",
        &format!("{SESSION}={}", "0".repeat(64)),
        &[],
    );
    assert!(nobody.body.contains("action=\"/ui/login\""));

    // A form without its CSRF token, or with another session's, is refused and changes nothing.
    let keys = call(&server, "GET", "/ui/keys", &ann, &[]);
    let ann_csrf = keys.csrf();
    let no_token = call(
        &server,
        "POST",
        "/ui/keys",
        &ann,
        &[("name", "sneaky"), ("alg", "ec-p256"), ("usage_limit", "5")],
    );
    assert_eq!(no_token.status, 403);
    assert!(no_token.body.contains("csrf_rejected"));
    assert!(!server.kagi_ok(&["key", "list"]).contains("sneaky"));

    // With it: the key is made by the same path as the API, and the page shows 0/5.
    let made = call(
        &server,
        "POST",
        "/ui/keys",
        &ann,
        &[
            ("csrf", &ann_csrf),
            ("name", "k5"),
            ("alg", "ec-p256"),
            ("usage_limit", "5"),
        ],
    );
    assert_eq!(made.status, 201, "{}", made.body);
    assert!(made.body.contains("data-key=\"k5\">0/5<"), "{}", made.body);
    assert!(server.kagi_ok(&["key", "list"]).contains("k5"));
    // Validity and exportability from the form reach the key's sealed attributes.
    let made = call(
        &server,
        "POST",
        "/ui/keys",
        &ann,
        &[
            ("csrf", &ann_csrf),
            ("name", "kx"),
            ("alg", "ec-p384"),
            ("not_after", "2030-06-30"),
            ("exportable", "on"),
        ],
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let http = server.http();
    let token = server.token();
    let kx = http
        .request("GET", "/api/v1/keys/kx", Some(&token), None)
        .json();
    assert_eq!(kx["exportable_under_wrap"], true, "{kx}");
    assert_eq!(kx["not_after"], 1_909_094_399, "{kx}");
    assert_eq!(kx["usage_limit"], serde_json::Value::Null);
    // The public key download is the API's PEM.
    let pem = call(&server, "GET", "/ui/keys/k5/public.pem", &ann, &[]);
    assert_eq!(pem.status, 200);
    let api = http.request("GET", "/api/v1/keys/k5/public", Some(&token), None);
    assert_eq!(pem.body, api.body);
    assert!(pem.body.starts_with("-----BEGIN PUBLIC KEY-----"));

    // CAs: the hierarchy, a certificate found by subject, revoked with a reason.
    server.kagi_ok(&[
        "key",
        "certify",
        "k5",
        "--subject",
        "CN=Console Test,O=Acme",
        "-o",
        "k5.pem",
    ]);
    let cas = call(
        &server,
        "GET",
        "/ui/cas?ca=code-signing&subject=Console%20Test",
        &ann,
        &[],
    );
    assert_eq!(cas.status, 200, "{}", cas.body);
    assert!(cas.body.contains("id=\"ca-root\"") && cas.body.contains("id=\"ca-code-signing\""));
    let at = cas
        .body
        .find("id=\"cert-")
        .expect("the certificate is found by subject");
    let serial: String = cas.body[at + "id=\"cert-".len()..]
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    let revoked = call(
        &server,
        "POST",
        &format!("/ui/certificates/{serial}/revoke"),
        &ann,
        &[("csrf", &ann_csrf), ("reason", "keyCompromise")],
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert!(
        revoked.body.contains("was revoked (keyCompromise)"),
        "{}",
        revoked.body
    );
    let cert = http
        .request(
            "GET",
            &format!("/api/v1/certificates/{serial}"),
            Some(&token),
            None,
        )
        .json();
    assert_eq!(cert["revocation_reason"], 1, "{cert}");

    let pem = call(
        &server,
        "GET",
        &format!("/ui/certificates/{serial}/pem"),
        &ann,
        &[],
    );
    assert_eq!(pem.status, 200);
    assert!(
        pem.body.starts_with("-----BEGIN CERTIFICATE-----"),
        "{}",
        pem.body
    );
    let certified = std::fs::read_to_string(server.path("k5.pem")).unwrap();
    assert!(
        certified.contains(pem.body.trim()),
        "the download is not the certificate kagi issued"
    );

    // An administrator makes a line in the console; its token is shown once and works.
    person(&server, "ada", "administrator", "ada-long-passphrase");
    let ada =
        sign_in(&server, "ada", "ada-long-passphrase").unwrap_or_else(|a| panic!("{}", a.body));
    let quotas = call(&server, "GET", "/ui/quotas", &ada, &[]);
    assert_eq!(quotas.status, 200, "{}", quotas.body);
    let made = call(
        &server,
        "POST",
        "/ui/identities",
        &ada,
        &[
            ("csrf", &quotas.csrf()),
            ("name", "line-9"),
            ("kind", "line"),
        ],
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let at = made
        .body
        .find("id=\"new-token\"")
        .expect("the token is shown");
    let rest = &made.body[at..];
    let token9: String = rest[rest.find('>').unwrap() + 1..]
        .chars()
        .take_while(|c| *c != '<')
        .collect();
    assert!(token9.starts_with("kagi_"), "{token9}");
    let out = server.kagi_as(&token9, &["key", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // An officer may look at quotas but not make identities.
    let refused = call(
        &server,
        "POST",
        "/ui/identities",
        &ann,
        &[("csrf", &ann_csrf), ("name", "line-10"), ("kind", "line")],
    );
    assert_eq!(refused.status, 403, "{}", refused.body);

    // Policies: a bad document is refused with its line and stays in the form; a good one is
    // stored, shown against the active one side by side, and activated.
    let people = "rules = '''\n@id(\"people\")\npermit (principal is kagi::Person, action, resource);\n'''\n";
    let bad = format!("{people}bogus = 1\n");
    let refused = call(
        &server,
        "POST",
        "/ui/policies",
        &ann,
        &[("csrf", &ann_csrf), ("text", &bad)],
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("policy_invalid") && refused.body.contains("line 5"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("bogus = 1"), "the draft was not kept");
    let stored = call(
        &server,
        "POST",
        "/ui/policies",
        &ann,
        &[("csrf", &ann_csrf), ("text", people)],
    );
    assert_eq!(stored.status, 201, "{}", stored.body);
    assert!(
        stored.body.contains("Stored as version 1"),
        "{}",
        stored.body
    );
    assert!(stored.body.contains("class=\"added\""), "{}", stored.body);
    let activated = call(
        &server,
        "POST",
        "/ui/policies/1/activate",
        &ann,
        &[("csrf", &ann_csrf)],
    );
    assert_eq!(activated.status, 200, "{}", activated.body);
    assert!(activated.body.contains("Policy version 1 is now active."));

    // An auditor: no create controls, a forged create is 403 even with a valid token, and the
    // audit page verifies.
    let audrey = sign_in(&server, "audrey", "audrey-long-passphrase")
        .unwrap_or_else(|a| panic!("{}", a.body));
    let keys = call(&server, "GET", "/ui/keys", &audrey, &[]);
    assert!(keys.body.contains("k5"));
    assert!(!keys.body.contains("action=\"/ui/keys\""));
    assert!(!keys.body.contains("Request destroy"));
    let audrey_csrf = keys.csrf();
    let forged = call(
        &server,
        "POST",
        "/ui/keys",
        &audrey,
        &[
            ("csrf", &audrey_csrf),
            ("name", "audrey-key"),
            ("alg", "ec-p256"),
        ],
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(forged.body.contains("forbidden"), "{}", forged.body);
    // Another session's token is not this one's.
    let crossed = call(
        &server,
        "POST",
        "/ui/keys",
        &audrey,
        &[("csrf", &ann_csrf), ("name", "crossed"), ("alg", "ec-p256")],
    );
    assert_eq!(crossed.status, 403);
    assert!(crossed.body.contains("csrf_rejected"));
    let audit = call(&server, "GET", "/ui/audit", &audrey, &[]);
    assert_eq!(audit.status, 200);
    assert!(
        audit.body.contains("Verified through record"),
        "{}",
        audit.body
    );
    // An officer without the auditor role does not read the log.
    assert_eq!(call(&server, "GET", "/ui/audit", &ann, &[]).status, 403);

    // Sign out ends the session on the server, not only in the browser.
    let out = call(&server, "POST", "/ui/logout", &ann, &[("csrf", &ann_csrf)]);
    assert_eq!(out.status, 303);
    let after = call(&server, "GET", "/ui/keys", &ann, &[]);
    assert_eq!(after.status, 303);

    // Everything was audited under the people's names.
    server.kagi_ok(&["audit", "export", "-o", "audit.jsonl"]);
    let log = std::fs::read_to_string(server.path("audit.jsonl")).unwrap();
    let has = |actor: &str, action: &str| {
        log.lines().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["actor"] == actor && v["action"] == action
        })
    };
    assert!(has("default:ann", "auth.login_password"));
    assert!(has("default:ann", "key.generate"));
    assert!(has("default:ann", "credential.password_set"));
    assert!(has("default:ann", "console.csrf"));
}

#[test]
fn five_wrong_passwords_lock_the_password_for_a_while_not_the_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kagi.json"), r#"{"console_lock_secs": 3}"#).unwrap();
    let server = Server::start_in(dir, &["--config", "kagi.json"]);
    let token = person(&server, "bert", "officer,user", "bert-long-passphrase");

    for n in 1..=4 {
        let a = sign_in(&server, "bert", "wrong-passphrase-x").unwrap_err();
        assert_eq!(a.status, 401, "attempt {n}: {}", a.body);
        assert!(a.body.contains("wrong name or password"), "{}", a.body);
    }
    let fifth = sign_in(&server, "bert", "wrong-passphrase-x").unwrap_err();
    assert!(fifth.body.contains("password_locked"), "{}", fifth.body);
    // Locked: the right password is refused too...
    let locked = sign_in(&server, "bert", "bert-long-passphrase").unwrap_err();
    assert!(locked.body.contains("password_locked"), "{}", locked.body);
    // ...but the token is not locked.
    let out = server.kagi_as(&token, &["key", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // An unknown name is told nothing more than a wrong password.
    let unknown = sign_in(&server, "nobody-here", "whatever-passphrase").unwrap_err();
    assert!(unknown.body.contains("wrong name or password"));

    // The lock ends by itself (waiting for it, not timing it).
    let mut signed_in = None;
    for _ in 0..120 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        match sign_in(&server, "bert", "bert-long-passphrase") {
            Ok(cookie) => {
                signed_in = Some(cookie);
                break;
            }
            Err(a) => assert!(a.body.contains("password_locked"), "{}", a.body),
        }
    }
    let cookie = signed_in.expect("the password lock never ended");
    assert!(call(&server, "GET", "/ui", &cookie, &[])
        .body
        .contains("Signed in as"));

    server.kagi_ok(&["audit", "export", "-o", "audit.jsonl"]);
    let log = std::fs::read_to_string(server.path("audit.jsonl")).unwrap();
    assert!(log.contains("auth.password_locked"), "no lock record");
}

/// Whether `cookie` is a signed-in session on `server`.
fn signed_in_as(server: &Server, cookie: &str, name: &str) -> bool {
    call(server, "GET", "/ui", cookie, &[])
        .body
        .contains(&format!("Signed in as <strong>{name}</strong>"))
}

fn lock_out(server: &Server, name: &str, times: usize) -> Answer {
    let mut last = None;
    for _ in 0..times {
        last = Some(sign_in(server, name, "a-wrong-passphrase").unwrap_err());
    }
    last.unwrap()
}

/// A restart on SQLite: the session still signs its person in, the lock still holds, and a
/// database writer who deletes the lock's row does not end it. Deleting a session's row signs
/// it out.
#[test]
fn sessions_and_the_password_lock_survive_a_restart() {
    let server = Server::start();
    person(&server, "sam", "auditor", "sam-long-passphrase");
    person(&server, "bo", "auditor", "bo-long-passphrase");
    let sam =
        sign_in(&server, "sam", "sam-long-passphrase").unwrap_or_else(|a| panic!("{}", a.body));
    assert!(lock_out(&server, "bo", 5).body.contains("password_locked"));

    let db = server.data().join("kagi.db");
    let dir = server.stop();
    let server = Server::start_in(dir, &[]);
    assert!(
        signed_in_as(&server, &sam, "sam"),
        "the restart signed sam out"
    );
    let locked = sign_in(&server, "bo", "bo-long-passphrase").unwrap_err();
    assert!(locked.body.contains("password_locked"), "{}", locked.body);

    // The database writer deletes the lock and the sessions.
    let mut c = AnyConnection::establish(&db.to_string_lossy()).unwrap();
    diesel::sql_query("PRAGMA busy_timeout = 10000")
        .execute(&mut c)
        .unwrap();
    let n = diesel::sql_query("DELETE FROM console_password_failures")
        .execute(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    let locked = sign_in(&server, "bo", "bo-long-passphrase").unwrap_err();
    assert!(locked.body.contains("password_locked"), "{}", locked.body);
    diesel::sql_query("DELETE FROM console_sessions")
        .execute(&mut c)
        .unwrap();
    assert!(!signed_in_as(&server, &sam, "sam"));
}

/// Two `kagi serve` processes on one PostgreSQL database: a session started on one works on
/// the other and ends on both at sign-out; wrong passwords sent to both add up to one lock.
#[test]
fn two_processes_on_one_postgres_share_sessions_and_the_lock() {
    let db = common::Database::create();
    let url = db.url();
    let a = Server::start_in(tempfile::tempdir().unwrap(), &["--database-url", &url]);
    let dir_b = tempfile::tempdir().unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(a.data())
        .arg(dir_b.path().join("kagi-data"))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{}", stderr(&copied));
    let b = Server::start_in(dir_b, &["--database-url", &url]);
    person(&a, "pat", "auditor", "pat-long-passphrase");
    person(&a, "lee", "auditor", "lee-long-passphrase");

    let pat = sign_in(&a, "pat", "pat-long-passphrase").unwrap_or_else(|x| panic!("{}", x.body));
    assert!(
        signed_in_as(&b, &pat, "pat"),
        "process B does not know A's session"
    );
    // The CSRF token is the session's on both.
    let on_a = call(&a, "GET", "/ui/keys", &pat, &[]).csrf();
    let on_b = call(&b, "GET", "/ui/keys", &pat, &[]).csrf();
    assert_eq!(on_a, on_b);
    let out = call(&b, "POST", "/ui/logout", &pat, &[("csrf", &on_b)]);
    assert_eq!(out.status, 303);
    assert!(
        !signed_in_as(&a, &pat, "pat"),
        "signed out on B, still in on A"
    );

    // Three wrong on A, two on B: locked on both.
    assert!(lock_out(&a, "lee", 3)
        .body
        .contains("wrong name or password"));
    assert!(lock_out(&b, "lee", 2).body.contains("password_locked"));
    for s in [&a, &b] {
        let locked = sign_in(s, "lee", "lee-long-passphrase").unwrap_err();
        assert!(locked.body.contains("password_locked"), "{}", locked.body);
    }
}

/// The Keys page's Disable and Enable: CSRF and the officer role are checked by the server, a
/// disabled key refuses `kagi sign` with key_suspended and shows as suspended in the API, the
/// CLI and the page, and a database writer restoring the key's row from before does not
/// enable it.
#[test]
fn disabling_a_key_in_the_console_and_the_cli() {
    let server = Server::start();
    person(&server, "ann", "officer,user", "ann-long-passphrase");
    person(&server, "audrey", "auditor", "audrey-long-passphrase");
    server.kagi_ok(&["key", "create", "--name", "fw", "--alg", "ec-p256"]);
    std::fs::write(server.path("a.bin"), b"firmware").unwrap();
    server.kagi_ok(&["sign", "--key", "fw", "a.bin", "-o", "a.sig"]);
    let db = server.data().join("kagi.db");
    let mut c = AnyConnection::establish(&db.to_string_lossy()).unwrap();
    diesel::sql_query("PRAGMA busy_timeout = 10000")
        .execute(&mut c)
        .unwrap();
    diesel::sql_query("CREATE TABLE snap_fw AS SELECT * FROM keys WHERE label = 'fw'")
        .execute(&mut c)
        .unwrap();

    let ann =
        sign_in(&server, "ann", "ann-long-passphrase").unwrap_or_else(|a| panic!("{}", a.body));
    let keys = call(&server, "GET", "/ui/keys", &ann, &[]);
    assert!(
        keys.body.contains("action=\"/ui/keys/fw/disable\""),
        "{}",
        keys.body
    );
    let csrf = keys.csrf();

    // A stranger, a forged form and an auditor are refused; the key still signs.
    let stranger = call(
        &server,
        "POST",
        "/ui/keys/fw/disable",
        "",
        &[("csrf", &csrf)],
    );
    assert_eq!(stranger.status, 303);
    let forged = call(
        &server,
        "POST",
        "/ui/keys/fw/disable",
        &ann,
        &[("name", "fw")],
    );
    assert_eq!(forged.status, 403);
    assert!(forged.body.contains("csrf_rejected"));
    let audrey = sign_in(&server, "audrey", "audrey-long-passphrase")
        .unwrap_or_else(|a| panic!("{}", a.body));
    let audrey_keys = call(&server, "GET", "/ui/keys", &audrey, &[]);
    assert!(!audrey_keys.body.contains("/disable\""));
    let refused = call(
        &server,
        "POST",
        "/ui/keys/fw/disable",
        &audrey,
        &[("csrf", &audrey_keys.csrf())],
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    server.kagi_ok(&["sign", "--key", "fw", "a.bin", "-o", "a.sig"]);

    // The officer disables it.
    let done = call(
        &server,
        "POST",
        "/ui/keys/fw/disable",
        &ann,
        &[("csrf", &csrf)],
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("suspended (disabled)"), "{}", done.body);
    assert!(done.body.contains("action=\"/ui/keys/fw/enable\""));
    let out = server.kagi(&["sign", "--key", "fw", "a.bin", "-o", "b.sig"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("key_suspended"), "{}", stderr(&out));
    let http = server.http();
    let token = server.token();
    let list = http
        .request("GET", "/api/v1/keys", Some(&token), None)
        .json();
    let fw = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["label"] == "fw")
        .unwrap()
        .clone();
    assert_eq!(fw["state"], "suspended", "{fw}");
    assert!(server.kagi_ok(&["key", "list"]).contains("suspended"));

    // The database writer puts back the row from before: still disabled.
    diesel::sql_query("DELETE FROM keys WHERE label = 'fw'")
        .execute(&mut c)
        .unwrap();
    diesel::sql_query("INSERT INTO keys SELECT * FROM snap_fw")
        .execute(&mut c)
        .unwrap();
    let out = server.kagi(&["sign", "--key", "fw", "a.bin", "-o", "b.sig"]);
    assert!(stderr(&out).contains("key_suspended"), "{}", stderr(&out));
    let fw = http
        .request("GET", "/api/v1/keys/fw", Some(&token), None)
        .json();
    assert_eq!(fw["state"], "suspended", "{fw}");

    // The CLI enables and disables it too.
    let out = server.kagi_ok(&["key", "enable", "fw"]);
    assert!(out.contains("enabled key fw"), "{out}");
    server.kagi_ok(&["sign", "--key", "fw", "a.bin", "-o", "b.sig"]);
    server.kagi_ok(&["key", "disable", "fw"]);
    let out = server.kagi(&["sign", "--key", "fw", "a.bin", "-o", "c.sig"]);
    assert!(stderr(&out).contains("key_suspended"), "{}", stderr(&out));
    let again = server.kagi(&["key", "disable", "fw"]);
    assert!(stderr(&again).contains("conflict"), "{}", stderr(&again));

    server.kagi_ok(&["audit", "export", "-o", "audit.jsonl"]);
    let log = std::fs::read_to_string(server.path("audit.jsonl")).unwrap();
    let actions: Vec<(String, String, String)> = log
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["actor"].as_str().unwrap_or("").to_string(),
                v["action"].as_str().unwrap_or("").to_string(),
                v["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(actions.contains(&("default:ann".into(), "key.suspend".into(), "ok".into())));
    assert!(actions.iter().any(|(_, act, _)| act == "key.resume"));
}

/// The audit page pages by sequence number and keeps its filter; the lines page charts the
/// certificates each identity issued per day; the authenticator page asks for the enrolled
/// one's code to replace it, and an administrator removes a lost one.
#[test]
fn audit_paging_line_chart_and_authenticator_changes() {
    use kagi_hsm_core::totp;
    let server = Server::start();
    person(
        &server,
        "ada",
        "administrator,auditor",
        "ada-long-passphrase",
    );
    person(&server, "tia", "auditor", "tia-long-passphrase");
    let ada =
        sign_in(&server, "ada", "ada-long-passphrase").unwrap_or_else(|a| panic!("{}", a.body));

    // Paging: the newest page has an older link once the log is long enough to need one.
    let page = call(
        &server,
        "GET",
        "/ui/audit?before=5&action=credential",
        &ada,
        &[],
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("records 0 to 4"), "{}", page.body);
    assert!(
        page.body.contains("href=\"/ui/audit?action=credential\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("older →"));
    let page = call(&server, "GET", "/ui/audit?before=5", &ada, &[]);
    assert!(
        page.body.contains("<th scope=\"row\">0</th>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("<th scope=\"row\">4</th>"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<th scope=\"row\">5</th>"));
    let page = call(&server, "GET", "/ui/audit?before=8", &ada, &[]);
    assert!(
        page.body.contains("<th scope=\"row\">7</th>"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<th scope=\"row\">8</th>"));
    let newest = call(&server, "GET", "/ui/audit", &ada, &[]);
    assert!(!newest.body.contains("← newe"), "{}", newest.body);

    // The per-line chart: the admin's certificate appears under its identity.
    let before = call(&server, "GET", "/ui/quotas", &ada, &[]);
    assert_eq!(before.status, 200, "{}", before.body);
    server.kagi_ok(&["key", "create", "--name", "k", "--alg", "ec-p256"]);
    server.kagi_ok(&["key", "certify", "k", "-o", "k.pem"]);
    let after = call(&server, "GET", "/ui/quotas", &ada, &[]);
    // The chart's label lists every day's count: their sum is the admin's certificates.
    let issued = |body: &str| -> i64 {
        let Some(at) = body.find("data-line=\"default:admin\"") else {
            return 0;
        };
        let label = &body[at..];
        let label = &label[label.find("aria-label=\"").unwrap() + 12..];
        let label = &label[..label.find('"').unwrap()];
        label
            .split(", ")
            .filter_map(|d| d.rsplit(": ").next()?.parse::<i64>().ok())
            .sum()
    };
    assert!(
        after.body.contains("data-line=\"default:admin\""),
        "{}",
        after.body
    );
    assert_eq!(
        issued(&after.body),
        issued(&before.body) + 1,
        "{}",
        after.body
    );

    // The authenticator: enrol, then replacing asks for the enrolled one's code.
    let tia =
        sign_in(&server, "tia", "tia-long-passphrase").unwrap_or_else(|a| panic!("{}", a.body));
    let secret_of = |body: &str| {
        let at = body.find("id=\"totp-secret\">").unwrap() + "id=\"totp-secret\">".len();
        let b32: String = body[at..].chars().take_while(|c| *c != '<').collect();
        (b32.clone(), totp::base32_decode(&b32).unwrap())
    };
    let now = || {
        totp::step_at(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
        )
    };
    let code = |s: &[u8], step: i64| format!("{:06}", totp::code(s, step as u64));
    let page = call(&server, "GET", "/ui/totp", &tia, &[]);
    let (b32, first) = secret_of(&page.body);
    let enrolled = call(
        &server,
        "POST",
        "/ui/totp",
        &tia,
        &[
            ("csrf", &page.csrf()),
            ("secret", &b32),
            ("code", &code(&first, now())),
        ],
    );
    assert_eq!(enrolled.status, 200, "{}", enrolled.body);
    assert!(
        enrolled.body.contains("name=\"current\""),
        "{}",
        enrolled.body
    );
    let (b32b, second) = secret_of(&enrolled.body);
    let refused = call(
        &server,
        "POST",
        "/ui/totp",
        &tia,
        &[
            ("csrf", &page.csrf()),
            ("secret", &b32b),
            ("code", &code(&second, now())),
        ],
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("code it shows now"),
        "{}",
        refused.body
    );
    // Signing in now needs the first authenticator's code.
    let needs = sign_in(&server, "tia", "tia-long-passphrase").unwrap_err();
    assert!(needs.body.contains("totp_required"), "{}", needs.body);

    // Tia lost the device: an administrator removes it (CSRF checked), and it is audited.
    let totp_page = call(&server, "GET", "/ui/totp", &ada, &[]);
    assert!(totp_page.body.contains("action=\"/ui/totp/remove-for\""));
    let forged = call(
        &server,
        "POST",
        "/ui/totp/remove-for",
        &ada,
        &[("name", "tia")],
    );
    assert_eq!(forged.status, 403);
    let not_admin = call(
        &server,
        "POST",
        "/ui/totp/remove-for",
        &tia,
        &[("csrf", &page.csrf()), ("name", "tia")],
    );
    assert_eq!(not_admin.status, 403, "{}", not_admin.body);
    let removed = call(
        &server,
        "POST",
        "/ui/totp/remove-for",
        &ada,
        &[("csrf", &totp_page.csrf()), ("name", "tia")],
    );
    assert_eq!(removed.status, 200, "{}", removed.body);
    sign_in(&server, "tia", "tia-long-passphrase").unwrap_or_else(|a| panic!("{}", a.body));
    server.kagi_ok(&["audit", "export", "-o", "audit.jsonl"]);
    let log = std::fs::read_to_string(server.path("audit.jsonl")).unwrap();
    assert!(log
        .lines()
        .any(|l| l.contains("credential.totp_removed") && l.contains("default:ada")));
}

/// At a terminal `kagi identity set-password` reads without echo (a pseudo-terminal made by
/// `script`), asks twice, and refuses two different entries.
#[test]
fn set_password_does_not_echo_at_a_terminal() {
    let server = Server::start();
    let token = server
        .kagi_ok(&[
            "identity", "create", "--name", "eve", "--kind", "person", "--roles", "auditor",
        ])
        .trim()
        .to_string();
    // Each line is typed once its prompt is shown (so echo is already off), as a person would.
    let run = |first: &str, second: &str| -> String {
        let mut child = Command::new("script")
            .args(["-q", "-e", "-c"])
            .arg(format!("{} identity set-password", common::KAGI))
            .arg("/dev/null")
            .current_dir(server.root())
            .env("KAGI_URL", server.http_base())
            .env("KAGI_TOKEN", &token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut out = child.stdout.take().unwrap();
        let reader = {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n) = std::io::Read::read(&mut out, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    seen.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            })
        };
        let mut stdin = child.stdin.take().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        for (prompt, line) in [
            ("new console password:", first),
            ("the same again:", second),
        ] {
            while !seen.lock().unwrap().contains(prompt) {
                if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = writeln!(stdin, "{line}");
        }
        child.wait().unwrap();
        drop(stdin);
        reader.join().unwrap();
        let text = seen.lock().unwrap().clone();
        text
    };
    let text = run("eve-long-passphrase", "another-passphrase");
    assert!(text.contains("differ"), "{text}");
    let text = run("eve-long-passphrase", "eve-long-passphrase");
    assert!(text.contains("console password set for 'eve'"), "{text}");
    assert!(
        !text.contains("eve-long-passphrase"),
        "the password was echoed:\n{text}"
    );
    sign_in(&server, "eve", "eve-long-passphrase").unwrap_or_else(|a| panic!("{}", a.body));
}
