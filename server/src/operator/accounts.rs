//! The operator console's accounts and sign-in sessions, in the `accounts` and `sessions` trees
//! of the store.
//!
//! An account is a person's name, role and (for a commune operator) communes, with an argon2id
//! hash of their password: the store never holds a password, so a copy of it (a backup, a bug
//! report, a stolen SD card) gives nobody a way in without a costly guess per password per
//! account. A session is what a browser holds after signing in; its id is 32 random bytes, and
//! the `sessions` tree is keyed by the id's SHA-256 and holds no id either, so the same copy of
//! the store hands out no live sessions. SHA-256 is enough there: the id is random, so there is
//! nothing to guess that a slow hash would protect.
//!
//! Signing in with a name that has no account still runs one argon2 verification, against a
//! fixed dummy hash with the same parameters: otherwise an unknown name would be answered in
//! microseconds and a known one in tens of milliseconds, and anyone could list the district's
//! accounts by timing the sign-in form.
//!
//! Every change is flushed before it returns, like the rest of the store: an account the admin
//! was told was created, or a password they were told was changed, must survive a power cut.
//! The only writes not flushed are a session's `last_seen` refresh and the removal of a session
//! found dead when used: losing either in a power cut makes a session at most a minute shorter,
//! or leaves a record that is refused again and removed at its next use.
//!
//! Changing a password, a role, or disabling an account ends its sessions. Each account record
//! also carries a generation that those changes bump and every session records, so a session
//! left behind (a power cut between the account's write and the sessions' removal) is refused
//! all the same.
//!
//! Everything here is blocking (argon2 takes tens of milliseconds, a flush waits for the disk):
//! call it off the async runtime's threads.

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use jiff::{SignedDuration, Timestamp};
use radio_config::Role;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The tree of accounts: name → JSON.
const ACCOUNTS_TREE: &str = "accounts";
/// The tree of sessions: SHA-256 of the session id → JSON.
const SESSIONS_TREE: &str = "sessions";

/// The name the district's own token goes by in the audit log; an account of that name would
/// make the log ambiguous.
pub const RESERVED_NAME: &str = "district";
/// Longest account name, in characters.
pub const NAME_MAX: usize = 32;
/// Shortest password, in characters.
pub const PASSWORD_MIN: usize = 10;
/// Longest password, in characters: a bound on the work one sign-in request can ask for.
pub const PASSWORD_MAX: usize = 200;
/// A session unused for longer than this is over.
pub const SESSION_IDLE: SignedDuration = SignedDuration::from_hours(12);
/// A session older than this is over, however busy.
pub const SESSION_MAX: SignedDuration = SignedDuration::from_hours(7 * 24);
/// How stale a session's `last_seen` may get before it is written again: a write per request
/// would put the disk on every page load, and a minute is nothing against `SESSION_IDLE`.
const TOUCH_EVERY: SignedDuration = SignedDuration::from_mins(1);
/// Random bytes in a session id and in a CSRF token.
const SESSION_BYTES: usize = 32;
/// The password of the dummy hash. Whatever it is, a sign-in with an unknown name is refused.
const DUMMY_PASSWORD: &str = "no account has this password";

/// What can go wrong with the accounts. Messages are for the admin who asked.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A field of a request is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// An account of that name exists already.
    #[error("an account named `{0}` already exists")]
    Exists(String),
    /// No account of that name.
    #[error("there is no account named `{0}`")]
    NotFound(String),
    /// sled failed.
    #[error("{}: the accounts: {reason}", path.display())]
    Db { path: PathBuf, reason: String },
    /// A stored record does not decode (damaged, or written by an incompatible version).
    #[error("{}: the accounts: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

/// Why a sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// One message for both, so the answer does not say which names exist.
    #[error("wrong name or password")]
    WrongNameOrPassword,
    /// The right password for an account an admin has disabled.
    #[error("this account is disabled; ask the district's administrator")]
    Disabled,
    #[error(transparent)]
    Store(#[from] AccountError),
}

/// A console account as the rest of the server sees it: never with its password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub role: Role,
    /// The communes a commune operator works for; empty for admins and viewers.
    pub communes: Vec<String>,
    /// Refused at sign-in, and its sessions ended.
    pub disabled: bool,
    pub created: Timestamp,
    pub password_changed: Timestamp,
}

/// An account to create.
#[derive(Clone)]
pub struct NewAccount {
    pub name: String,
    pub role: Role,
    pub communes: Vec<String>,
    pub password: String,
}

impl fmt::Debug for NewAccount {
    // A request logged at debug level must not put the password in the log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAccount")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("communes", &self.communes)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// A signed-in browser.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The account's name.
    pub account: String,
    /// The token the console's forms and scripts send back with each change (hex).
    pub csrf: String,
    pub created: Timestamp,
    /// The last use, to within `TOUCH_EVERY`.
    pub last_seen: Timestamp,
}

impl Session {
    /// Whether `given` is this session's CSRF token, in constant time, so the answer's timing
    /// says nothing about how much of a guess was right.
    pub fn csrf_matches(&self, given: &str) -> bool {
        let (given, csrf) = (given.as_bytes(), self.csrf.as_bytes());
        given.len() == csrf.len() && bool::from(given.ct_eq(csrf))
    }

    fn expired(&self, now: Timestamp) -> bool {
        now.duration_since(self.last_seen) > SESSION_IDLE
            || now.duration_since(self.created) > SESSION_MAX
    }
}

impl fmt::Debug for Session {
    // The CSRF token is half of what a forged request needs; keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("account", &self.account)
            .field("csrf", &"<hidden>")
            .field("created", &self.created)
            .field("last_seen", &self.last_seen)
            .finish()
    }
}

/// A session just started: the id goes to the browser (as a cookie) and exists nowhere else.
#[derive(Clone)]
pub struct NewSession {
    /// 32 random bytes, hex.
    pub id: String,
    /// 32 random bytes, hex; also in `session.csrf`.
    pub csrf: String,
    pub session: Session,
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession")
            .field("id", &"<hidden>")
            .field("csrf", &"<hidden>")
            .field("session", &self.session)
            .finish()
    }
}

/// An account as stored: the only place the password hash lives.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    account: Account,
    /// PHC string (`$argon2id$v=19$m=…`).
    password_hash: String,
    /// Bumped by every change that ends the account's sessions.
    #[serde(default)]
    generation: u64,
}

/// A session as stored.
#[derive(Serialize, Deserialize)]
struct StoredSession {
    session: Session,
    /// The account's generation when the session started; a different one ends it.
    generation: u64,
}

/// The accounts and sessions in the store.
#[derive(Debug, Clone)]
pub struct Accounts {
    db: sled::Db,
    accounts: sled::Tree,
    sessions: sled::Tree,
    path: PathBuf,
    gate: crate::records::write_gate::WriteGate,
}

/// The name of the account [`create_first_admin`] creates.
pub const FIRST_ADMIN: &str = "admin";

/// On a store with no account yet, creates [`FIRST_ADMIN`] with a random password and returns
/// the password, which nothing keeps: the caller shows it once. `None` when there are accounts
/// already, so that a restart never resets a password someone chose. Blocking (argon2).
pub fn create_first_admin(accounts: &Accounts) -> Result<Option<String>, AccountError> {
    if !accounts.is_empty()? {
        return Ok(None);
    }
    // No 0/O, 1/l/I: read off a screen and typed on a phone.
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    let password: String = (0..16)
        .map(|i| {
            let c = ALPHABET[rand::Rng::gen_range(&mut rng, 0..ALPHABET.len())] as char;
            if i > 0 && i % 4 == 0 {
                format!("-{c}")
            } else {
                c.to_string()
            }
        })
        .collect();
    accounts.create(
        NewAccount {
            name: FIRST_ADMIN.to_owned(),
            role: Role::Admin,
            communes: Vec::new(),
            password: password.clone(),
        },
        Timestamp::now(),
    )?;
    Ok(Some(password))
}

/// The line that shows the first admin's password, the same wherever the server starts (tests
/// and people's notes look for it).
pub fn first_admin_notice(password: &str) -> String {
    format!(
        "console admin account \"{FIRST_ADMIN}\", password {password} (shown once: change it in \
         the console, button Đổi mật khẩu, or with `radio-server user password {FIRST_ADMIN}`)"
    )
}

impl Accounts {
    /// Opens the two trees of `db`; `path` is where `db` is, for messages.
    pub fn open(db: &sled::Db, path: PathBuf) -> Result<Accounts, AccountError> {
        let db_error = |e: sled::Error| AccountError::Db {
            path: path.clone(),
            reason: e.to_string(),
        };
        let accounts = db.open_tree(ACCOUNTS_TREE).map_err(db_error)?;
        let sessions = db.open_tree(SESSIONS_TREE).map_err(db_error)?;
        // Computed now rather than at the first unknown name, which would otherwise take twice
        // as long as any other sign-in.
        let _ = dummy_hash();
        Ok(Accounts {
            db: db.clone(),
            accounts,
            sessions,
            path,
            gate: Default::default(),
        })
    }

    /// Creates an account; durable when this returns.
    pub fn create(&self, new: NewAccount, now: Timestamp) -> Result<Account, AccountError> {
        check_name(&new.name)?;
        check_communes(new.role, &new.communes)?;
        check_password(&new.password)?;
        let password_hash = self.hash(&new.password)?;
        let stored = StoredAccount {
            account: Account {
                name: new.name,
                role: new.role,
                communes: new.communes,
                disabled: false,
                created: now,
                password_changed: now,
            },
            password_hash,
            generation: 0,
        };
        let value = self.encode(&stored)?;
        // Compare-and-swap, so two admins creating the same name at once cannot overwrite one
        // another's account.
        self.write(|| {
            self.accounts.compare_and_swap(
                stored.account.name.as_bytes(),
                None::<&[u8]>,
                Some(value),
            )
        })?
        .map_err(|_| AccountError::Exists(stored.account.name.clone()))?;
        self.flush()?;
        Ok(stored.account)
    }

    /// Every account, by name.
    pub fn list(&self) -> Result<Vec<Account>, AccountError> {
        // sled iterates in key order, and names are ASCII: that is the order of names.
        self.accounts
            .iter()
            .map(|item| {
                let (key, value) = item.map_err(|e| self.db_error(e))?;
                Ok(self.decode_account(&key, &value)?.account)
            })
            .collect()
    }

    /// The account named `name`, if there is one.
    pub fn get(&self, name: &str) -> Result<Option<Account>, AccountError> {
        Ok(self.stored(name)?.map(|stored| stored.account))
    }

    /// Whether there are no accounts yet.
    pub fn is_empty(&self) -> Result<bool, AccountError> {
        Ok(self
            .accounts
            .first()
            .map_err(|e| self.db_error(e))?
            .is_none())
    }

    /// The account, if `password` is its password and it is not disabled. Takes one argon2
    /// verification whether or not the name exists.
    pub fn verify(&self, name: &str, password: &str) -> Result<Account, LoginError> {
        let Some(stored) = self.stored(name)? else {
            if let Some(dummy) = dummy_hash().and_then(|phc| PasswordHash::new(phc).ok()) {
                let _ = password_matches(password, &dummy);
            }
            return Err(LoginError::WrongNameOrPassword);
        };
        let parsed =
            PasswordHash::new(&stored.password_hash).map_err(|e| AccountError::Corrupt {
                path: self.path.clone(),
                reason: format!("the password hash of `{name}` cannot be read: {e}"),
            })?;
        if !password_matches(password, &parsed) {
            return Err(LoginError::WrongNameOrPassword);
        }
        // Only after the password: a disabled account says so only to someone who knows it.
        if stored.account.disabled {
            return Err(LoginError::Disabled);
        }
        Ok(stored.account)
    }

    /// Replaces the password and ends the account's sessions.
    pub fn set_password(
        &self,
        name: &str,
        password: &str,
        now: Timestamp,
    ) -> Result<(), AccountError> {
        check_password(password)?;
        let password_hash = self.hash(password)?;
        self.modify(name, |stored| {
            stored.password_hash.clone_from(&password_hash);
            stored.account.password_changed = now;
            stored.generation = stored.generation.wrapping_add(1);
        })?;
        self.end_sessions_of(name)?;
        Ok(())
    }

    /// Disables or enables the account; disabling ends its sessions.
    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<Account, AccountError> {
        let stored = self.modify(name, |stored| {
            stored.account.disabled = disabled;
            if disabled {
                stored.generation = stored.generation.wrapping_add(1);
            }
        })?;
        if disabled {
            self.end_sessions_of(name)?;
        }
        Ok(stored.account)
    }

    /// Changes the role and communes and ends the account's sessions, so that the new role
    /// holds from the next sign-in rather than half-way through someone's work.
    pub fn set_role(
        &self,
        name: &str,
        role: Role,
        communes: Vec<String>,
    ) -> Result<Account, AccountError> {
        check_communes(role, &communes)?;
        let stored = self.modify(name, |stored| {
            stored.account.role = role;
            stored.account.communes.clone_from(&communes);
            stored.generation = stored.generation.wrapping_add(1);
        })?;
        self.end_sessions_of(name)?;
        Ok(stored.account)
    }

    /// Starts a session for `name` (after `verify`); durable when this returns.
    pub fn start_session(&self, name: &str, now: Timestamp) -> Result<NewSession, AccountError> {
        let stored = self
            .stored(name)?
            .ok_or_else(|| AccountError::NotFound(name.to_owned()))?;
        if stored.account.disabled {
            return Err(AccountError::Invalid {
                field: "name",
                message: format!("the account `{name}` is disabled"),
            });
        }
        let id = random_hex();
        let csrf = random_hex();
        let session = Session {
            account: name.to_owned(),
            csrf: csrf.clone(),
            created: now,
            last_seen: now,
        };
        let value = self.encode(&StoredSession {
            session: session.clone(),
            generation: stored.generation,
        })?;
        self.write(|| self.sessions.insert(session_key(&id), value))?;
        self.flush()?;
        Ok(NewSession { id, csrf, session })
    }

    /// The session of id `id` and its account, if the session is live: known, not expired, and
    /// of an account that still exists, is not disabled and has not changed since. Sessions
    /// found dead are removed.
    pub fn session(
        &self,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<(Session, Account)>, AccountError> {
        let key = session_key(id);
        let Some(value) = self.sessions.get(key).map_err(|e| self.db_error(e))? else {
            return Ok(None);
        };
        let Some((mut stored, account)) = self.live_session(&value, now)? else {
            // Not flushed (see the module's doc): a dead session that comes back is dead again.
            self.write(|| self.sessions.remove(key))?;
            return Ok(None);
        };
        if now.duration_since(stored.session.last_seen) >= TOUCH_EVERY {
            stored.session.last_seen = now;
            let touched = self.encode(&stored)?;
            // Compare-and-swap, so a refresh racing a sign-out cannot bring the session back.
            if let Err(lost) = self.write(|| {
                self.sessions
                    .compare_and_swap(key, Some(&value), Some(touched))
            })? {
                if lost.current.is_none() {
                    return Ok(None);
                }
            }
        }
        Ok(Some((stored.session, account)))
    }

    /// Ends the session of id `id`; whether there was one.
    pub fn end_session(&self, id: &str) -> Result<bool, AccountError> {
        let removed = self.write(|| self.sessions.remove(session_key(id)))?;
        self.flush()?;
        Ok(removed.is_some())
    }

    /// Ends every session of the account `name`; how many there were.
    pub fn end_sessions_of(&self, name: &str) -> Result<usize, AccountError> {
        let mut removed = 0;
        for item in self.sessions.iter() {
            let (key, value) = item.map_err(|e| self.db_error(e))?;
            // An unreadable session is left to `purge_expired`: it is nobody's, and refused.
            let of_name = serde_json::from_slice::<StoredSession>(&value)
                .is_ok_and(|stored| stored.session.account == name);
            if of_name {
                self.write(|| self.sessions.remove(&key))?;
                removed += 1;
            }
        }
        self.flush()?;
        Ok(removed)
    }

    /// Removes the sessions that can no longer be used: expired, of an account gone, disabled
    /// or changed since, or unreadable; how many.
    pub fn purge_expired(&self, now: Timestamp) -> Result<usize, AccountError> {
        let mut removed = 0;
        for item in self.sessions.iter() {
            let (key, value) = item.map_err(|e| self.db_error(e))?;
            if self.live_session(&value, now)?.is_none() {
                // Unless refreshed meanwhile (then it was live after all).
                let swapped = self.write(|| {
                    self.sessions
                        .compare_and_swap(&key, Some(&value), None::<&[u8]>)
                })?;
                if swapped.is_ok() {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            self.flush()?;
        }
        Ok(removed)
    }

    /// The session stored as `value` with its account, if it is still live at `now`.
    fn live_session(
        &self,
        value: &[u8],
        now: Timestamp,
    ) -> Result<Option<(StoredSession, Account)>, AccountError> {
        let Ok(stored) = serde_json::from_slice::<StoredSession>(value) else {
            // A session is cheap to lose (its holder signs in again) and an error here would
            // leave the holder's browser stuck on it.
            tracing::warn!(
                path = %self.path.display(),
                "a stored session cannot be read; removing it"
            );
            return Ok(None);
        };
        if stored.session.expired(now) {
            return Ok(None);
        }
        match self.stored(&stored.session.account)? {
            Some(account)
                if !account.account.disabled && account.generation == stored.generation =>
            {
                Ok(Some((stored, account.account)))
            }
            _ => Ok(None),
        }
    }

    /// Applies `change` to the account `name` and stores it; durable when this returns.
    fn modify(
        &self,
        name: &str,
        mut change: impl FnMut(&mut StoredAccount),
    ) -> Result<StoredAccount, AccountError> {
        // Compare-and-swap in a loop: two admins changing one account at once (one its role,
        // one its password) both get their change.
        loop {
            let Some(old) = self
                .accounts
                .get(name.as_bytes())
                .map_err(|e| self.db_error(e))?
            else {
                return Err(AccountError::NotFound(name.to_owned()));
            };
            let mut stored = self.decode_account(name.as_bytes(), &old)?;
            change(&mut stored);
            let new = self.encode(&stored)?;
            let swapped = self.write(|| {
                self.accounts
                    .compare_and_swap(name.as_bytes(), Some(&old), Some(new))
            })?;
            if swapped.is_ok() {
                self.flush()?;
                return Ok(stored);
            }
        }
    }

    fn stored(&self, name: &str) -> Result<Option<StoredAccount>, AccountError> {
        let Some(value) = self
            .accounts
            .get(name.as_bytes())
            .map_err(|e| self.db_error(e))?
        else {
            return Ok(None);
        };
        self.decode_account(name.as_bytes(), &value).map(Some)
    }

    fn decode_account(&self, key: &[u8], value: &[u8]) -> Result<StoredAccount, AccountError> {
        serde_json::from_slice(value).map_err(|e| AccountError::Corrupt {
            path: self.path.clone(),
            reason: format!(
                "the account `{}` cannot be read: {e}",
                String::from_utf8_lossy(key)
            ),
        })
    }

    fn encode(&self, value: &impl Serialize) -> Result<Vec<u8>, AccountError> {
        serde_json::to_vec(value).map_err(|e| AccountError::Db {
            path: self.path.clone(),
            reason: format!("cannot encode a record: {e}"),
        })
    }

    fn hash(&self, password: &str) -> Result<String, AccountError> {
        hash_password(password).map_err(|e| AccountError::Db {
            path: self.path.clone(),
            reason: format!("cannot hash the password: {e}"),
        })
    }

    /// One change to a tree, through the store's write gate (`records/write_gate.rs`).
    fn write<T>(&self, change: impl FnOnce() -> sled::Result<T>) -> Result<T, AccountError> {
        let _gate = self.gate.enter();
        change().map_err(|e| self.db_error(e))
    }

    /// Writes pass `gate` (the store's).
    pub(crate) fn gated(mut self, gate: crate::records::write_gate::WriteGate) -> Self {
        self.gate = gate;
        self
    }

    fn flush(&self) -> Result<(), AccountError> {
        self.db.flush().map_err(|e| self.db_error(e))?;
        Ok(())
    }

    fn db_error(&self, e: sled::Error) -> AccountError {
        AccountError::Db {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }
}

fn check_name(name: &str) -> Result<(), AccountError> {
    let invalid = |message: String| {
        Err(AccountError::Invalid {
            field: "name",
            message,
        })
    };
    if name.is_empty() || name.chars().count() > NAME_MAX {
        return invalid(format!("must be 1 to {NAME_MAX} characters long"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')))
    {
        return invalid(format!(
            "`{name}` has `{c}`; a name may hold only lowercase letters a-z, digits, `.`, `-` \
             and `_`"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return invalid(format!("`{name}` must start with a letter or a digit"));
    }
    if name == RESERVED_NAME {
        return invalid(format!(
            "`{RESERVED_NAME}` is reserved for the district's own token"
        ));
    }
    Ok(())
}

fn check_communes(role: Role, communes: &[String]) -> Result<(), AccountError> {
    let invalid = |message: &str| {
        Err(AccountError::Invalid {
            field: "communes",
            message: message.to_owned(),
        })
    };
    match role {
        Role::Operator if communes.is_empty() => {
            invalid("an operator works for at least one commune; name it")
        }
        Role::Admin | Role::Viewer if !communes.is_empty() => {
            invalid("only an operator works for communes; an admin or viewer names none")
        }
        _ if communes.iter().any(|c| c.trim().is_empty()) => invalid("a commune cannot be blank"),
        _ => Ok(()),
    }
}

fn check_password(password: &str) -> Result<(), AccountError> {
    // Characters, not bytes: a Vietnamese passphrase of nine letters is nine, however many
    // bytes its diacritics take.
    let chars = password.chars().count();
    if chars < PASSWORD_MIN {
        return Err(AccountError::Invalid {
            field: "password",
            message: format!("must be at least {PASSWORD_MIN} characters long (it has {chars})"),
        });
    }
    if chars > PASSWORD_MAX {
        return Err(AccountError::Invalid {
            field: "password",
            message: format!("must be at most {PASSWORD_MAX} characters long (it has {chars})"),
        });
    }
    Ok(())
}

/// argon2id with the crate's default parameters and a random salt, as a PHC string.
fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

fn password_matches(password: &str, hash: &PasswordHash<'_>) -> bool {
    #[cfg(test)]
    tests::ARGON2_RUNS.with(|runs| runs.set(runs.get() + 1));
    // The hash's own parameters are used, so hashes made with other parameters still verify.
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// The hash that unknown names are verified against: a PHC string with the same parameters as
/// every other, so that verifying against it costs the same. `None` only if argon2 cannot hash at
/// all, in which case no account could have been created either.
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| hash_password(DUMMY_PASSWORD).ok())
        .as_deref()
}

/// The key of a session in the `sessions` tree.
fn session_key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_hex() -> String {
    let mut raw = [0u8; SESSION_BYTES];
    OsRng.fill_bytes(&mut raw);
    raw.iter().fold(String::new(), |mut s, b| {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests;
