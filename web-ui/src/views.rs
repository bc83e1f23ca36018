//! The console's pages. Each takes plain view structs the service fills from hsm-core, and
//! returns HTML; maud escapes every interpolated value. Forms that change anything carry the
//! session's CSRF token in a hidden `csrf` field.

use maud::{html, Markup, DOCTYPE};

use crate::STYLESHEET_PATH;

/// Who is signed in, as the header shows them.
pub struct Viewer {
    pub name: String,
    pub partition: String,
    pub roles: Vec<String>,
    pub csrf: String,
}

impl Viewer {
    pub fn has(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Quota use names identities and how hard each works: for the people who run them.
    pub fn may_see_quotas(&self) -> bool {
        self.has("officer") || self.has("auditor") || self.has("administrator")
    }
}

/// A key's row on the keys page and the overview.
pub struct KeyRow {
    pub label: String,
    pub algorithm: String,
    /// `active`, `suspended (disabled)`, `destroyed`, or why it is not usable.
    pub state: String,
    /// Disabled by an officer (hsm-core's `suspended` state): the page offers "Enable".
    pub suspended: bool,
    pub used: i64,
    pub limit: Option<i64>,
    /// Whether the console offers to destroy it (a CA's keys go with their CA, not here).
    pub destroyable: bool,
    /// Which version of the name this is (`kagi key rotate` makes the next one).
    pub version: i64,
}

impl KeyRow {
    /// How close to its limit, 0.0 to 1.0 (no limit: 0).
    pub fn fraction(&self) -> f64 {
        match self.limit {
            Some(l) if l > 0 => (self.used as f64 / l as f64).clamp(0.0, 1.0),
            Some(_) => 1.0,
            None => 0.0,
        }
    }

    pub fn usage_text(&self) -> String {
        match self.limit {
            Some(l) => format!("{}/{}", self.used, l),
            None => format!("{}/∞", self.used),
        }
    }
}

/// An approval request as the approvals page shows it.
pub struct ApprovalRow {
    pub id: String,
    pub change: String,
    pub summary: String,
    pub requested_by: String,
    pub approved_by: Vec<String>,
    pub required: i64,
    pub status: String,
    /// RFC 3339.
    pub expires: String,
}

/// One audit record in the list.
pub struct AuditRow {
    pub seq: i64,
    /// RFC 3339.
    pub time: String,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub detail: String,
}

/// What verifying the audit log found.
pub enum Verification {
    /// Verified through record `through` (0-based sequence of the last record); the newest
    /// checkpoint was signed at `checkpoint_time`.
    Verified {
        through: i64,
        records: i64,
        checkpoint_time: Option<String>,
    },
    /// The first record that failed, and why.
    Broken { seq: Option<i64>, message: String },
}

/// The overview's facts.
pub struct Overview {
    pub sealed: bool,
    /// `ok`, or what is wrong (integrity failure, database unreachable).
    pub health: String,
    pub nearest_limits: Vec<KeyRow>,
    /// `None`: the viewer may not read the approval queue.
    pub pending: Option<Vec<ApprovalRow>>,
    /// Transparency-log entries (signatures and certificates) per day, the last two weeks.
    pub activity: DailyCounts,
}

/// A message at the top of a page.
pub enum Notice {
    Info(String),
    Error(String),
}

fn page(title: &str, viewer: Option<&Viewer>, notice: Option<&Notice>, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · kagi console" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    span class="brand" { "kagi console" }
                    @if let Some(v) = viewer {
                        nav aria-label="Console" {
                            a href="/ui" { "Overview" }
                            a href="/ui/keys" { "Keys" }
                            @if v.has("officer") {
                                a href="/ui/approvals" { "Approvals" }
                            }
                            @if v.has("officer") {
                                a href="/ui/policies" { "Policies" }
                            }
                            @if v.may_see_quotas() {
                                a href="/ui/quotas" { "Lines and quotas" }
                            }
                            a href="/ui/cas" { "CAs" }
                            @if v.has("auditor") {
                                a href="/ui/audit" { "Audit" }
                            }
                        }
                        div class="who" {
                            span id="signed-in-as" {
                                "Signed in as " strong { (v.name) }
                                " (" (v.partition) ") · roles: "
                                span id="roles" { (v.roles.join(", ")) }
                            }
                            a href="/ui/totp" { "Authenticator" }
                            form method="post" action="/ui/logout" class="inline" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    @match notice {
                        Some(Notice::Info(m)) => p class="notice" role="status" { (m) },
                        Some(Notice::Error(m)) => p class="error" role="alert" { (m) },
                        None => {},
                    }
                    (body)
                }
            }
        }
    }
    .into_string()
}

/// The sign-in page (also what `/ui` shows without a session). `login_token` goes into the
/// form and, by the service, into the login cookie.
pub fn login(login_token: &str, error: Option<&str>) -> String {
    let notice = error.map(|e| Notice::Error(e.to_string()));
    page(
        "Sign in",
        None,
        notice.as_ref(),
        html! {
            form method="post" action="/ui/login" class="card" {
                input type="hidden" name="csrf" value=(login_token);
                p {
                    label for="name" { "Name" }
                    input id="name" name="name" type="text" autocomplete="username" required autofocus;
                }
                p {
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="current-password" required;
                }
                p {
                    label for="code" { "One-time code" }
                    input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
                        pattern="[0-9]{6}" aria-describedby="code-help";
                    span id="code-help" class="hint" { "Only if you enrolled an authenticator app." }
                }
                button type="submit" { "Sign in" }
            }
            p class="hint" {
                "People sign in with their name and console password (set it with "
                code { "kagi identity set-password" } " and your token). Programs use the API at "
                code { "/api/v1" } " with a bearer token; its description is "
                code { "/api/v1/openapi.json" } "."
            }
        },
    )
}

/// An SVG bar of `k`'s usage against its limit, with the numbers beside it.
fn usage_bar(k: &KeyRow) -> Markup {
    bar(k.fraction(), &k.usage_text(), "data-key", &k.label)
}

/// A bar filled to `fraction` (0 to 1), with `text` beside it in a span carrying `attr=value`
/// (what tests and people find it by).
fn bar(fraction: f64, text: &str, attr: &str, value: &str) -> Markup {
    const WIDTH: f64 = 160.0;
    let filled = (fraction.clamp(0.0, 1.0) * WIDTH).round();
    let level = match fraction {
        f if f >= 0.9 => "high",
        f if f >= 0.6 => "mid",
        _ => "low",
    };
    html! {
        span class="usage" {
            svg class={"bar " (level)} width="160" height="12" viewBox="0 0 160 12" role="img"
                aria-label={"used " (text)} {
                rect class="track" x="0" y="0" width="160" height="12" {}
                rect class="fill" x="0" y="0" width=(filled) height="12" {}
            }
            " "
            @if attr == "data-key" {
                span class="usage-text" data-key=(value) { (text) }
            } @else {
                span class="usage-text" data-quota=(value) { (text) }
            }
        }
    }
}

/// One window of a policy quota: `total`, `hour` or `day`.
pub struct QuotaWindow {
    pub window: String,
    pub used: i64,
    pub limit: i64,
}

/// A policy quota and its use in each window it limits.
pub struct QuotaRow {
    pub name: String,
    pub identity: String,
    pub action: String,
    pub resource: String,
    pub windows: Vec<QuotaWindow>,
}

/// A pipeline or line identity, for administrators.
pub struct IdentityRow {
    pub name: String,
    pub kind: String,
    pub roles: String,
    pub state: String,
}

/// Entries per day, oldest first: (day as YYYY-MM-DD, count).
pub type DailyCounts = Vec<(String, i64)>;

/// A bar chart of `days` as SVG, drawn here: no script, no library.
fn daily_chart(title: &str, days: &DailyCounts) -> Markup {
    daily_chart_for(title, days, "")
}

/// [`daily_chart`] whose figure carries `data-line` (the identity it counts), when not empty.
fn daily_chart_for(title: &str, days: &DailyCounts, line: &str) -> Markup {
    const W: i64 = 640;
    const H: i64 = 140;
    const TOP: i64 = 10;
    const BOTTOM: i64 = 24;
    let max = days.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let n = days.len().max(1) as i64;
    let slot = W / n;
    let summary = days
        .iter()
        .map(|(d, c)| format!("{d}: {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        figure class="chart" data-line=[(!line.is_empty()).then_some(line)] {
            svg width=(W) height=(H) viewBox={"0 0 " (W) " " (H)} role="img"
                aria-label={(title) ": " (summary)} {
                line class="axis" x1="0" y1=(H - BOTTOM) x2=(W) y2=(H - BOTTOM) {}
                @for (i, (day, count)) in days.iter().enumerate() {
                    @let h = (H - TOP - BOTTOM) * count / max;
                    @let x = i as i64 * slot + 2;
                    rect class="day" x=(x) y=(H - BOTTOM - h) width=(slot - 4) height=(h) {
                        title { (day) ": " (count) }
                    }
                    @if *count > 0 {
                        text class="count" x=(x + (slot - 4) / 2) y=(H - BOTTOM - h - 2) text-anchor="middle" { (count) }
                    }
                    text class="label" x=(x + (slot - 4) / 2) y=(H - 8) text-anchor="middle" { (day.get(5..).unwrap_or(day)) }
                }
            }
            figcaption { (title) " (max " (max) " a day)" }
        }
    }
}

fn keys_table(keys: &[KeyRow], actions: Option<&Viewer>) -> Markup {
    html! {
        table {
            thead {
                tr {
                    th scope="col" { "Key" }
                    th scope="col" { "Algorithm" }
                    th scope="col" { "State" }
                    th scope="col" { "Usage" }
                    @if actions.is_some() { th scope="col" { "Actions" } }
                }
            }
            tbody {
                @for k in keys {
                    tr id={"key-" (k.label)} {
                        th scope="row" {
                            (k.label)
                            @if k.version > 1 {
                                " "
                                span class="small" { "(version " (k.version) ")" }
                            }
                            br;
                            a class="small" href={"/ui/keys/" (k.label) "/public.pem"}
                                aria-label={"Public key of " (k.label) " (PEM)"} { "public key" }
                        }
                        td { (k.algorithm) }
                        td class="state" { (k.state) }
                        td { (usage_bar(k)) }
                        @if let Some(v) = actions {
                            td {
                                @if k.destroyable {
                                    @if k.suspended {
                                        form method="post" action={"/ui/keys/" (k.label) "/enable"} class="inline" {
                                            input type="hidden" name="csrf" value=(v.csrf);
                                            button type="submit" class="secondary" aria-label={"Enable " (k.label)} { "Enable" }
                                        }
                                    } @else {
                                        form method="post" action={"/ui/keys/" (k.label) "/disable"} class="inline" {
                                            input type="hidden" name="csrf" value=(v.csrf);
                                            button type="submit" class="secondary" aria-label={"Disable " (k.label)} { "Disable" }
                                        }
                                    }
                                    " "
                                    form method="post" action={"/ui/keys/" (k.label) "/destroy"} class="inline" {
                                        input type="hidden" name="csrf" value=(v.csrf);
                                        button type="submit" aria-label={"Request destruction of " (k.label)} { "Request destroy" }
                                    }
                                } @else {
                                    span class="hint" { "CA key" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn approvals_table(rows: &[ApprovalRow], actions: Option<&Viewer>) -> Markup {
    html! {
        table {
            thead {
                tr {
                    th scope="col" { "Request" }
                    th scope="col" { "What it changes" }
                    th scope="col" { "Requested by" }
                    th scope="col" { "Approvals" }
                    th scope="col" { "Status" }
                    th scope="col" { "Expires" }
                    @if actions.is_some() { th scope="col" { "Decide" } }
                }
            }
            tbody {
                @for a in rows {
                    tr id={"approval-" (a.id)} {
                        th scope="row" { code { (a.id) } br; (a.change) }
                        td { (a.summary) }
                        td { (a.requested_by) }
                        td { (a.approved_by.len()) " of " (a.required)
                             @if !a.approved_by.is_empty() { " (" (a.approved_by.join(", ")) ")" } }
                        td class="status" { (a.status) }
                        td { (a.expires) }
                        @if let Some(v) = actions {
                            td {
                                @if a.status == "pending" {
                                    form method="post" action={"/ui/approvals/" (a.id) "/approve"} class="inline" {
                                        input type="hidden" name="csrf" value=(v.csrf);
                                        button type="submit" aria-label={"Approve request " (a.id)} { "Approve" }
                                    }
                                    form method="post" action={"/ui/approvals/" (a.id) "/reject"} class="inline" {
                                        input type="hidden" name="csrf" value=(v.csrf);
                                        button type="submit" class="secondary" aria-label={"Reject request " (a.id)} { "Reject" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn overview(v: &Viewer, o: &Overview, notice: Option<&Notice>) -> String {
    page(
        "Overview",
        Some(v),
        notice,
        html! {
            section aria-labelledby="state-h" class="cards" {
                h2 id="state-h" { "Service" }
                dl {
                    dt { "Seal" } dd id="seal" { @if o.sealed { "sealed" } @else { "unsealed" } }
                    dt { "Health" } dd id="health" { (o.health) }
                }
            }
            section aria-labelledby="activity-h" {
                h2 id="activity-h" { "Signatures and certificates per day" }
                (daily_chart("Transparency-log entries per day, last 14 days", &o.activity))
            }
            section aria-labelledby="limits-h" {
                h2 id="limits-h" { "Keys nearest their limits" }
                @if o.nearest_limits.is_empty() {
                    p { "No key has a usage limit." }
                } @else {
                    (keys_table(&o.nearest_limits, None))
                }
            }
            @if let Some(pending) = &o.pending {
                section aria-labelledby="pending-h" {
                    h2 id="pending-h" { "Pending approvals" }
                    @if pending.is_empty() {
                        p { "Nothing waits for approval." }
                    } @else {
                        (approvals_table(pending, None))
                        p { a href="/ui/approvals" { "Decide on the approvals page" } }
                    }
                }
            }
        },
    )
}

/// Algorithms offered when creating a key, as hsm-core names them.
pub const ALGORITHMS: &[&str] = &[
    "ec-p256", "ec-p384", "ed25519", "rsa-2048", "rsa-3072", "rsa-4096",
];

pub fn keys(v: &Viewer, keys: &[KeyRow], notice: Option<&Notice>) -> String {
    let officer = v.has("officer");
    page(
        "Keys",
        Some(v),
        notice,
        html! {
            @if keys.is_empty() {
                p { "This partition has no keys." }
            } @else {
                (keys_table(keys, officer.then_some(v)))
            }
            @if officer {
                section aria-labelledby="create-h" {
                    h2 id="create-h" { "Create a key" }
                    form method="post" action="/ui/keys" class="card" {
                        input type="hidden" name="csrf" value=(v.csrf);
                        p {
                            label for="key-name" { "Name" }
                            input id="key-name" name="name" type="text" required
                                pattern="[A-Za-z0-9._-]{1,128}" aria-describedby="key-name-help";
                            span id="key-name-help" class="hint" { "Letters, digits, '.', '-' and '_'." }
                        }
                        p {
                            label for="key-alg" { "Algorithm" }
                            select id="key-alg" name="alg" {
                                @for a in ALGORITHMS { option value=(a) { (a) } }
                            }
                        }
                        p {
                            label for="key-limit" { "Usage limit" }
                            input id="key-limit" name="usage_limit" type="number" min="1"
                                aria-describedby="key-limit-help";
                            span id="key-limit-help" class="hint" { "Empty: no limit." }
                        }
                        p {
                            label for="key-not-after" { "Valid until (UTC)" }
                            input id="key-not-after" name="not_after" type="date"
                                aria-describedby="key-not-after-help";
                            span id="key-not-after-help" class="hint" { "Empty: no end." }
                        }
                        p {
                            input id="key-exportable" name="exportable" type="checkbox";
                            " "
                            label for="key-exportable" class="inline-label" { "Exportable under wrap (to a trusted wrapping key only)" }
                        }
                        button type="submit" { "Create key" }
                    }
                }
            }
        },
    )
}

pub fn approvals(v: &Viewer, rows: &[ApprovalRow], notice: Option<&Notice>) -> String {
    page(
        "Approvals",
        Some(v),
        notice,
        html! {
            @if rows.is_empty() {
                p { "No approval requests." }
            } @else {
                (approvals_table(rows, Some(v)))
            }
        },
    )
}

/// A token just made, shown once: the identity's name and the token.
pub struct NewToken {
    pub name: String,
    pub token: String,
}

/// Certificates each identity issued per day (identity as `partition:name`).
pub struct LineActivity {
    pub identity: String,
    pub days: DailyCounts,
}

pub fn quotas(
    v: &Viewer,
    policy_version: i64,
    rows: &[QuotaRow],
    activity: &[LineActivity],
    identities: Option<&[IdentityRow]>,
    new_token: Option<&NewToken>,
    notice: Option<&Notice>,
) -> String {
    page(
        "Lines and quotas",
        Some(v),
        notice,
        html! {
            @if let Some(t) = new_token {
                section aria-labelledby="token-h" class="card wide" {
                    h2 id="token-h" { "Token of " (t.name) }
                    p { strong { "Shown once:" } " store it now (for example as KAGI_TOKEN in the pipeline's secrets). kagi keeps only its hash." }
                    pre id="new-token" class="note" { (t.token) }
                }
            }
            section aria-labelledby="quotas-h" {
                h2 id="quotas-h" { "Quotas of policy version " (policy_version) }
                @if rows.is_empty() {
                    p { "The active policy sets no quotas." }
                } @else {
                    table {
                        thead {
                            tr {
                                th scope="col" { "Quota" }
                                th scope="col" { "Identity" }
                                th scope="col" { "Counts" }
                                th scope="col" { "Used / limit" }
                            }
                        }
                        tbody {
                            @for q in rows {
                                tr id={"quota-" (q.name)} {
                                    th scope="row" { (q.name) }
                                    td { (q.identity) }
                                    td { (q.action) " " (q.resource) }
                                    td {
                                        @for w in &q.windows {
                                            div class="window" {
                                                span class="window-name" { (w.window) }
                                                @let frac = if w.limit > 0 { w.used as f64 / w.limit as f64 } else { 1.0 };
                                                (bar(frac, &format!("{}/{}", w.used, w.limit), "data-quota", &format!("{}:{}", q.name, w.window)))
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="issued-h" {
                h2 id="issued-h" { "Certificates issued per day, by line (and every other identity)" }
                @if activity.is_empty() {
                    p id="no-issuance" { "No identity issued a certificate in the last 14 days." }
                } @else {
                    p class="hint" { "From the certificates kagi stored, each with the identity that asked for it." }
                    @for a in activity {
                        (daily_chart_for(&format!("{}: certificates per day, last 14 days", a.identity), &a.days, &a.identity))
                    }
                }
            }
            @if let Some(ids) = identities {
                section aria-labelledby="ids-h" {
                    h2 id="ids-h" { "Pipelines and lines" }
                    form method="post" action="/ui/identities" class="filters" {
                        input type="hidden" name="csrf" value=(v.csrf);
                        label for="id-name" { "Name" }
                        input id="id-name" name="name" type="text" required pattern="[A-Za-z0-9._-]{1,128}";
                        label for="id-kind" { "Kind" }
                        select id="id-kind" name="kind" {
                            option value="line" { "line" }
                            option value="pipeline" { "pipeline" }
                        }
                        button type="submit" { "Create identity" }
                        span class="hint" { "Role user; the policy decides what it may sign or issue." }
                    }
                    @if ids.is_empty() {
                        p { "No pipeline or line identities in this partition." }
                    } @else {
                        table {
                            thead {
                                tr {
                                    th scope="col" { "Name" }
                                    th scope="col" { "Kind" }
                                    th scope="col" { "Roles" }
                                    th scope="col" { "State" }
                                }
                            }
                            tbody {
                                @for i in ids {
                                    tr {
                                        th scope="row" { (i.name) }
                                        td { (i.kind) }
                                        td { (i.roles) }
                                        td { (i.state) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// A policy version in the list.
pub struct PolicyRow {
    pub version: i64,
    pub active: bool,
    pub built_in: bool,
    pub submitted_by: String,
    /// RFC 3339, or empty for the built-in version.
    pub submitted_at: String,
    /// "2 of alice, bob, carol", or "none".
    pub quorum: String,
}

/// One row of a side-by-side diff: the old line on the left, the new on the right.
#[derive(Debug, PartialEq, Eq)]
pub enum DiffRow {
    /// A new hunk starts (its `@@` header).
    Hunk(String),
    Same(String),
    /// A changed line: removed on the left, added on the right (either may be absent).
    Change(Option<String>, Option<String>),
}

/// Turns a unified diff (`kagi_policy::diff`'s) into side-by-side rows, pairing each run of
/// removed lines with the run of added lines that follows it.
pub fn side_by_side(unified: &str) -> Vec<DiffRow> {
    let mut rows = Vec::new();
    let (mut removed, mut added): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    fn flush(rows: &mut Vec<DiffRow>, removed: &mut Vec<String>, added: &mut Vec<String>) {
        let n = removed.len().max(added.len());
        let (mut r, mut a) = (removed.drain(..), added.drain(..));
        for _ in 0..n {
            rows.push(DiffRow::Change(r.next(), a.next()));
        }
    }
    for line in unified.lines() {
        if line.starts_with("@@") {
            flush(&mut rows, &mut removed, &mut added);
            rows.push(DiffRow::Hunk(line.to_string()));
        } else if let Some(l) = line.strip_prefix('-') {
            if !added.is_empty() {
                flush(&mut rows, &mut removed, &mut added);
            }
            removed.push(l.to_string());
        } else if let Some(l) = line.strip_prefix('+') {
            added.push(l.to_string());
        } else {
            flush(&mut rows, &mut removed, &mut added);
            rows.push(DiffRow::Same(
                line.strip_prefix(' ').unwrap_or(line).to_string(),
            ));
        }
    }
    flush(&mut rows, &mut removed, &mut added);
    rows
}

/// What the policies page shows for one chosen version.
pub struct PolicyDetail {
    pub version: i64,
    pub active_version: i64,
    pub text: String,
    pub diff: Vec<DiffRow>,
}

pub fn policies(
    v: &Viewer,
    rows: &[PolicyRow],
    detail: Option<&PolicyDetail>,
    draft: &str,
    notice: Option<&Notice>,
) -> String {
    page(
        "Policies",
        Some(v),
        notice,
        html! {
            section aria-labelledby="versions-h" {
                h2 id="versions-h" { "Versions" }
                table {
                    thead {
                        tr {
                            th scope="col" { "Version" }
                            th scope="col" { "State" }
                            th scope="col" { "Submitted" }
                            th scope="col" { "Quorum" }
                            th scope="col" { "Actions" }
                        }
                    }
                    tbody {
                        @for p in rows {
                            tr id={"policy-" (p.version)} {
                                th scope="row" { (p.version) @if p.built_in { " (built in)" } }
                                td class="state" { @if p.active { "active" } @else { "inactive" } }
                                td { (p.submitted_by) " " (p.submitted_at) }
                                td { (p.quorum) }
                                td {
                                    a href={"/ui/policies?version=" (p.version)}
                                        aria-label={"Show version " (p.version) " against the active one"} { "show and compare" }
                                    @if !p.active && !p.built_in {
                                        " "
                                        form method="post" action={"/ui/policies/" (p.version) "/activate"} class="inline" {
                                            input type="hidden" name="csrf" value=(v.csrf);
                                            button type="submit" aria-label={"Activate version " (p.version)} { "Activate" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p class="hint" { "Under a quorum, activating a version files an approval request whose summary is the diff." }
            }
            @if let Some(d) = detail {
                section aria-labelledby="diff-h" {
                    h2 id="diff-h" { "Version " (d.version) " against the active version " (d.active_version) }
                    @if d.diff.is_empty() {
                        p id="diff-none" { "No difference." }
                    } @else {
                        table class="diff" {
                            thead {
                                tr {
                                    th scope="col" { "Active (" (d.active_version) ")" }
                                    th scope="col" { "Version " (d.version) }
                                }
                            }
                            tbody {
                                @for row in &d.diff {
                                    @match row {
                                        DiffRow::Hunk(h) => tr class="hunk" { td colspan="2" { code { (h) } } },
                                        DiffRow::Same(l) => tr { td { code { (l) } } td { code { (l) } } },
                                        DiffRow::Change(old, new) => tr {
                                            td class={ @if old.is_some() { "removed" } } {
                                                @if let Some(l) = old { span class="sr" { "removed: " } code { (l) } }
                                            }
                                            td class={ @if new.is_some() { "added" } } {
                                                @if let Some(l) = new { span class="sr" { "added: " } code { (l) } }
                                            }
                                        },
                                    }
                                }
                            }
                        }
                    }
                    details {
                        summary { "The whole document of version " (d.version) }
                        pre class="note" { (d.text) }
                    }
                }
            }
            section aria-labelledby="propose-h" {
                h2 id="propose-h" { "Propose a new version" }
                form method="post" action="/ui/policies" class="card wide" {
                    input type="hidden" name="csrf" value=(v.csrf);
                    p {
                        label for="policy-text" { "Policy document (TOML)" }
                        textarea id="policy-text" name="text" rows="16" cols="80" spellcheck="false" required { (draft) }
                    }
                    button type="submit" { "Submit as a new version" }
                    span class="hint" { "It is validated first; errors name their line. It takes effect once activated." }
                }
            }
        },
    )
}

/// A CA in the hierarchy.
pub struct CaRow {
    pub name: String,
    pub parent: Option<String>,
    pub subject: String,
    /// RFC 3339.
    pub not_after: String,
    /// `None` while live; the reason otherwise.
    pub revoked: Option<String>,
}

/// An issued certificate in the search results.
pub struct CertRow {
    pub serial: String,
    pub ca: String,
    pub profile: String,
    pub subject: String,
    pub issued_to: String,
    /// RFC 3339.
    pub not_after: String,
    /// `None` while live; the reason otherwise.
    pub revoked: Option<String>,
}

/// The certificate search, as the query string gave it.
#[derive(Default)]
pub struct CertSearch {
    pub ca: String,
    pub serial: String,
    pub subject: String,
}

/// Revocation reasons offered (RFC 5280 names kagi accepts; revocations are permanent).
pub const REASONS: &[&str] = &[
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
];

fn ca_tree(cas: &[CaRow], parent: Option<&str>) -> Markup {
    html! {
        ul class="tree" {
            @for c in cas.iter().filter(|c| c.parent.as_deref() == parent) {
                li id={"ca-" (c.name)} {
                    strong { (c.name) } " · " (c.subject) " · until " (c.not_after)
                    @if let Some(r) = &c.revoked { " · " span class="revoked" { "revoked (" (r) ")" } }
                    (ca_tree(cas, Some(&c.name)))
                }
            }
        }
    }
}

pub fn cas(
    v: &Viewer,
    cas: &[CaRow],
    search: &CertSearch,
    results: Option<&[CertRow]>,
    notice: Option<&Notice>,
) -> String {
    let officer = v.has("officer");
    page(
        "Certificate authorities",
        Some(v),
        notice,
        html! {
            section aria-labelledby="tree-h" {
                h2 id="tree-h" { "Hierarchy" }
                @if cas.is_empty() { p { "No CAs yet." } } @else { (ca_tree(cas, None)) }
            }
            section aria-labelledby="search-h" {
                h2 id="search-h" { "Certificates" }
                form method="get" action="/ui/cas" class="filters" role="search" {
                    label for="s-serial" { "Serial" }
                    input id="s-serial" name="serial" type="text" value=(search.serial);
                    label for="s-ca" { "CA" }
                    select id="s-ca" name="ca" {
                        @for c in cas {
                            @if c.name == search.ca { option value=(c.name) selected { (c.name) } }
                            @else { option value=(c.name) { (c.name) } }
                        }
                    }
                    label for="s-subject" { "Subject contains" }
                    input id="s-subject" name="subject" type="text" value=(search.subject);
                    button type="submit" { "Search" }
                }
                @if let Some(rows) = results {
                    @if rows.is_empty() {
                        p id="no-certs" { "No certificate matches." }
                    } @else {
                        table {
                            thead {
                                tr {
                                    th scope="col" { "Serial" }
                                    th scope="col" { "CA / profile" }
                                    th scope="col" { "Subject" }
                                    th scope="col" { "Issued to" }
                                    th scope="col" { "Until" }
                                    th scope="col" { "State" }
                                    @if officer { th scope="col" { "Revoke" } }
                                }
                            }
                            tbody {
                                @for c in rows {
                                    tr id={"cert-" (c.serial)} {
                                        th scope="row" {
                                            code { (c.serial) }
                                            br;
                                            a class="small" href={"/ui/certificates/" (c.serial) "/pem"}
                                                aria-label={"Certificate " (c.serial) " (PEM)"} { "certificate" }
                                        }
                                        td { (c.ca) " / " (c.profile) }
                                        td { (c.subject) }
                                        td { (c.issued_to) }
                                        td { (c.not_after) }
                                        td class="state" {
                                            @match &c.revoked { Some(r) => { "revoked (" (r) ")" }, None => "valid" }
                                        }
                                        @if officer {
                                            td {
                                                @if c.revoked.is_none() {
                                                    form method="post" action={"/ui/certificates/" (c.serial) "/revoke"} class="inline" {
                                                        input type="hidden" name="csrf" value=(v.csrf);
                                                        label for={"reason-" (c.serial)} class="inline-label" { "Reason " }
                                                        select id={"reason-" (c.serial)} name="reason" {
                                                            @for r in REASONS { option value=(r) { (r) } }
                                                        }
                                                        " "
                                                        button type="submit" aria-label={"Revoke certificate " (c.serial)} { "Revoke" }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The QR code of `text` as an SVG element, or `None` if it does not fit in a QR code.
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    // The renderer starts with an XML declaration, which has no place inside HTML.
    let start = svg.find("<svg")?;
    Some(svg[start..].to_string())
}

/// The authenticator (TOTP) enrolment page: the QR code of the otpauth URI, the secret as text
/// for apps without a camera, and the form that confirms with a code.
pub fn totp(
    v: &Viewer,
    enrolled: bool,
    uri: &str,
    secret_b32: &str,
    notice: Option<&Notice>,
) -> String {
    let admin = v.has("administrator");
    let qr = qr_svg(uri);
    page(
        "Authenticator",
        Some(v),
        notice,
        html! {
            p id="totp-state" {
                @if enrolled { "An authenticator is enrolled: sign-in asks for its code. Replacing or removing it needs the code it shows now." }
                @else { "No authenticator is enrolled: sign-in asks only for your password." }
            }
            section aria-labelledby="enrol-h" class="card" {
                h2 id="enrol-h" { "Enrol an authenticator app" }
                p { "Scan the code with the app (or type the secret), then enter the 6 digits it shows." }
                @if let Some(svg) = qr {
                    figure class="qr" role="img" aria-label="QR code of the authenticator secret" {
                        (maud::PreEscaped(svg))
                    }
                }
                p { "Secret: " code id="totp-secret" { (secret_b32) } }
                form method="post" action="/ui/totp" {
                    input type="hidden" name="csrf" value=(v.csrf);
                    input type="hidden" name="secret" value=(secret_b32);
                    p {
                        label for="totp-code" { "Code from the new app" }
                        input id="totp-code" name="code" type="text" inputmode="numeric"
                            autocomplete="one-time-code" pattern="[0-9]{6}" required;
                    }
                    @if enrolled {
                        p {
                            label for="totp-current" { "Code from the enrolled authenticator" }
                            input id="totp-current" name="current" type="text" inputmode="numeric"
                                autocomplete="off" pattern="[0-9]{6}" required;
                        }
                    }
                    button type="submit" { @if enrolled { "Replace" } @else { "Enrol" } }
                }
            }
            @if enrolled {
                section aria-labelledby="remove-h" class="card" {
                    h2 id="remove-h" { "Remove the authenticator" }
                    form method="post" action="/ui/totp/remove" {
                        input type="hidden" name="csrf" value=(v.csrf);
                        p {
                            label for="totp-remove-code" { "Code it shows now" }
                            input id="totp-remove-code" name="current" type="text" inputmode="numeric"
                                autocomplete="off" pattern="[0-9]{6}" required;
                        }
                        button type="submit" class="secondary" { "Remove" }
                    }
                }
            }
            @if admin {
                section aria-labelledby="reset-h" class="card" {
                    h2 id="reset-h" { "A person lost their device" }
                    p { "Remove that person's authenticator: they sign in with their password alone until they enrol a new one. The audit log records that you did." }
                    form method="post" action="/ui/totp/remove-for" {
                        input type="hidden" name="csrf" value=(v.csrf);
                        p {
                            label for="totp-person" { "Person's name" }
                            input id="totp-person" name="name" type="text" required pattern="[A-Za-z0-9._-]{1,128}";
                        }
                        button type="submit" class="secondary" { "Remove their authenticator" }
                    }
                }
            }
        },
    )
}

/// The transparency log's newest checkpoint.
pub struct LogCheckpoint {
    pub size: i64,
    /// RFC 3339.
    pub time: String,
    /// The signed note, as clients verify it.
    pub note: String,
}

/// The audit page's filter, as the query string gave it.
#[derive(Default)]
pub struct AuditFilter {
    pub actor: String,
    pub action: String,
}

impl AuditFilter {
    /// The filter as query parameters (`&actor=..&action=..`), URL-encoded, for paging links.
    fn query(&self) -> String {
        let mut q = String::new();
        for (k, v) in [("actor", &self.actor), ("action", &self.action)] {
            if !v.is_empty() {
                q.push_str(&format!("&{k}={}", encode_query(v)));
            }
        }
        q
    }
}

/// A query-string value: unreserved characters as they are, every other byte as %XX.
pub fn encode_query(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Which page of the log the audit page shows: records with sequence numbers in
/// `from..to` (newest first), and whether there are older or newer ones.
pub struct AuditPage {
    pub from: i64,
    pub to: i64,
    /// `?before=` for the next older page, when any record is older.
    pub older: Option<i64>,
    /// `?before=` for the next newer page (`None`: the newest page, linked without it).
    pub newer: Option<Option<i64>>,
}

pub fn audit(
    v: &Viewer,
    verification: &Verification,
    tlog: Option<&LogCheckpoint>,
    filter: &AuditFilter,
    rows: &[AuditRow],
    paging: &AuditPage,
    notice: Option<&Notice>,
) -> String {
    let pager = html! {
        nav class="pager" aria-label="Audit pages" {
            @if let Some(newer) = paging.newer {
                @match newer {
                    Some(b) => a rel="prev" href={"/ui/audit?before=" (b) (filter.query())} { "← newer" },
                    None => a rel="prev" href={"/ui/audit?" (filter.query().trim_start_matches('&'))} { "← newest" },
                }
                " "
            }
            span class="hint" { "records " (paging.from) " to " (paging.to - 1) }
            @if let Some(b) = paging.older {
                " "
                a rel="next" href={"/ui/audit?before=" (b) (filter.query())} { "older →" }
            }
        }
    };
    page(
        "Audit",
        Some(v),
        notice,
        html! {
            section aria-labelledby="verify-h" {
                h2 id="verify-h" { "Verification" }
                @match verification {
                    Verification::Verified { through, records, checkpoint_time } => {
                        p id="verification" class="ok" {
                            "Verified through record " (through) " (" (records) " records)"
                            @if let Some(t) = checkpoint_time { ", checkpoint signed at " (t) }
                            "."
                        }
                    }
                    Verification::Broken { seq, message } => {
                        p id="verification" class="error" role="alert" {
                            @if let Some(s) = seq { "NOT verified: the first bad record is record " (s) ". " }
                            @else { "NOT verified. " }
                            (message)
                        }
                    }
                }
            }
            section aria-labelledby="tlog-h" {
                h2 id="tlog-h" { "Transparency log" }
                @match tlog {
                    Some(c) => {
                        p id="tlog" { "Latest checkpoint: " (c.size) " entries, signed at " (c.time) "." }
                        pre class="note" { (c.note) }
                    }
                    None => p id="tlog" { "The transparency log has no checkpoint yet." },
                }
            }
            section aria-labelledby="records-h" {
                h2 id="records-h" { "Records" }
                form method="get" action="/ui/audit" class="filters" role="search" {
                    label for="f-actor" { "Actor contains" }
                    input id="f-actor" name="actor" type="text" value=(filter.actor);
                    label for="f-action" { "Action starts with" }
                    input id="f-action" name="action" type="text" value=(filter.action);
                    button type="submit" { "Filter" }
                }
                (pager)
                table {
                    thead {
                        tr {
                            th scope="col" { "#" }
                            th scope="col" { "Time" }
                            th scope="col" { "Actor" }
                            th scope="col" { "Action" }
                            th scope="col" { "Outcome" }
                            th scope="col" { "Detail" }
                        }
                    }
                    tbody {
                        @for r in rows {
                            tr {
                                th scope="row" { (r.seq) }
                                td { (r.time) }
                                td { (r.actor) }
                                td { (r.action) }
                                td { (r.outcome) }
                                td class="detail" { code { (r.detail) } }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// A page that only says what went wrong (a refused action, a missing page).
pub fn problem(v: Option<&Viewer>, title: &str, message: &str) -> String {
    page(
        title,
        v,
        Some(&Notice::Error(message.to_string())),
        html! { p { a href="/ui" { "Back to the overview" } } },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer(roles: &[&str]) -> Viewer {
        Viewer {
            name: "ann".into(),
            partition: "default".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            csrf: "tok".into(),
        }
    }

    fn key(used: i64, limit: Option<i64>) -> KeyRow {
        KeyRow {
            label: "<k>".into(),
            algorithm: "ec-p256".into(),
            state: "active".into(),
            used,
            limit,
            suspended: false,
            destroyable: true,
            version: 1,
        }
    }

    #[test]
    fn values_are_escaped() {
        let html = keys(&viewer(&["officer"]), &[key(0, Some(5))], None);
        assert!(html.contains("&lt;k&gt;"));
        assert!(!html.contains("<k>"));
    }

    #[test]
    fn officers_get_create_and_destroy_forms_with_the_csrf_token() {
        let html = keys(&viewer(&["officer"]), &[key(3, Some(5))], None);
        assert!(html.contains("action=\"/ui/keys\""));
        assert!(html.contains("Request destroy"));
        assert!(html.contains("3/5"));
        let forms = html.matches("<form method=\"post\"").count();
        let tokens = html.matches("name=\"csrf\" value=\"tok\"").count();
        assert_eq!(forms, tokens, "{html}");
    }

    #[test]
    fn auditors_get_no_key_controls() {
        let html = keys(&viewer(&["auditor"]), &[key(3, Some(5))], None);
        assert!(!html.contains("action=\"/ui/keys\""));
        assert!(!html.contains("Request destroy"));
        assert!(html.contains("roles: <span id=\"roles\">auditor</span>"));
    }

    #[test]
    fn bar_width_follows_usage() {
        let html = keys(&viewer(&[]), &[key(3, Some(5))], None);
        assert!(html.contains("width=\"96\""), "{html}");
        assert_eq!(key(9, Some(5)).fraction(), 1.0);
        assert_eq!(key(9, None).usage_text(), "9/∞");
    }

    #[test]
    fn quota_windows_and_the_daily_chart_are_drawn() {
        let v = viewer(&["auditor"]);
        let rows = [QuotaRow {
            name: "q".into(),
            identity: "line-7".into(),
            action: "issue".into(),
            resource: "device".into(),
            windows: vec![QuotaWindow {
                window: "day".into(),
                used: 9,
                limit: 10,
            }],
        }];
        let activity = [LineActivity {
            identity: "default:line-7".into(),
            days: vec![("2026-11-29".into(), 2), ("2026-11-30".into(), 0)],
        }];
        let html = quotas(&v, 3, &rows, &activity, None, None, None);
        assert!(html.contains("data-quota=\"q:day\">9/10<"), "{html}");
        assert!(html.contains("data-line=\"default:line-7\""), "{html}");
        assert!(html.contains("2026-11-29: 2, 2026-11-30: 0"), "{html}");
        assert!(quotas(&v, 3, &rows, &[], None, None, None).contains("id=\"no-issuance\""));
        assert!(html.contains("bar high"));
        assert!(!html.contains("Pipelines and lines"));
        let o = Overview {
            sealed: false,
            health: "ok".into(),
            nearest_limits: vec![],
            pending: None,
            activity: vec![("2026-11-29".into(), 0), ("2026-11-30".into(), 4)],
        };
        let html = overview(&v, &o, None);
        assert!(html.contains("2026-11-29: 0, 2026-11-30: 4"), "{html}");
        assert!(html.contains("<title>2026-11-30: 4</title>"));
        assert!(!html.contains("Pending approvals"));
    }

    #[test]
    fn side_by_side_pairs_removed_and_added_lines() {
        let rows = side_by_side("@@ -1,3 +1,3 @@\n a\n-b\n+B\n+C\n c\n");
        assert_eq!(
            rows,
            vec![
                DiffRow::Hunk("@@ -1,3 +1,3 @@".into()),
                DiffRow::Same("a".into()),
                DiffRow::Change(Some("b".into()), Some("B".into())),
                DiffRow::Change(None, Some("C".into())),
                DiffRow::Same("c".into()),
            ]
        );
        assert!(side_by_side("").is_empty());
    }

    #[test]
    fn pages_have_no_inline_script_or_style() {
        let v = viewer(&["officer", "auditor"]);
        let broken = Verification::Broken {
            seq: Some(7),
            message: "mac".into(),
        };
        for html in [
            login("x", Some("no")),
            keys(&v, &[key(1, Some(2))], None),
            audit(
                &v,
                &broken,
                None,
                &AuditFilter::default(),
                &[],
                &page(),
                None,
            ),
        ] {
            assert!(!html.contains("<script"));
            assert!(!html.contains("style="));
            assert!(!html.contains("http://") && !html.contains("https://"));
        }
        let html = audit(
            &v,
            &broken,
            None,
            &AuditFilter::default(),
            &[],
            &page(),
            None,
        );
        assert!(html.contains("the first bad record is record 7"));
    }

    fn page() -> AuditPage {
        AuditPage {
            from: 500,
            to: 1000,
            older: Some(500),
            newer: Some(Some(1500)),
        }
    }

    #[test]
    fn audit_pages_link_older_and_newer_keeping_the_filter() {
        let v = viewer(&["auditor"]);
        let filter = AuditFilter {
            actor: "ann & co".into(),
            action: "key.".into(),
        };
        let html = audit(
            &v,
            &Verification::Broken {
                seq: None,
                message: String::new(),
            },
            None,
            &filter,
            &[],
            &page(),
            None,
        );
        assert!(
            html.contains("href=\"/ui/audit?before=500&amp;actor=ann%20%26%20co&amp;action=key.\""),
            "{html}"
        );
        assert!(
            html.contains("href=\"/ui/audit?before=1500&amp;actor="),
            "{html}"
        );
        let newest = AuditPage {
            from: 0,
            to: 10,
            older: None,
            newer: Some(None),
        };
        let html = audit(
            &v,
            &Verification::Broken {
                seq: None,
                message: String::new(),
            },
            None,
            &filter,
            &[],
            &newest,
            None,
        );
        assert!(
            html.contains("href=\"/ui/audit?actor=ann%20%26%20co&amp;action=key.\""),
            "{html}"
        );
        assert!(!html.contains("older"));
    }

    #[test]
    fn a_suspended_key_offers_enable_and_an_active_one_disable() {
        let v = viewer(&["officer"]);
        let mut k = key(0, None);
        assert!(keys(&v, &[key(0, None)], None).contains("/disable\""));
        k.suspended = true;
        let html = keys(&v, &[k], None);
        assert!(html.contains("/enable\""), "{html}");
        assert!(!html.contains("/disable\""));
    }

    #[test]
    fn a_rotated_key_names_its_version() {
        let v = viewer(&["officer"]);
        assert!(!keys(&v, &[key(0, None)], None).contains("(version"));
        let mut k = key(0, None);
        k.version = 3;
        let html = keys(&v, &[k], None);
        assert!(html.contains("(version 3)"), "{html}");
    }
}
