//! `/ui`: the security team's console. People sign in with their name and console password
//! (hsm-core checks it and makes the `Session`); the session lives in the database through
//! hsm-core (`console_sessions`: shared by every process, kept across a restart) behind a
//! random HttpOnly, Secure, SameSite=Strict cookie, and every form that changes
//! anything carries the session's CSRF token, compared here before anything runs.
//!
//! Every action calls the same hsm-core operation as the API route for it, with the person's
//! session (carrying their address and User-Agent), so roles, quorums and audit records are
//! the API's. Pages come from `kagi_web_ui::views`; this module turns hsm-core's answers into
//! their view structs.
//!
//! These routes are HTML, not API, so they are registered here rather than in the OpenAPI
//! route table, which keeps only `GET /ui`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use kagi_hsm_core::{Gated, HsmError, KeyInfo, Session};
use kagi_web_ui::views::{self, AuditFilter, Notice, Verification, Viewer};
use kagi_web_ui::{SessionStore, Started};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::auth::client_info;
use super::errors::ApiError;
use super::handler::{blocking, record_event};
use super::rate_limit;
use super::state::AppState;

/// How long a login form's token (and its cookie) is good for.
const LOGIN_FORM_SECS: u64 = 30 * 60;
/// Days the overview's activity chart covers.
const ACTIVITY_DAYS: i64 = 14;
/// Audit records the audit page reads (the newest ones), before filtering.
const AUDIT_WINDOW: i64 = 500;

const LIMITS: kagi_hsm_core::SessionLimits = kagi_hsm_core::SessionLimits {
    idle: kagi_web_ui::IDLE,
    absolute: kagi_web_ui::ABSOLUTE,
};

/// The console's session store on hsm-core's `console_sessions` table (the cookie's SHA-256
/// and a MAC per row; the CSRF token derived from the cookie under a master-key-derived key).
pub struct HsmSessions<'a>(pub &'a kagi_hsm_core::Hsm);

impl SessionStore<Session> for HsmSessions<'_> {
    type Error = HsmError;

    fn start(&self, value: &Session) -> Result<Started<Session>, HsmError> {
        let c = self.0.start_console_session(value, LIMITS)?;
        Ok(Started {
            id: c.cookie,
            csrf: c.csrf,
            value: c.session,
        })
    }

    fn find(&self, id: &str) -> Result<Option<Started<Session>>, HsmError> {
        Ok(self.0.console_session(id, LIMITS)?.map(|c| Started {
            id: c.cookie,
            csrf: c.csrf,
            value: c.session,
        }))
    }

    fn end(&self, id: &str) -> Result<(), HsmError> {
        self.0.end_console_session(id)
    }
}

/// Registers the console's routes (`GET /ui` itself is in the route table).
pub fn configure(cfg: &mut web::ServiceConfig) {
    // A policy document comes in a form: allow as much as the API takes (url-encoded).
    cfg.app_data(web::FormConfig::default().limit(2 * super::policies::POLICY_LIMIT))
        .route(kagi_web_ui::STYLESHEET_PATH, web::get().to(stylesheet))
        .route("/ui/login", web::post().to(login))
        .route("/ui/logout", web::post().to(logout))
        .route("/ui/keys", web::get().to(keys_page))
        .route("/ui/keys", web::post().to(create_key))
        .route("/ui/keys/{name}/destroy", web::post().to(destroy_key))
        .route("/ui/keys/{name}/{change}", web::post().to(suspend_key))
        .route("/ui/keys/{name}/public.pem", web::get().to(public_key))
        .route("/ui/approvals", web::get().to(approvals_page))
        .route("/ui/approvals/{id}/{decision}", web::post().to(decide))
        .route("/ui/audit", web::get().to(audit_page))
        .route("/ui/quotas", web::get().to(quotas_page))
        .route("/ui/policies", web::get().to(policies_page))
        .route("/ui/policies", web::post().to(propose_policy))
        .route(
            "/ui/policies/{version}/activate",
            web::post().to(activate_policy),
        )
        .route("/ui/identities", web::post().to(create_identity))
        .route(
            "/ui/certificates/{serial}/pem",
            web::get().to(certificate_pem),
        )
        .route("/ui/totp", web::get().to(totp_page))
        .route("/ui/totp", web::post().to(enrol_totp))
        .route("/ui/totp/remove", web::post().to(remove_totp))
        .route("/ui/totp/remove-for", web::post().to(remove_totp_for))
        .route("/ui/cas", web::get().to(cas_page))
        .route(
            "/ui/certificates/{serial}/revoke",
            web::post().to(revoke_certificate),
        );
}

/// An HTML answer with the console's security headers.
fn html(status: StatusCode, body: String) -> HttpResponse {
    let mut r = HttpResponse::build(status);
    secure_headers(&mut r);
    r.content_type("text/html; charset=utf-8").body(body)
}

fn secure_headers(r: &mut actix_web::HttpResponseBuilder) {
    r.insert_header((
        header::CONTENT_SECURITY_POLICY,
        kagi_web_ui::CONTENT_SECURITY_POLICY,
    ))
    .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
    .insert_header((header::X_FRAME_OPTIONS, "DENY"))
    .insert_header((header::REFERRER_POLICY, "no-referrer"))
    .insert_header((header::CACHE_CONTROL, "no-store"));
}

fn redirect(to: &str) -> HttpResponse {
    let mut r = HttpResponse::SeeOther();
    secure_headers(&mut r);
    r.insert_header((header::LOCATION, to)).finish()
}

fn cookie<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| kagi_web_ui::cookie_value(h, name))
}

/// The signed-in person of this request, re-checked against their credential (a revoked or
/// expired identity is signed out at once), with this request's address for the audit log.
async fn signed_in(req: &HttpRequest, state: &AppState) -> Option<(Started<Session>, Viewer)> {
    let id = cookie(req, kagi_web_ui::SESSION_COOKIE)?.to_string();
    // The store re-reads the credential: a revoked or expired identity's session ends here.
    let mut started = blocking(&state.hsm, move |h| HsmSessions(h).find(&id))
        .await
        .ok()
        .flatten()?;
    started.value = started.value.clone().with_client(client_info(req));
    let s = &started.value;
    let viewer = Viewer {
        name: s.name().to_string(),
        partition: s.partition().to_string(),
        roles: s.roles().iter().map(|r| r.as_str().to_string()).collect(),
        csrf: started.csrf.clone(),
    };
    Some((started, viewer))
}

/// A form post: a live session and that session's CSRF token, or the answer to give instead
/// (the sign-in page, or 403 `csrf_rejected`, audited as a refused `action`).
async fn signed_in_form(
    req: &HttpRequest,
    state: &AppState,
    csrf: &str,
    action: &str,
) -> Result<(Started<Session>, Viewer), HttpResponse> {
    let Some((started, viewer)) = signed_in(req, state).await else {
        return Err(redirect("/ui"));
    };
    csrf_ok(state, &started, &viewer, csrf, action).await?;
    Ok((started, viewer))
}

/// The page for a request without a session: sign in.
fn login_page(status: StatusCode, error: Option<&str>) -> HttpResponse {
    let Some(token) = kagi_web_ui::random_token() else {
        return html(
            StatusCode::INTERNAL_SERVER_ERROR,
            views::problem(
                None,
                "Error",
                "no random numbers: the console cannot sign anyone in",
            ),
        );
    };
    let mut r = HttpResponse::build(status);
    secure_headers(&mut r);
    r.insert_header((
        header::SET_COOKIE,
        kagi_web_ui::set_cookie(kagi_web_ui::LOGIN_COOKIE, &token, LOGIN_FORM_SECS),
    ))
    .content_type("text/html; charset=utf-8")
    .body(views::login(&token, error))
}

/// A form's CSRF token against the session's: a refusal is a 403 page and an audit record.
async fn csrf_ok(
    state: &AppState,
    started: &Started<Session>,
    viewer: &Viewer,
    given: &str,
    action: &str,
) -> Result<(), HttpResponse> {
    if !given.is_empty() && kagi_web_ui::constant_time_eq(given, &started.csrf) {
        return Ok(());
    }
    let s = &started.value;
    let mut detail = json!({ "code": "csrf_rejected", "form": action });
    if let Some(c) = s.client() {
        c.add_to(&mut detail);
    }
    if !record_event(
        &state.hsm,
        s.actor(),
        "console.csrf",
        "denied:csrf_rejected",
        detail,
    )
    .await
    {
        log::warn!("could not audit a console form refused for its CSRF token");
    }
    Err(html(
        StatusCode::FORBIDDEN,
        views::problem(
            Some(viewer),
            "Refused",
            "csrf_rejected: this form did not carry this session's CSRF token; reload the page and submit it again",
        ),
    ))
}

fn error_notice(e: &ApiError) -> Notice {
    Notice::Error(format!("{}: {}", e.code(), e.message()))
}

pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "max-age=3600"))
        .body(kagi_web_ui::STYLESHEET)
}

// ------------------------------------------------------------------ sign-in

/// `GET /ui`: the overview, or the sign-in page.
pub async fn index(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    match signed_in(&req, &state).await {
        Some((started, viewer)) => overview(&state, started.value, &viewer).await,
        None => login_page(StatusCode::OK, None),
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    let LoginForm {
        csrf,
        name,
        password,
        code,
    } = form.into_inner();
    let password = Zeroizing::new(password);
    // The form's token must match the cookie set with it: a page elsewhere cannot sign a
    // browser in as someone else (login CSRF), since it can neither read nor set the cookie.
    let expected = cookie(&req, kagi_web_ui::LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !kagi_web_ui::constant_time_eq(&csrf, expected) {
        return login_page(
            StatusCode::FORBIDDEN,
            Some(
                "csrf_rejected: the sign-in form had expired or came from elsewhere; sign in again",
            ),
        );
    }
    let ip = rate_limit::source(&req);
    if let Err(t) = state.login_limit.admit(ip) {
        state.hsm.note_throttled_login(&ip.to_string());
        let e = ApiError::from(t);
        return login_page(StatusCode::TOO_MANY_REQUESTS, Some(&e.to_string()));
    }
    let source = ip.to_string();
    let hsm_name = name.clone();
    let result = blocking(&state.hsm, move |h| {
        let code = Some(code.as_str()).filter(|c| !c.trim().is_empty());
        h.login_password_from(&hsm_name, &password, code, &source)
    })
    .await;
    let session = match result {
        Ok(s) => s,
        Err(e) => {
            // A locked password was not tried, so it is no guess to count against the source.
            let refused = matches!(
                e.code(),
                "bad_credential"
                    | "credential_locked"
                    | "credential_revoked"
                    | "credential_expired"
            );
            if refused {
                state.login_limit.record(ip);
            }
            let message = match e.code() {
                "bad_credential" => {
                    "bad_credential: wrong name or password (a person sets a console password with 'kagi identity set-password')".to_string()
                }
                _ => e.to_string(),
            };
            return login_page(e.status(), Some(&message));
        }
    };
    let started = match blocking(&state.hsm, move |h| HsmSessions(h).start(&session)).await {
        Ok(s) => s,
        Err(e) => {
            return html(
                e.status(),
                views::problem(
                    None,
                    "Error",
                    &format!(
                        "the session could not be started: {}: {}",
                        e.code(),
                        e.message()
                    ),
                ),
            )
        }
    };
    let mut r = HttpResponse::SeeOther();
    secure_headers(&mut r);
    r.insert_header((header::LOCATION, "/ui"))
        .append_header((
            header::SET_COOKIE,
            kagi_web_ui::set_cookie(
                kagi_web_ui::SESSION_COOKIE,
                &started.id,
                kagi_web_ui::ABSOLUTE.as_secs(),
            ),
        ))
        .append_header((
            header::SET_COOKIE,
            kagi_web_ui::set_cookie(kagi_web_ui::LOGIN_COOKIE, "", 0),
        ))
        .finish()
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let (started, _) = match signed_in_form(&req, &state, &form.csrf, "logout").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let id = started.id.clone();
    if let Err(e) = blocking(&state.hsm, move |h| HsmSessions(h).end(&id)).await {
        return html(
            e.status(),
            views::problem(
                None,
                "Sign out",
                &format!(
                    "the session could not be ended: {}: {}",
                    e.code(),
                    e.message()
                ),
            ),
        );
    }
    let mut r = HttpResponse::SeeOther();
    secure_headers(&mut r);
    r.insert_header((header::LOCATION, "/ui"))
        .insert_header((
            header::SET_COOKIE,
            kagi_web_ui::set_cookie(kagi_web_ui::SESSION_COOKIE, "", 0),
        ))
        .finish()
}

// ------------------------------------------------------------------ overview

fn key_row(k: &KeyInfo) -> views::KeyRow {
    let suspended = k.state == kagi_hsm_core::KeyState::Suspended;
    let state = if k.active {
        "active".to_string()
    } else {
        match k.state {
            kagi_hsm_core::KeyState::Active => "not active (limit or validity)".to_string(),
            kagi_hsm_core::KeyState::Suspended => "suspended (disabled)".to_string(),
            other => other.as_str().to_string(),
        }
    };
    views::KeyRow {
        label: k.label.clone(),
        algorithm: k.algorithm.as_str().to_string(),
        state,
        used: k.usage_count,
        limit: k.usage_limit,
        suspended,
        destroyable: !k.operations.iter().any(|o| {
            matches!(
                o,
                kagi_hsm_core::Operation::Certify | kagi_hsm_core::Operation::ServiceSign
            )
        }),
        version: k.version,
    }
}

fn rfc3339(unix_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix_ms.to_string())
}

/// A day (days since 1970-01-01) as YYYY-MM-DD.
fn day_text(day: i64) -> String {
    let date = rfc3339(day.saturating_mul(86_400_000));
    date.get(..10).unwrap_or(&date).to_string()
}

fn approval_row(a: &kagi_hsm_core::ApprovalInfo) -> views::ApprovalRow {
    views::ApprovalRow {
        id: a.id.clone(),
        change: a.action.name().to_string(),
        summary: a.summary.clone(),
        requested_by: a.requested_by.clone(),
        approved_by: a.approved_by.clone(),
        required: a.required,
        status: a.status.clone(),
        expires: rfc3339(a.expires_at.saturating_mul(1000)),
    }
}

async fn overview(state: &AppState, s: Session, viewer: &Viewer) -> HttpResponse {
    let health = match state.hsm.integrity_failure() {
        Some(reason) => format!("integrity failure: {reason}"),
        None => "ok".to_string(),
    };
    let s2 = s.clone();
    let keys = blocking(&state.hsm, move |h| h.list_keys(&s2)).await;
    let (mut nearest, notice) = match keys {
        Ok(keys) => (
            keys.iter()
                .filter(|k| k.usage_limit.is_some())
                .map(key_row)
                .collect::<Vec<_>>(),
            None,
        ),
        Err(e) => (Vec::new(), Some(error_notice(&e))),
    };
    nearest.sort_by(|a, b| b.fraction().total_cmp(&a.fraction()));
    nearest.truncate(5);
    let pending = if viewer.has("officer") {
        blocking(&state.hsm, move |h| h.list_approvals(&s))
            .await
            .ok()
            .map(|list| {
                list.iter()
                    .filter(|a| a.status == "pending")
                    .map(approval_row)
                    .collect()
            })
    } else {
        None
    };
    let activity = blocking(&state.hsm, |h| h.log_entries_per_day(ACTIVITY_DAYS))
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(day, n)| (day_text(day), n))
        .collect();
    let o = views::Overview {
        sealed: state.hsm.is_sealed(),
        health,
        nearest_limits: nearest,
        pending,
        activity,
    };
    html(StatusCode::OK, views::overview(viewer, &o, notice.as_ref()))
}

// ------------------------------------------------------------------ keys

async fn render_keys(
    state: &AppState,
    s: Session,
    viewer: &Viewer,
    status: StatusCode,
    notice: Option<Notice>,
) -> HttpResponse {
    match blocking(&state.hsm, move |h| h.list_keys(&s)).await {
        Ok(keys) => {
            let rows: Vec<_> = keys.iter().map(key_row).collect();
            html(status, views::keys(viewer, &rows, notice.as_ref()))
        }
        Err(e) => html(
            e.status(),
            views::keys(viewer, &[], Some(&error_notice(&e))),
        ),
    }
}

pub async fn keys_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some((started, viewer)) = signed_in(&req, &state).await else {
        return redirect("/ui");
    };
    render_keys(&state, started.value, &viewer, StatusCode::OK, None).await
}

#[derive(Deserialize)]
pub struct CreateKeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    alg: String,
    #[serde(default)]
    usage_limit: String,
    /// A date (YYYY-MM-DD) from the form's date field: the key's last day, UTC.
    #[serde(default)]
    not_after: String,
    /// Present ("on") when the box is ticked.
    #[serde(default)]
    exportable: Option<String>,
}

pub async fn create_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<CreateKeyForm>,
) -> HttpResponse {
    let (started, viewer) = match signed_in_form(&req, &state, &form.csrf, "key.create").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let form = form.into_inner();
    let session = started.value;
    let limit = match form.usage_limit.trim() {
        "" => Ok(None),
        n => n.parse::<i64>().map(Some).map_err(|_| {
            ApiError::new(
                super::error_codes::Code::BadRequest,
                format!("usage limit '{n}' is not a whole number: leave it empty for no limit"),
            )
        }),
    };
    // The end of the chosen day: a key "valid until 2030-06-30" signs all that day.
    let not_after = match form.not_after.trim() {
        "" => None,
        d => Some(format!("{d}T23:59:59Z")),
    };
    let exportable = form.exportable.is_some();
    let spec = match limit
        .and_then(|l| super::keys::spec_of(&form.name, &form.alg, l, not_after, exportable))
    {
        Ok(spec) => spec,
        Err(e) => {
            let e = super::handler::audited(&state, &session, "key.generate", e).await;
            let status = e.status();
            return render_keys(&state, session, &viewer, status, Some(error_notice(&e))).await;
        }
    };
    let s = session.clone();
    let created = blocking(&state.hsm, move |h| h.create_key(&s, &spec)).await;
    let (status, notice) = match created {
        Ok(k) => (
            StatusCode::CREATED,
            Notice::Info(format!(
                "Key '{}' was created ({}).",
                k.label,
                k.algorithm.as_str()
            )),
        ),
        Err(e) => (e.status(), error_notice(&e)),
    };
    render_keys(&state, session, &viewer, status, Some(notice)).await
}

pub async fn destroy_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let (started, viewer) = match signed_in_form(&req, &state, &form.csrf, "key.destroy").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let session = started.value;
    let (s, label) = (session.clone(), name.into_inner());
    let l2 = label.clone();
    let result = blocking(&state.hsm, move |h| h.destroy_key(&s, &l2)).await;
    let (status, notice) = match result {
        Ok(Gated::Done(())) => (
            StatusCode::OK,
            Notice::Info(format!("Key '{label}' was destroyed.")),
        ),
        Ok(Gated::Pending(a)) => (
            StatusCode::ACCEPTED,
            Notice::Info(format!(
                "Destroying '{label}' needs {} approval(s): request {} is on the approvals page.",
                a.required, a.id
            )),
        ),
        Err(e) => (e.status(), error_notice(&e)),
    };
    render_keys(&state, session, &viewer, status, Some(notice)).await
}

/// `POST /ui/keys/{name}/disable` and `/enable`: the API's suspend and resume (officers; the
/// role is checked by hsm-core, as for the API).
pub async fn suspend_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let (label, change) = path.into_inner();
    let suspend = match change.as_str() {
        "disable" => true,
        "enable" => false,
        _ => {
            return html(
                StatusCode::NOT_FOUND,
                views::problem(None, "Not found", "no such page"),
            )
        }
    };
    let action = if suspend { "key.suspend" } else { "key.resume" };
    let (started, viewer) = match signed_in_form(&req, &state, &form.csrf, action).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let session = started.value;
    let (s, l2) = (session.clone(), label.clone());
    let result = blocking(&state.hsm, move |h| {
        if suspend {
            h.suspend_key(&s, &l2)
        } else {
            h.resume_key(&s, &l2)
        }
    })
    .await;
    let (status, notice) = match result {
        Ok(_) if suspend => (
            StatusCode::OK,
            Notice::Info(format!(
                "Key '{label}' is disabled (suspended): it signs nothing until enabled again."
            )),
        ),
        Ok(_) => (
            StatusCode::OK,
            Notice::Info(format!("Key '{label}' is enabled again.")),
        ),
        Err(e) => {
            let e = super::handler::audited(&state, &session, action, e).await;
            (e.status(), error_notice(&e))
        }
    };
    render_keys(&state, session, &viewer, status, Some(notice)).await
}

/// A key's public key as a PEM download (the same bytes as `GET /api/v1/keys/{name}/public`).
pub async fn public_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> HttpResponse {
    let Some((started, viewer)) = signed_in(&req, &state).await else {
        return redirect("/ui");
    };
    let (s, label) = (started.value, name.into_inner());
    let l2 = label.clone();
    match blocking(&state.hsm, move |h| h.key_info(&s, &l2)).await {
        Ok(info) => {
            let mut r = HttpResponse::Ok();
            secure_headers(&mut r);
            // The stored label is a validated key name (letters, digits, '.', '-', '_'): safe
            // in the header as it is.
            r.content_type("application/x-pem-file")
                .insert_header((
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}.pub.pem\"", info.label),
                ))
                .body(crate::pem::public_key_pem(&info.public_key_der))
        }
        Err(e) => html(
            e.status(),
            views::problem(
                Some(&viewer),
                "Keys",
                &format!("{}: {}", e.code(), e.message()),
            ),
        ),
    }
}

// ------------------------------------------------------------------ approvals

async fn render_approvals(
    state: &AppState,
    s: Session,
    viewer: &Viewer,
    status: StatusCode,
    notice: Option<Notice>,
) -> HttpResponse {
    match blocking(&state.hsm, move |h| h.list_approvals(&s)).await {
        Ok(list) => {
            let rows: Vec<_> = list.iter().map(approval_row).collect();
            html(status, views::approvals(viewer, &rows, notice.as_ref()))
        }
        Err(e) => {
            // A refusal to list stands above any earlier notice.
            let status = if status.is_success() {
                e.status()
            } else {
                status
            };
            let notice = notice.unwrap_or_else(|| error_notice(&e));
            html(status, views::approvals(viewer, &[], Some(&notice)))
        }
    }
}

pub async fn approvals_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some((started, viewer)) = signed_in(&req, &state).await else {
        return redirect("/ui");
    };
    render_approvals(&state, started.value, &viewer, StatusCode::OK, None).await
}

pub async fn decide(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let (started, viewer) = match signed_in_form(&req, &state, &form.csrf, "approval.decide").await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (id, decision) = path.into_inner();
    let approve = match decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return html(
                StatusCode::NOT_FOUND,
                views::problem(Some(&viewer), "Not found", "decide with approve or reject"),
            )
        }
    };
    let session = started.value;
    let (s, id2) = (session.clone(), id.clone());
    let result = blocking(&state.hsm, move |h| {
        if approve {
            h.approve(&s, &id2)
        } else {
            h.reject(&s, &id2)
        }
    })
    .await;
    let (status, notice) = match result {
        Ok(a) => {
            if a.status == "executed" {
                state.policy.invalidate();
            }
            let verb = if approve { "approved" } else { "rejected" };
            (
                StatusCode::OK,
                Notice::Info(format!("You {verb} request {id}; it is now {}.", a.status)),
            )
        }
        Err(e) => (e.status(), error_notice(&e)),
    };
    render_approvals(&state, session, &viewer, status, Some(notice)).await
}

// ------------------------------------------------------------------ audit

#[derive(Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    /// A page of the records before this sequence number (newest first); none: the newest.
    #[serde(default)]
    before: Option<i64>,
}

pub async fn audit_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> HttpResponse {
    let Some((started, viewer)) = signed_in(&req, &state).await else {
        return redirect("/ui");
    };
    let session = started.value;
    let filter = AuditFilter {
        actor: query.actor.chars().take(128).collect(),
        action: query.action.chars().take(128).collect(),
    };
    let (hsm, s) = (state.hsm.clone(), session.clone());
    // hsm-core's own error is kept: it names the first bad record.
    let verified = web::block(move || {
        let report = hsm.audit_verify(&s)?;
        let checkpoint = hsm.latest_checkpoint()?;
        Ok::<_, HsmError>((report, checkpoint))
    })
    .await;
    let verification = match verified {
        Ok(Ok((report, checkpoint))) => Verification::Verified {
            through: report.records - 1,
            records: report.records,
            checkpoint_time: checkpoint.map(|c| rfc3339(c.ts)),
        },
        Ok(Err(HsmError::AuditIntegrity { seq, reason })) => Verification::Broken {
            seq: Some(seq),
            message: reason,
        },
        Ok(Err(e)) => {
            let e = ApiError::from(e);
            return html(
                e.status(),
                views::problem(
                    Some(&viewer),
                    "Audit",
                    &format!("{}: {}", e.code(), e.message()),
                ),
            );
        }
        Err(_) => {
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                views::problem(Some(&viewer), "Audit", "the service is shutting down"),
            )
        }
    };
    let total = match &verification {
        Verification::Verified { records, .. } => *records,
        Verification::Broken { seq, .. } => seq.unwrap_or(0) + AUDIT_WINDOW,
    };
    let tlog = blocking(&state.hsm, |h| h.tlog_checkpoint(None))
        .await
        .ok()
        .flatten()
        .map(|c| views::LogCheckpoint {
            size: c.size,
            time: rfc3339(c.ts),
            note: c.note,
        });
    // A page is AUDIT_WINDOW records by sequence number, before `before` (the filter applies
    // within the page): a cursor the log cannot shift, since records are only appended.
    let to = query.before.map_or(total, |b| b.clamp(0, total));
    let from = (to - AUDIT_WINDOW).max(0);
    let paging = views::AuditPage {
        from,
        to,
        older: (from > 0).then_some(from),
        newer: (to < total).then(|| (to + AUDIT_WINDOW < total).then_some(to + AUDIT_WINDOW)),
    };
    let s = session.clone();
    let rows = match blocking(&state.hsm, move |h| h.audit_records(&s, from, to - from)).await {
        Ok(records) => records
            .iter()
            .rev()
            .filter(|r| filter.actor.is_empty() || r.actor.contains(&filter.actor))
            .filter(|r| filter.action.is_empty() || r.action.starts_with(&filter.action))
            .map(|r| views::AuditRow {
                seq: r.seq,
                time: rfc3339(r.ts),
                actor: r.actor.clone(),
                action: r.action.clone(),
                outcome: r.outcome.clone(),
                detail: r.detail.clone(),
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    html(
        StatusCode::OK,
        views::audit(
            &viewer,
            &verification,
            tlog.as_ref(),
            &filter,
            &rows,
            &paging,
            None,
        ),
    )
}

// ------------------------------------------------------------------ lines and quotas

pub async fn quotas_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some((started, viewer)) = signed_in(&req, &state).await else {
        return redirect("/ui");
    };
    render_quotas(&state, started.value, &viewer, StatusCode::OK, None, None).await
}

async fn render_quotas(
    state: &web::Data<AppState>,
    session: Session,
    viewer: &Viewer,
    status: StatusCode,
    new_token: Option<views::NewToken>,
    notice: Option<Notice>,
) -> HttpResponse {
    if !viewer.may_see_quotas() {
        return html(
            StatusCode::FORBIDDEN,
            views::problem(
                Some(viewer),
                "Lines and quotas",
                "forbidden: quota use is for officers, auditors and administrators",
            ),
        );
    }
    let admin = viewer.has("administrator");
    let read = super::handler::blocking_with_state(state, move |st| {
        let active = st.policy.active(&st.hsm)?;
        let mut rows = Vec::new();
        for q in &active.engine.document().quotas {
            let usage = st.hsm.quota_usage(&q.name)?;
            let windows = [
                ("total", q.total, usage.total),
                ("hour", q.per_hour, usage.this_hour),
                ("day", q.per_day, usage.today),
            ]
            .into_iter()
            .filter_map(|(window, limit, used)| {
                limit.map(|limit| views::QuotaWindow {
                    window: window.to_string(),
                    used,
                    limit,
                })
            })
            .collect();
            rows.push(views::QuotaRow {
                name: q.name.clone(),
                identity: q.identity.clone(),
                action: q.action.as_str().to_string(),
                resource: q.resource.clone(),
                windows,
            });
        }
        let identities = if admin {
            let list = st.hsm.list_credentials(&session)?;
            Some(
                list.iter()
                    .filter(|c| c.kind != kagi_hsm_core::IdentityKind::Person)
                    .map(|c| views::IdentityRow {
                        name: c.name.clone(),
                        kind: c.kind.as_str().to_string(),
                        roles: c
                            .roles
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        state: if c.revoked {
                            "revoked".to_string()
                        } else if c.locked {
                            "locked".to_string()
                        } else {
                            "active".to_string()
                        },
                    })
                    .collect::<Vec<_>>(),
            )
        } else {
            None
        };
        let activity = st
            .hsm
            .issuances_per_day(ACTIVITY_DAYS)?
            .into_iter()
            .map(|(identity, days)| views::LineActivity {
                identity,
                days: days.into_iter().map(|(d, n)| (day_text(d), n)).collect(),
            })
            .collect::<Vec<_>>();
        Ok((active.version, rows, identities, activity))
    })
    .await;
    match read {
        Ok((version, rows, identities, activity)) => html(
            status,
            views::quotas(
                viewer,
                version,
                &rows,
                &activity,
                identities.as_deref(),
                new_token.as_ref(),
                notice.as_ref(),
            ),
        ),
        Err(e) => html(
            e.status(),
            views::problem(
                Some(viewer),
                "Lines and quotas",
                &format!("{}: {}", e.code(), e.message()),
            ),
        ),
    }
}

// ------------------------------------------------------------------ policies

#[derive(Deserialize)]
pub struct PolicyQuery {
    #[serde(default)]
    version: Option<i64>,
}

fn quorum_text(q: Option<&kagi_hsm_core::QuorumRule>) -> String {
    match q {
        Some(q) => format!("{} of {}", q.required, q.approvers.join(", ")),
        None => "none".to_string(),
    }
}

/// The policies page: versions (the built-in bootstrap policy as version 0), one version
/// against the active one side by side, and the form that proposes a new version.
async fn render_policies(
    state: &AppState,
    s: Session,
    viewer: &Viewer,
    chosen: Option<i64>,
    draft: &str,
    status: StatusCode,
    notice: Option<Notice>,
) -> HttpResponse {
    let read = blocking(&state.hsm, move |h| {
        let list = h.list_policies(&s)?;
        let active = h.active_policy()?;
        let detail = match chosen {
            None => None,
            Some(v) if v == kagi_policy::BOOTSTRAP_VERSION => {
                Some((v, kagi_policy::BOOTSTRAP_TEXT.to_string()))
            }
            Some(v) => Some((v, h.policy(&s, v)?.text)),
        };
        Ok((list, active, detail))
    })
    .await;
    let (list, active, detail) = match read {
        Ok(r) => r,
        Err(e) => {
            return html(
                e.status(),
                views::problem(
                    Some(viewer),
                    "Policies",
                    &format!("{}: {}", e.code(), e.message()),
                ),
            )
        }
    };
    let mut rows: Vec<views::PolicyRow> = list
        .iter()
        .map(|p| views::PolicyRow {
            version: p.version,
            active: p.active,
            built_in: false,
            submitted_by: p.submitted_by.clone(),
            submitted_at: rfc3339(p.submitted_at.saturating_mul(1000)),
            quorum: quorum_text(p.quorum.as_ref()),
        })
        .collect();
    rows.push(views::PolicyRow {
        version: kagi_policy::BOOTSTRAP_VERSION,
        active: active.is_none(),
        built_in: true,
        submitted_by: "(built in)".to_string(),
        submitted_at: String::new(),
        quorum: "none".to_string(),
    });
    let (active_version, active_text) = match &active {
        Some(p) => (p.version, p.text.clone()),
        None => (
            kagi_policy::BOOTSTRAP_VERSION,
            kagi_policy::BOOTSTRAP_TEXT.to_string(),
        ),
    };
    let detail = detail.map(|(version, text)| views::PolicyDetail {
        version,
        active_version,
        diff: views::side_by_side(&kagi_policy::diff(&active_text, &text)),
        text,
    });
    html(
        status,
        views::policies(viewer, &rows, detail.as_ref(), draft, notice.as_ref()),
    )
}

pub async fn policies_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<PolicyQuery>,
) -> HttpResponse {
    let Some((started, viewer)) = signed_in(&req, &state).await else {
        return redirect("/ui");
    };
    let chosen = query.version;
    render_policies(
        &state,
        started.value,
        &viewer,
        chosen,
        "",
        StatusCode::OK,
        None,
    )
    .await
}

#[derive(Deserialize)]
pub struct ProposeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
}

pub async fn propose_policy(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<ProposeForm>,
) -> HttpResponse {
    let (started, viewer) = match signed_in_form(&req, &state, &form.csrf, "policy.submit").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    // Browsers send form text with CRLF line ends; the document is stored as people wrote it.
    let text = form.into_inner().text.replace("\r\n", "\n");
    let session = started.value;
    match super::policies::submit_text(&state, session.clone(), text.clone()).await {
        Ok(stored) => {
            let notice = Notice::Info(format!(
                "Stored as version {}: it takes effect once activated (below, or 'kagi policy activate {}').",
                stored.version, stored.version
            ));
            render_policies(
                &state,
                session,
                &viewer,
                Some(stored.version),
                "",
                StatusCode::CREATED,
                Some(notice),
            )
            .await
        }
        // The draft stays in the form, with the error (and its line) above it.
        Err(e) => {
            let status = e.status();
            render_policies(
                &state,
                session,
                &viewer,
                None,
                &text,
                status,
                Some(error_notice(&e)),
            )
            .await
        }
    }
}

pub async fn activate_policy(
    req: HttpRequest,
    state: web::Data<AppState>,
    version: web::Path<i64>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let (started, viewer) = match signed_in_form(&req, &state, &form.csrf, "policy.activate").await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let v = version.into_inner();
    let session = started.value;
    let (status, notice) = match super::policies::activate(&state, session.clone(), v).await {
        Ok(Gated::Done(_)) => (
            StatusCode::OK,
            Notice::Info(format!("Policy version {v} is now active.")),
        ),
        Ok(Gated::Pending(a)) => (
            StatusCode::ACCEPTED,
            Notice::Info(format!(
                "Activating version {v} needs {} approval(s): request {} is on the approvals page.",
                a.required, a.id
            )),
        ),
        Err(e) => (e.status(), error_notice(&e)),
    };
    render_policies(&state, session, &viewer, Some(v), "", status, Some(notice)).await
}

// ------------------------------------------------------------------ CAs and certificates

/// Certificates a subject search reads (the CA's newest), before filtering.
const CERT_SEARCH_WINDOW: i64 = 1000;

fn reason_text(code: Option<i64>) -> String {
    kagi_ca::crl::reason_name(code.unwrap_or(0))
}

fn cert_row(c: &kagi_hsm_core::records::ca::CertificateRecord) -> views::CertRow {
    views::CertRow {
        serial: c.serial.clone(),
        ca: c.ca_name.clone(),
        profile: c.profile.clone(),
        subject: c.subject.clone(),
        issued_to: c.issued_to.clone(),
        not_after: rfc3339(c.not_after.saturating_mul(1000)),
        revoked: c.revoked_at.map(|_| reason_text(c.revocation_reason)),
    }
}

#[derive(Deserialize)]
pub struct CertQuery {
    #[serde(default)]
    ca: String,
    #[serde(default)]
    serial: String,
    #[serde(default)]
    subject: String,
}

async fn render_cas(
    state: &AppState,
    viewer: &Viewer,
    search: views::CertSearch,
    status: StatusCode,
    notice: Option<Notice>,
) -> HttpResponse {
    let (serial, ca, subject) = (
        search.serial.trim().to_string(),
        search.ca.clone(),
        search.subject.trim().to_string(),
    );
    let read = blocking(&state.hsm, move |h| {
        let cas = h.list_cas()?;
        let results = if !serial.is_empty() {
            Some(h.certificate(&serial)?.into_iter().collect::<Vec<_>>())
        } else if !ca.is_empty() {
            let list = h.list_certificates(&ca, CERT_SEARCH_WINDOW)?;
            Some(
                list.into_iter()
                    .filter(|c| subject.is_empty() || c.subject.contains(&subject))
                    .collect(),
            )
        } else {
            None
        };
        Ok((cas, results))
    })
    .await;
    let (cas, results) = match read {
        Ok(r) => r,
        Err(e) => {
            return html(
                e.status(),
                views::problem(
                    Some(viewer),
                    "Certificate authorities",
                    &format!("{}: {}", e.code(), e.message()),
                ),
            )
        }
    };
    let rows: Vec<views::CaRow> = cas
        .iter()
        .map(|c| {
            use der::Decode;
            let cert = x509_cert::certificate::Certificate::from_der(&c.cert_der).ok();
            let (subject, not_after) = cert
                .map(|cert| {
                    let tbs = cert.tbs_certificate();
                    (
                        tbs.subject().to_string(),
                        tbs.validity().not_after.to_unix_duration().as_secs(),
                    )
                })
                .unwrap_or_default();
            views::CaRow {
                name: c.name.clone(),
                parent: c.parent.clone(),
                subject,
                not_after: rfc3339(i64::try_from(not_after).unwrap_or(0).saturating_mul(1000)),
                revoked: c.revoked_at.map(|_| reason_text(c.revocation_reason)),
            }
        })
        .collect();
    let results: Option<Vec<views::CertRow>> =
        results.map(|list| list.iter().map(cert_row).collect());
    html(
        status,
        views::cas(viewer, &rows, &search, results.as_deref(), notice.as_ref()),
    )
}

pub async fn cas_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<CertQuery>,
) -> HttpResponse {
    let Some((_, viewer)) = signed_in(&req, &state).await else {
        return redirect("/ui");
    };
    let q = query.into_inner();
    let search = views::CertSearch {
        ca: q.ca.chars().take(128).collect(),
        serial: q.serial.chars().take(128).collect(),
        subject: q.subject.chars().take(256).collect(),
    };
    render_cas(&state, &viewer, search, StatusCode::OK, None).await
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

pub async fn revoke_certificate(
    req: HttpRequest,
    state: web::Data<AppState>,
    serial: web::Path<String>,
    form: web::Form<RevokeForm>,
) -> HttpResponse {
    let (started, viewer) =
        match signed_in_form(&req, &state, &form.csrf, "ca.revoke_certificate").await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let serial = serial.into_inner();
    let session = started.value;
    let reason =
        super::ca_routes::reason_of(&Some(serde_json::Value::String(form.into_inner().reason)));
    let reason = match super::handler::audit_refusal(
        &state,
        &session,
        "ca.revoke_certificate",
        reason,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            let status = e.status();
            let search = views::CertSearch {
                serial: serial.clone(),
                ..Default::default()
            };
            return render_cas(&state, &viewer, search, status, Some(error_notice(&e))).await;
        }
    };
    let revoked =
        super::ca_routes::certificates::revoke(&state, session, serial.clone(), reason).await;
    let (status, notice) = match revoked {
        Ok((rec, crl)) => (
            StatusCode::OK,
            Notice::Info(format!(
                "Certificate {} was revoked ({}); CRL number {crl} of CA '{}' lists it.",
                rec.serial,
                reason_text(Some(reason)),
                rec.ca_name
            )),
        ),
        Err(e) => (e.status(), error_notice(&e)),
    };
    let search = views::CertSearch {
        serial,
        ..Default::default()
    };
    render_cas(&state, &viewer, search, status, Some(notice)).await
}

// ------------------------------------------------------------------ the second factor

/// The otpauth URI authenticator apps read (Key Uri Format): issuer kagi, the person's name.
fn otpauth_uri(name: &str, secret_b32: &str) -> String {
    format!(
        "otpauth://totp/kagi:{name}?secret={secret_b32}&issuer=kagi&algorithm=SHA1&digits={}&period={}",
        kagi_hsm_core::totp::DIGITS,
        kagi_hsm_core::totp::STEP_SECS
    )
}

async fn render_totp(
    state: &AppState,
    s: Session,
    viewer: &Viewer,
    status: StatusCode,
    notice: Option<Notice>,
) -> HttpResponse {
    // A fresh secret each time the page is shown: nothing is stored until a code confirms it.
    let secret = match random_secret() {
        Some(s) => s,
        None => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                views::problem(Some(viewer), "Authenticator", "no random numbers"),
            )
        }
    };
    let b32 = kagi_hsm_core::totp::base32_encode(&secret);
    let enrolled = blocking(&state.hsm, move |h| h.totp_enrolled(&s))
        .await
        .unwrap_or(false);
    let uri = otpauth_uri(&viewer.name, &b32);
    html(
        status,
        views::totp(viewer, enrolled, &uri, &b32, notice.as_ref()),
    )
}

fn random_secret() -> Option<Zeroizing<Vec<u8>>> {
    let hex = kagi_web_ui::random_token()?;
    let bytes: Vec<u8> = (0..kagi_hsm_core::totp::SECRET_LEN)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0))
        .collect();
    Some(Zeroizing::new(bytes))
}

pub async fn totp_page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some((started, viewer)) = signed_in(&req, &state).await else {
        return redirect("/ui");
    };
    render_totp(&state, started.value, &viewer, StatusCode::OK, None).await
}

#[derive(Deserialize)]
pub struct TotpForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    code: String,
    /// A code of the enrolled authenticator, when replacing it.
    #[serde(default)]
    current: String,
}

pub async fn enrol_totp(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<TotpForm>,
) -> HttpResponse {
    let (started, viewer) = match signed_in_form(&req, &state, &form.csrf, "credential.totp").await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let form = form.into_inner();
    let session = started.value;
    let Some(secret) = kagi_hsm_core::totp::base32_decode(&form.secret).map(Zeroizing::new) else {
        let e = ApiError::new(
            super::error_codes::Code::BadRequest,
            "the enrolment form's secret is not base32: start again",
        );
        return render_totp(&state, session, &viewer, e.status(), Some(error_notice(&e))).await;
    };
    let s = session.clone();
    let (code, current) = (form.code, form.current);
    let result = blocking(&state.hsm, move |h| {
        let current = Some(current.as_str()).filter(|c| !c.trim().is_empty());
        h.enrol_totp(&s, &secret, &code, current)
    })
    .await;
    let (status, notice) = match result {
        Ok(()) => (
            StatusCode::OK,
            Notice::Info(
                "The authenticator is enrolled: from now on sign-in asks for its code.".into(),
            ),
        ),
        Err(e) => (e.status(), error_notice(&e)),
    };
    render_totp(&state, session, &viewer, status, Some(notice)).await
}

#[derive(Deserialize)]
pub struct RemoveTotpForm {
    #[serde(default)]
    csrf: String,
    /// A code the enrolled authenticator shows now.
    #[serde(default)]
    current: String,
    /// The person whose authenticator an administrator removes.
    #[serde(default)]
    name: String,
}

/// `POST /ui/totp/remove`: the person removes their own authenticator with a current code.
pub async fn remove_totp(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<RemoveTotpForm>,
) -> HttpResponse {
    let (started, viewer) =
        match signed_in_form(&req, &state, &form.csrf, "credential.totp_removed").await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let session = started.value;
    let (s, current) = (session.clone(), form.into_inner().current);
    let result = blocking(&state.hsm, move |h| h.remove_own_totp(&s, &current)).await;
    let (status, notice) = match result {
        Ok(()) => (
            StatusCode::OK,
            Notice::Info(
                "The authenticator is removed: sign-in asks only for your password.".into(),
            ),
        ),
        Err(e) => (e.status(), error_notice(&e)),
    };
    render_totp(&state, session, &viewer, status, Some(notice)).await
}

/// `POST /ui/totp/remove-for`: an administrator removes the authenticator of a person who lost
/// their device (hsm-core checks the role and audits it).
pub async fn remove_totp_for(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<RemoveTotpForm>,
) -> HttpResponse {
    let (started, viewer) =
        match signed_in_form(&req, &state, &form.csrf, "credential.totp_removed").await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let session = started.value;
    let name = form.into_inner().name;
    let (s, n2) = (session.clone(), name.clone());
    let result = blocking(&state.hsm, move |h| h.remove_totp_of(&s, &n2)).await;
    let (status, notice) = match result {
        Ok(()) => (
            StatusCode::OK,
            Notice::Info(format!(
                "The authenticator of '{name}' is removed: they sign in with their password until they enrol a new one."
            )),
        ),
        Err(e) => {
            let e = super::handler::audited(&state, &session, "credential.totp_removed", e).await;
            (e.status(), error_notice(&e))
        }
    };
    render_totp(&state, session, &viewer, status, Some(notice)).await
}

#[derive(Deserialize)]
pub struct IdentityForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
}

/// An administrator makes a pipeline or line identity (role user); its token is shown once.
/// People are made with the CLI, where their officer role may need the quorum.
pub async fn create_identity(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<IdentityForm>,
) -> HttpResponse {
    let (started, viewer) =
        match signed_in_form(&req, &state, &form.csrf, "credential.create").await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let form = form.into_inner();
    let session = started.value;
    let kind = match form.kind.as_str() {
        "line" => kagi_hsm_core::IdentityKind::Line,
        "pipeline" => kagi_hsm_core::IdentityKind::Pipeline,
        _ => {
            let e = ApiError::new(
                super::error_codes::Code::BadRequest,
                "the console makes pipelines and lines; make people with 'kagi identity create'",
            );
            let e = super::handler::audited(&state, &session, "credential.create", e).await;
            let status = e.status();
            return render_quotas(
                &state,
                session,
                &viewer,
                status,
                None,
                Some(error_notice(&e)),
            )
            .await;
        }
    };
    let spec = kagi_hsm_core::IdentitySpec {
        partition: None,
        name: form.name,
        kind,
        roles: vec![kagi_hsm_core::Role::User],
        expires_at: None,
        client_cert_sha256: None,
    };
    let s = session.clone();
    let created = blocking(&state.hsm, move |h| h.create_identity(&s, &spec, None)).await;
    match created {
        Ok(Gated::Done((info, token))) => {
            let shown = views::NewToken {
                name: info.name.clone(),
                token: token.as_str().to_string(),
            };
            let notice = Notice::Info(format!(
                "{} '{}' was created.",
                info.kind.as_str(),
                info.name
            ));
            render_quotas(
                &state,
                session,
                &viewer,
                StatusCode::CREATED,
                Some(shown),
                Some(notice),
            )
            .await
        }
        // Only administrator and officer roles wait for a quorum; these have neither.
        Ok(Gated::Pending(a)) => {
            let notice = Notice::Info(format!("Request {} waits for approval.", a.id));
            render_quotas(
                &state,
                session,
                &viewer,
                StatusCode::ACCEPTED,
                None,
                Some(notice),
            )
            .await
        }
        Err(e) => {
            let status = e.status();
            render_quotas(
                &state,
                session,
                &viewer,
                status,
                None,
                Some(error_notice(&e)),
            )
            .await
        }
    }
}

/// An issued certificate as PEM (what `GET /api/v1/certificates/{serial}` carries).
pub async fn certificate_pem(
    req: HttpRequest,
    state: web::Data<AppState>,
    serial: web::Path<String>,
) -> HttpResponse {
    let Some((_, viewer)) = signed_in(&req, &state).await else {
        return redirect("/ui");
    };
    let serial = serial.into_inner();
    let s2 = serial.clone();
    match blocking(&state.hsm, move |h| h.certificate(&s2)).await {
        Ok(Some(c)) => {
            let mut r = HttpResponse::Ok();
            secure_headers(&mut r);
            // The stored serial is lowercase hex: safe in the header as it is.
            r.content_type("application/x-pem-file")
                .insert_header((
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}.pem\"", c.serial),
                ))
                .body(kagi_ca::x509::pem("CERTIFICATE", &c.der).unwrap_or_default())
        }
        Ok(None) => html(
            StatusCode::NOT_FOUND,
            views::problem(
                Some(&viewer),
                "Certificate authorities",
                "not_found: no certificate with that serial",
            ),
        ),
        Err(e) => html(
            e.status(),
            views::problem(
                Some(&viewer),
                "Certificate authorities",
                &format!("{}: {}", e.code(), e.message()),
            ),
        ),
    }
}
