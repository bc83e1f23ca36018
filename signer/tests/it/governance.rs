//! The quorum over people, through the CLI and the real service: under a quorum, one
//! administrator can neither revoke an approver nor make a new officer alone.

use crate::common;

use common::{stderr, Server};

fn request_id(stdout: &str) -> String {
    assert!(stdout.contains("approval required"), "{stdout}");
    stdout
        .split_whitespace()
        .skip_while(|w| *w != "request")
        .nth(1)
        .unwrap()
        .to_string()
}

fn id_of(server: &Server, name: &str) -> String {
    let list = server.kagi_ok(&["identity", "list"]);
    list.lines()
        .find(|l| l.split_whitespace().next() == Some(name) && l.contains("active"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_else(|| panic!("no live identity {name} in:\n{list}"))
        .to_string()
}

#[test]
fn identity_changes_to_approvers_and_officers_wait_for_the_quorum() {
    let server = Server::start();
    let mut tokens = Vec::new();
    for n in ["alice", "bob", "carol"] {
        tokens.push(
            server
                .kagi_ok(&["identity", "create", "--name", n, "--kind", "person"])
                .trim()
                .to_string(),
        );
    }
    let (bob, carol) = (&tokens[1], &tokens[2]);
    std::fs::write(
        server.path("quorum.toml"),
        r#"rules = '''
@id("people")
permit (principal is kagi::Person, action, resource);
'''

[quorum]
approvers = ["alice", "bob", "carol"]
required = 2
"#,
    )
    .unwrap();
    let out = server.kagi_ok(&["policy", "submit", "quorum.toml"]);
    let v = out.trim().rsplit(' ').next().unwrap().to_string();
    server.kagi_ok(&["policy", "activate", &v]);

    // The administrator alone: revoking an approver is held.
    let alice_id = id_of(&server, "alice");
    let held = server.kagi(&["identity", "revoke", &alice_id]);
    assert_eq!(held.status.code(), Some(3), "{}", stderr(&held));
    request_id(&String::from_utf8_lossy(&held.stdout));
    assert_eq!(id_of(&server, "alice"), alice_id, "alice was revoked alone");

    // A new officer is held too, and no token is printed until the quorum approves.
    let create = [
        "identity", "create", "--name", "mallory", "--kind", "person",
    ];
    let out = server.kagi(&create);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let id = request_id(&stdout);
    assert!(!stdout.contains("kagi_"), "a token was printed: {stdout}");
    let mut with_id = create.to_vec();
    with_id.extend(["--approval", &id]);
    let out = server.kagi(&with_id);
    assert!(!out.status.success(), "used before approval");
    for approver in [bob, carol] {
        let out = server.kagi_as(approver, &["approval", "approve", &id]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let token = server.kagi_ok(&with_id);
    assert!(token.trim().starts_with("kagi_"), "{token}");
    // The approved request was used up.
    assert!(!server.kagi(&with_id).status.success());
}
