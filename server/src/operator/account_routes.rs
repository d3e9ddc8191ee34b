//! The people's routes: signing in and out of the console, the session a page runs under, and
//! the accounts an admin manages (`accounts.rs` keeps them).
//!
//! | route | body | who | does |
//! |---|---|---|---|
//! | `POST /api/v1/sign-in` | [`SignIn`] | anyone | checks name and password, sets the session cookie, answers [`SessionView`] |
//! | `GET /api/v1/session` | – | all | who the caller is, and the CSRF token a console page sends with changes |
//! | `POST /api/v1/sign-out` | – | all | ends the cookie's session |
//! | `POST /api/v1/session/password` | [`OwnPasswordRequest`] | all, with a session | a person changes their own password; their other sessions end, this one goes on under a new cookie |
//! | `GET /api/v1/users` | – | admin | every account ([`Account`]) |
//! | `POST /api/v1/users` | [`NewAccountRequest`] | admin | creates one |
//! | `POST /api/v1/users/{name}/disable` | – | admin | signs it out everywhere and keeps it out |
//! | `POST /api/v1/users/{name}/enable` | – | admin | lets it sign in again |
//! | `POST /api/v1/users/{name}/password` | [`PasswordRequest`] | admin | a new password; signs it out |
//! | `POST /api/v1/users/{name}/role` | [`RoleRequest`] | admin | a new role; signs it out |
//!
//! Sign-in failures count against the source address like a wrong token does
//! (`auth_limiter.rs`). Successful sign-ins, sign-outs and every account change are in the
//! audit log; the password never is, nor in any log line.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Extension, FromRequest, Path as UrlPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::Timestamp;
use radio_config::Role;
use serde::{Deserialize, Serialize};

use crate::operator::accounts::{Account, AccountError, LoginError, NewAccount, SESSION_MAX};
use crate::operator::admin::{session_cookie, Actor, AdminState, ApiError, Body, SESSION_COOKIE};
use crate::operator::audit_log::AuditAction;

/// `POST /api/v1/sign-in`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub name: String,
    pub password: String,
}

/// Who a session belongs to, and its CSRF token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionView {
    pub name: String,
    pub role: Role,
    /// An operator's communes.
    pub communes: Vec<String>,
    /// To send in the `X-CSRF-Token` header with every change; `None` for a bearer token,
    /// which needs none.
    pub csrf: Option<String>,
}

/// `POST /api/v1/users`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccountRequest {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub communes: Vec<String>,
    pub password: String,
}

/// `POST /api/v1/users/{name}/password`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    pub password: String,
}

/// `POST /api/v1/session/password`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OwnPasswordRequest {
    pub current: String,
    pub new: String,
}

/// `POST /api/v1/users/{name}/role`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    pub role: Role,
    #[serde(default)]
    pub communes: Vec<String>,
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Invalid { .. } => ApiError::bad_request(e.to_string()),
            AccountError::Exists(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            AccountError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            AccountError::Db { .. } | AccountError::Corrupt { .. } => {
                ApiError::internal(e.to_string())
            }
        }
    }
}

/// Runs an account operation (argon2 takes tens of milliseconds of CPU, and sled flushes) off
/// the async workers.
async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, AccountError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| ApiError::internal(format!("account task failed: {e}")))?
        .map_err(ApiError::from)
}

/// `POST /api/v1/sign-in`: outside the token check (it is how a person gets a session), so it
/// applies the lock-out itself.
pub(crate) async fn sign_in(State(state): State<Arc<AdminState>>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    if let Some(refusal) = peer.and_then(|p| state.refuse_locked_out(p)) {
        return refusal;
    }
    let Body(SignIn { name, password }) = match Body::<SignIn>::from_request(request, &()).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let accounts = state.store().accounts().clone();
    let who = name.clone();
    let verified = tokio::task::spawn_blocking(move || accounts.verify(&who, &password)).await;
    let account = match verified {
        Ok(Ok(account)) => account,
        Ok(Err(LoginError::Store(e))) => return ApiError::from(e).into_response(),
        Ok(Err(refused)) => {
            let shown_peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
            tracing::warn!(peer = %shown_peer, account = %name, "console: sign-in refused: {refused}");
            if let Some(peer) = peer {
                state.count_failure(peer);
            }
            let message = match refused {
                LoginError::Disabled => {
                    "this account is disabled: ask the district's administrator to enable it"
                }
                _ => "wrong name or password",
            };
            return ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
        }
        Err(e) => return ApiError::internal(format!("sign-in task failed: {e}")).into_response(),
    };
    let accounts = state.store().accounts().clone();
    let account_name = account.name.clone();
    let started = blocking(move || accounts.start_session(&account_name, Timestamp::now())).await;
    let session = match started {
        Ok(session) => session,
        Err(e) => return e.into_response(),
    };
    let actor = Actor {
        caller: crate::operator::admin::Caller {
            name: account.name.clone(),
            role: account.role,
            stations: account.communes.clone(),
        },
        source: peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
        csrf: None,
    };
    let _ = state
        .audit(&actor, AuditAction::SignIn, &account.name, None, Ok(()))
        .await;
    let view = SessionView {
        name: account.name,
        role: account.role,
        communes: account.communes,
        csrf: Some(session.csrf),
    };
    let mut response = Json(view).into_response();
    if let Some(value) = session_cookie_header(&session.id) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `GET /api/v1/session`.
pub(crate) async fn session(Extension(actor): Extension<Actor>) -> Json<SessionView> {
    Json(SessionView {
        name: actor.caller.name,
        role: actor.caller.role,
        communes: actor.caller.stations,
        csrf: actor.csrf,
    })
}

/// `POST /api/v1/sign-out`: ends the cookie's session and tells the browser to forget it.
pub(crate) async fn sign_out(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(id) = session_cookie(&headers) {
        let accounts = state.store().accounts().clone();
        blocking(move || accounts.end_session(&id)).await?;
        state
            .audit(
                &actor,
                AuditAction::SignOut,
                &actor.caller.name,
                None,
                Ok(()),
            )
            .await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let expired =
        format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// The `Set-Cookie` value of a new session.
fn session_cookie_header(id: &str) -> Option<HeaderValue> {
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_MAX.as_secs()
    );
    HeaderValue::from_str(&cookie).ok()
}

/// `POST /api/v1/session/password`: the current password again, so that a session left open
/// on a shared PC cannot lock its owner out; a wrong one counts as a failed authentication.
pub(crate) async fn own_password(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Body(request): Body<OwnPasswordRequest>,
) -> Result<Response, ApiError> {
    // Not audited: a token asks for no change it could make, like a body that is not JSON.
    if actor.csrf.is_none() {
        return Err(ApiError::bad_request(
            "a token has no password: sign in to the console, or use `radio-server user \
             password NAME` on the server",
        ));
    }
    let name = actor.caller.name.clone();
    let accounts = state.store().accounts().clone();
    let who = name.clone();
    let current = request.current;
    let verified = tokio::task::spawn_blocking(move || accounts.verify(&who, &current))
        .await
        .map_err(|e| ApiError::internal(format!("password task failed: {e}")))?;
    match verified {
        Ok(_) => {}
        Err(LoginError::Store(e)) => return Err(e.into()),
        Err(_) => {
            state.count_failure(peer);
            return Err(ApiError::bad_request(
                "the current password is wrong; nothing was changed",
            ));
        }
    }
    let accounts = state.store().accounts().clone();
    let who = name.clone();
    let result = blocking(move || {
        accounts.set_password(&who, &request.new, Timestamp::now())?;
        accounts.start_session(&who, Timestamp::now())
    })
    .await;
    let session = state
        .audit(&actor, AuditAction::AccountPassword, &name, None, result)
        .await?;
    let view = SessionView {
        name,
        role: actor.caller.role,
        communes: actor.caller.stations,
        csrf: Some(session.csrf),
    };
    let mut response = Json(view).into_response();
    if let Some(value) = session_cookie_header(&session.id) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `GET /api/v1/users`.
pub(crate) async fn list(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<Account>>, ApiError> {
    let accounts = state.store().accounts().clone();
    blocking(move || accounts.list()).await.map(Json)
}

/// Communes the district does not have, named in a 400.
fn check_communes(state: &AdminState, communes: &[String]) -> Result<(), ApiError> {
    let unknown: Vec<&str> = communes
        .iter()
        .filter(|c| !state.district().stations.iter().any(|s| &s.id == *c))
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "communes: {} {} not a station of {}",
            unknown.join(", "),
            if unknown.len() == 1 { "is" } else { "are" },
            state.district().name
        )))
    }
}

/// `POST /api/v1/users`.
pub(crate) async fn create(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Body(request): Body<NewAccountRequest>,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    let name = request.name.clone();
    let result = match check_communes(&state, &request.communes) {
        Err(e) => Err(e),
        Ok(()) => {
            let accounts = state.store().accounts().clone();
            blocking(move || {
                accounts.create(
                    NewAccount {
                        name: request.name,
                        role: request.role,
                        communes: request.communes,
                        password: request.password,
                    },
                    Timestamp::now(),
                )
            })
            .await
        }
    };
    let account = state
        .audit(&actor, AuditAction::AccountCreate, &name, None, result)
        .await?;
    Ok((StatusCode::CREATED, Json(account)))
}

/// `POST /api/v1/users/{name}/disable`.
pub(crate) async fn disable(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Account>, ApiError> {
    let result = if name == actor.caller.name {
        // The last admin locking themselves out would leave only the server's shell to undo it.
        Err(ApiError::bad_request(
            "you cannot disable your own account; another admin can",
        ))
    } else {
        let accounts = state.store().accounts().clone();
        let target = name.clone();
        blocking(move || accounts.set_disabled(&target, true)).await
    };
    state
        .audit(&actor, AuditAction::AccountDisable, &name, None, result)
        .await
        .map(Json)
}

/// `POST /api/v1/users/{name}/enable`.
pub(crate) async fn enable(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Account>, ApiError> {
    let accounts = state.store().accounts().clone();
    let target = name.clone();
    let result = blocking(move || accounts.set_disabled(&target, false)).await;
    state
        .audit(&actor, AuditAction::AccountEnable, &name, None, result)
        .await
        .map(Json)
}

/// `POST /api/v1/users/{name}/password`.
pub(crate) async fn password(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    UrlPath(name): UrlPath<String>,
    Body(request): Body<PasswordRequest>,
) -> Result<Json<Account>, ApiError> {
    let accounts = state.store().accounts().clone();
    let target = name.clone();
    let result = blocking(move || {
        accounts.set_password(&target, &request.password, Timestamp::now())?;
        accounts
            .get(&target)?
            .ok_or(AccountError::NotFound(target.clone()))
    })
    .await;
    state
        .audit(&actor, AuditAction::AccountPassword, &name, None, result)
        .await
        .map(Json)
}

/// `POST /api/v1/users/{name}/role`.
pub(crate) async fn role(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    UrlPath(name): UrlPath<String>,
    Body(request): Body<RoleRequest>,
) -> Result<Json<Account>, ApiError> {
    let result = match check_communes(&state, &request.communes) {
        Err(e) => Err(e),
        Ok(()) => {
            let accounts = state.store().accounts().clone();
            let target = name.clone();
            blocking(move || accounts.set_role(&target, request.role, request.communes)).await
        }
    };
    state
        .audit(&actor, AuditAction::AccountRole, &name, None, result)
        .await
        .map(Json)
}
