use super::*;
use std::cell::Cell;

thread_local! {
    /// argon2 verifications run on this thread: what a sign-in cost, without timing it.
    pub(super) static ARGON2_RUNS: Cell<usize> = const { Cell::new(0) };
}

/// 15 characters, 21 bytes.
const PASSWORD: &str = "mật khẩu dài đủ";

fn t0() -> Timestamp {
    "2025-09-23T07:00:00Z".parse().unwrap()
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

fn hours(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n)
}

fn open() -> (tempfile::TempDir, sled::Db, Accounts) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let accounts = Accounts::open(&db, dir.path().to_path_buf()).unwrap();
    (dir, db, accounts)
}

fn new_account(name: &str, role: Role, communes: &[&str], password: &str) -> NewAccount {
    NewAccount {
        name: name.to_owned(),
        role,
        communes: communes.iter().map(|c| (*c).to_owned()).collect(),
        password: password.to_owned(),
    }
}

fn operator(name: &str) -> NewAccount {
    new_account(name, Role::Operator, &["binh-trung"], PASSWORD)
}

/// The field an error names, or a panic if it is not `Invalid`.
fn invalid_field(err: AccountError) -> &'static str {
    match err {
        AccountError::Invalid { field, .. } => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn stored_session(accounts: &Accounts, id: &str) -> Option<StoredSession> {
    let value = accounts.sessions.get(session_key(id)).unwrap()?;
    Some(serde_json::from_slice(&value).unwrap())
}

fn argon2_runs(f: impl FnOnce()) -> usize {
    ARGON2_RUNS.with(|runs| runs.set(0));
    f();
    ARGON2_RUNS.with(Cell::get)
}

#[test]
fn create_then_verify_gives_the_account() {
    let (_dir, _db, accounts) = open();
    assert!(accounts.is_empty().unwrap());
    let created = accounts.create(operator("lan"), t0()).unwrap();
    assert_eq!(
        created,
        Account {
            name: "lan".into(),
            role: Role::Operator,
            communes: vec!["binh-trung".into()],
            disabled: false,
            created: t0(),
            password_changed: t0(),
        }
    );
    assert!(!accounts.is_empty().unwrap());
    assert_eq!(accounts.verify("lan", PASSWORD).unwrap(), created);
    assert_eq!(accounts.get("lan").unwrap(), Some(created));
    assert_eq!(accounts.get("mai").unwrap(), None);
}

#[test]
fn a_wrong_password_is_refused() {
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    for wrong in [
        "",
        "mật khẩu dài đu",
        "mat khau dai du",
        "Mật khẩu dài đủ",
        "mật khẩu dài đủ ",
    ] {
        let err = accounts.verify("lan", wrong).expect_err(wrong);
        assert!(matches!(err, LoginError::WrongNameOrPassword), "{err:?}");
    }
}

#[test]
fn an_unknown_name_costs_one_argon2_verification_like_a_known_one() {
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    let mut unknown = None;
    assert_eq!(
        argon2_runs(|| unknown = Some(accounts.verify("nobody", PASSWORD))),
        1
    );
    let unknown = unknown.unwrap().unwrap_err();
    assert!(
        matches!(unknown, LoginError::WrongNameOrPassword),
        "{unknown:?}"
    );
    let mut known = None;
    assert_eq!(
        argon2_runs(|| known = Some(accounts.verify("lan", "not the password"))),
        1
    );
    let known = known.unwrap().unwrap_err();
    assert_eq!(unknown.to_string(), known.to_string(), "the same answer");
    // The dummy costs what a real hash costs: the same algorithm and parameters.
    let params = |phc: &str| phc.rsplitn(3, '$').nth(2).unwrap().to_owned();
    let dummy = dummy_hash().unwrap();
    let real: StoredAccount =
        serde_json::from_slice(&accounts.accounts.get("lan").unwrap().unwrap()).unwrap();
    assert!(dummy.starts_with("$argon2id$"), "{dummy}");
    assert_eq!(params(dummy), params(&real.password_hash));
    // Even the dummy's own password lets nobody in.
    assert!(matches!(
        accounts.verify("nobody", DUMMY_PASSWORD),
        Err(LoginError::WrongNameOrPassword)
    ));
}

#[test]
fn a_disabled_account_says_so_only_to_the_right_password() {
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    let disabled = accounts.set_disabled("lan", true).unwrap();
    assert!(disabled.disabled);
    assert_eq!(accounts.get("lan").unwrap(), Some(disabled));
    assert!(matches!(
        accounts.verify("lan", PASSWORD),
        Err(LoginError::Disabled)
    ));
    assert!(matches!(
        accounts.verify("lan", "not the password"),
        Err(LoginError::WrongNameOrPassword)
    ));
    assert_eq!(
        invalid_field(accounts.start_session("lan", t0()).unwrap_err()),
        "name"
    );
    assert!(!accounts.set_disabled("lan", false).unwrap().disabled);
    assert_eq!(accounts.verify("lan", PASSWORD).unwrap().name, "lan");
    assert!(matches!(
        accounts.set_disabled("nobody", true),
        Err(AccountError::NotFound(name)) if name == "nobody"
    ));
}

#[test]
fn a_name_is_taken_once() {
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    let again = new_account("lan", Role::Admin, &[], "another password");
    let err = accounts.create(again, t0() + hours(1)).unwrap_err();
    assert!(
        matches!(&err, AccountError::Exists(name) if name == "lan"),
        "{err:?}"
    );
    assert!(err.to_string().contains("`lan` already exists"), "{err}");
    // The first account is untouched.
    assert_eq!(
        accounts.verify("lan", PASSWORD).unwrap().role,
        Role::Operator
    );
    assert!(accounts.verify("lan", "another password").is_err());
}

#[test]
fn names_are_lowercase_ascii_letters_digits_and_dot_dash_underscore() {
    let (_dir, _db, accounts) = open();
    let long = "a".repeat(NAME_MAX + 1);
    for bad in [
        "",
        "Lan",
        "lan nguyen",
        "lân",
        ".lan",
        "-lan",
        "_lan",
        "lan/1",
        "lan@xa",
        long.as_str(),
    ] {
        let err = accounts
            .create(operator(bad), t0())
            .expect_err(&format!("`{bad}` accepted"));
        assert!(err.to_string().starts_with("name: "), "{err}");
        assert_eq!(invalid_field(err), "name");
    }
    assert!(accounts.is_empty().unwrap());
    let longest = "a".repeat(NAME_MAX);
    for good in ["lan", "0lan", "lan.nguyen-2_b", longest.as_str()] {
        accounts.create(operator(good), t0()).unwrap();
    }
}

#[test]
fn district_is_reserved() {
    let (_dir, _db, accounts) = open();
    let err = accounts
        .create(new_account("district", Role::Admin, &[], PASSWORD), t0())
        .unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    assert_eq!(invalid_field(err), "name");
    accounts
        .create(new_account("district2", Role::Admin, &[], PASSWORD), t0())
        .unwrap();
}

#[test]
fn only_operators_have_communes_and_they_have_one_at_least() {
    let (_dir, _db, accounts) = open();
    let refused: [(Role, &[&str]); 5] = [
        (Role::Operator, &[]),
        (Role::Viewer, &["binh-trung"]),
        (Role::Admin, &["binh-trung"]),
        (Role::Operator, &[""]),
        (Role::Operator, &["binh-trung", "  "]),
    ];
    for (role, communes) in refused {
        let err = accounts
            .create(new_account("lan", role, communes, PASSWORD), t0())
            .expect_err(&format!("{role:?} {communes:?}"));
        assert!(err.to_string().starts_with("communes: "), "{err}");
        assert_eq!(invalid_field(err), "communes");
    }
    let accepted: [(&str, Role, &[&str]); 3] = [
        ("an", Role::Admin, &[]),
        ("vi", Role::Viewer, &[]),
        ("op", Role::Operator, &["binh-trung", "binh-hai"]),
    ];
    for (name, role, communes) in accepted {
        accounts
            .create(new_account(name, role, communes, PASSWORD), t0())
            .unwrap();
    }
}

#[test]
fn password_length_is_counted_in_characters() {
    let (_dir, _db, accounts) = open();
    let nine = "Sông Hồng";
    assert_eq!(nine.chars().count(), 9);
    assert!(nine.len() > PASSWORD_MIN, "{} bytes", nine.len());
    let err = accounts
        .create(new_account("lan", Role::Viewer, &[], nine), t0())
        .unwrap_err();
    assert!(err.to_string().starts_with("password: "), "{err}");
    assert!(err.to_string().contains("has 9"), "{err}");
    assert_eq!(invalid_field(err), "password");
    let ten = "Sông Hồng!";
    accounts
        .create(new_account("lan", Role::Viewer, &[], ten), t0())
        .unwrap();
    assert_eq!(accounts.verify("lan", ten).unwrap().name, "lan");
    let longest = "ư".repeat(PASSWORD_MAX);
    accounts
        .create(new_account("mai", Role::Viewer, &[], &longest), t0())
        .unwrap();
    let too_long = "a".repeat(PASSWORD_MAX + 1);
    let err = accounts
        .create(new_account("hoa", Role::Viewer, &[], &too_long), t0())
        .unwrap_err();
    assert_eq!(invalid_field(err), "password");
}

#[test]
fn the_store_holds_a_hash_never_the_password() {
    let (_dir, db, accounts) = open();
    let new = operator("lan");
    assert!(!format!("{new:?}").contains(PASSWORD), "{new:?}");
    let account = accounts.create(new, t0()).unwrap();
    let raw = accounts.accounts.get("lan").unwrap().unwrap();
    let raw = std::str::from_utf8(&raw).unwrap();
    assert!(raw.contains("$argon2id$"), "{raw}");
    assert!(!raw.contains(PASSWORD), "{raw}");
    for name in db.tree_names() {
        for item in db.open_tree(name).unwrap().iter() {
            let (_, value) = item.unwrap();
            let haystack = String::from_utf8_lossy(&value);
            assert!(!haystack.contains(PASSWORD), "{haystack}");
        }
    }
    // Nor does the account that the rest of the server sees carry the hash.
    let json = serde_json::to_string(&account).unwrap();
    assert!(!json.contains("argon2"), "{json}");
    assert!(!format!("{account:?}").contains("argon2"));
}

#[test]
fn a_session_round_trips_and_is_refreshed_at_most_once_a_minute() {
    let (_dir, _db, accounts) = open();
    let account = accounts.create(operator("lan"), t0()).unwrap();
    let new = accounts.start_session("lan", t0()).unwrap();
    for token in [&new.id, &new.csrf] {
        assert_eq!(token.len(), 2 * SESSION_BYTES);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    }
    assert_ne!(new.id, new.csrf);
    assert_eq!(
        new.session,
        Session {
            account: "lan".into(),
            csrf: new.csrf.clone(),
            created: t0(),
            last_seen: t0(),
        }
    );
    let (session, of) = accounts.session(&new.id, t0() + secs(30)).unwrap().unwrap();
    assert_eq!((&session, &of), (&new.session, &account));
    assert_eq!(
        stored_session(&accounts, &new.id)
            .unwrap()
            .session
            .last_seen,
        t0(),
        "not written within a minute"
    );
    let later = t0() + secs(120);
    let (session, _) = accounts.session(&new.id, later).unwrap().unwrap();
    assert_eq!(session.last_seen, later);
    assert_eq!(
        stored_session(&accounts, &new.id)
            .unwrap()
            .session
            .last_seen,
        later
    );
    let other = accounts.start_session("lan", t0()).unwrap();
    assert_ne!(other.id, new.id);
    assert_ne!(other.csrf, new.csrf);
    assert!(matches!(
        accounts.start_session("nobody", t0()),
        Err(AccountError::NotFound(_))
    ));
}

#[test]
fn an_unknown_session_is_none() {
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    let new = accounts.start_session("lan", t0()).unwrap();
    let mut near = new.id.clone().into_bytes();
    near[0] = if near[0] == b'a' { b'b' } else { b'a' };
    let near = String::from_utf8(near).unwrap();
    for id in ["", "nope", near.as_str(), &new.id[1..], &new.csrf] {
        assert!(accounts.session(id, t0()).unwrap().is_none(), "{id}");
    }
    assert!(!accounts.end_session("nope").unwrap());
    assert!(accounts.session(&new.id, t0()).unwrap().is_some());
}

#[test]
fn an_idle_session_expires_after_twelve_hours_and_is_removed() {
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    let idle = accounts.start_session("lan", t0()).unwrap();
    let at_limit = accounts.start_session("lan", t0()).unwrap();
    let kept_alive = accounts.start_session("lan", t0()).unwrap();
    assert!(accounts
        .session(&at_limit.id, t0() + SESSION_IDLE)
        .unwrap()
        .is_some());
    assert!(accounts
        .session(&idle.id, t0() + SESSION_IDLE + secs(1))
        .unwrap()
        .is_none());
    assert!(stored_session(&accounts, &idle.id).is_none(), "removed");
    // Each use restarts the idle clock.
    assert!(accounts
        .session(&kept_alive.id, t0() + hours(11))
        .unwrap()
        .is_some());
    assert!(accounts
        .session(&kept_alive.id, t0() + hours(22))
        .unwrap()
        .is_some());
}

#[test]
fn a_busy_session_still_ends_after_seven_days() {
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    let new = accounts.start_session("lan", t0()).unwrap();
    let mut t = t0();
    while t + hours(11) <= t0() + SESSION_MAX {
        t += hours(11);
        assert!(accounts.session(&new.id, t).unwrap().is_some(), "{t}");
    }
    let end = t0() + SESSION_MAX + secs(1);
    assert!(end.duration_since(t) < SESSION_IDLE, "not idle");
    assert!(accounts.session(&new.id, end).unwrap().is_none());
    assert!(stored_session(&accounts, &new.id).is_none(), "removed");
}

#[test]
fn disabling_ends_the_sessions_and_enabling_does_not_bring_them_back() {
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    accounts.create(operator("mai"), t0()).unwrap();
    let lan = accounts.start_session("lan", t0()).unwrap();
    let mai = accounts.start_session("mai", t0()).unwrap();
    accounts.set_disabled("lan", true).unwrap();
    assert!(stored_session(&accounts, &lan.id).is_none(), "removed");
    assert!(accounts.session(&lan.id, t0()).unwrap().is_none());
    accounts.set_disabled("lan", false).unwrap();
    assert!(accounts.session(&lan.id, t0()).unwrap().is_none());
    assert!(
        accounts.session(&mai.id, t0()).unwrap().is_some(),
        "other accounts keep theirs"
    );
}

#[test]
fn a_new_password_replaces_the_old_and_ends_the_sessions() {
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    let new = accounts.start_session("lan", t0()).unwrap();
    assert_eq!(
        invalid_field(accounts.set_password("lan", "short", t0()).unwrap_err()),
        "password"
    );
    assert!(accounts.session(&new.id, t0()).unwrap().is_some(), "kept");
    let t1 = t0() + hours(1);
    let fresh = "mật khẩu mới tinh";
    accounts.set_password("lan", fresh, t1).unwrap();
    assert!(matches!(
        accounts.verify("lan", PASSWORD),
        Err(LoginError::WrongNameOrPassword)
    ));
    let account = accounts.verify("lan", fresh).unwrap();
    assert_eq!((account.created, account.password_changed), (t0(), t1));
    assert!(stored_session(&accounts, &new.id).is_none(), "removed");
    assert!(accounts.session(&new.id, t1).unwrap().is_none());
    assert!(matches!(
        accounts.set_password("nobody", fresh, t1),
        Err(AccountError::NotFound(_))
    ));
}

#[test]
fn a_new_role_is_checked_and_ends_the_sessions() {
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    let new = accounts.start_session("lan", t0()).unwrap();
    let err = accounts
        .set_role("lan", Role::Admin, vec!["binh-trung".into()])
        .unwrap_err();
    assert_eq!(invalid_field(err), "communes");
    assert!(accounts.session(&new.id, t0()).unwrap().is_some(), "kept");
    let viewer = accounts.set_role("lan", Role::Viewer, vec![]).unwrap();
    assert_eq!((viewer.role, viewer.communes.len()), (Role::Viewer, 0));
    assert_eq!(accounts.get("lan").unwrap(), Some(viewer));
    assert!(accounts.session(&new.id, t0()).unwrap().is_none());
    assert!(matches!(
        accounts.set_role("nobody", Role::Viewer, vec![]),
        Err(AccountError::NotFound(_))
    ));
}

#[test]
fn a_session_left_behind_by_a_change_is_refused_all_the_same() {
    // A power cut between storing the new password and removing the sessions leaves them on
    // disk: put one back by hand and it must still not work.
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    let new = accounts.start_session("lan", t0()).unwrap();
    let key = session_key(&new.id);
    let raw = accounts.sessions.get(key).unwrap().unwrap();
    accounts
        .set_password("lan", "mật khẩu mới tinh", t0())
        .unwrap();
    accounts.sessions.insert(key, raw).unwrap();
    assert!(accounts.session(&new.id, t0()).unwrap().is_none());
    assert!(accounts.sessions.get(key).unwrap().is_none(), "removed");
}

#[test]
fn sessions_are_stored_under_a_hash_of_their_id() {
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    let new = accounts.start_session("lan", t0()).unwrap();
    let entries: Vec<_> = accounts.sessions.iter().map(Result::unwrap).collect();
    assert_eq!(entries.len(), 1);
    let (key, value) = &entries[0];
    assert_ne!(&key[..], new.id.as_bytes());
    assert_eq!(&key[..], &Sha256::digest(new.id.as_bytes())[..]);
    let value = String::from_utf8_lossy(value);
    assert!(!value.contains(&new.id), "{value}");
}

#[test]
fn reopening_the_store_keeps_accounts_and_sessions() {
    let (dir, db, accounts) = open();
    let account = accounts.create(operator("lan"), t0()).unwrap();
    let new = accounts.start_session("lan", t0()).unwrap();
    drop(accounts);
    drop(db);
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let accounts = Accounts::open(&db, dir.path().to_path_buf()).unwrap();
    assert_eq!(accounts.list().unwrap(), std::slice::from_ref(&account));
    assert_eq!(accounts.verify("lan", PASSWORD).unwrap(), account);
    let (session, of) = accounts.session(&new.id, t0()).unwrap().unwrap();
    assert_eq!((session, of), (new.session, account));
}

#[test]
fn csrf_matches_only_its_own_token() {
    let session = Session {
        account: "lan".into(),
        csrf: "00ff".repeat(16),
        created: t0(),
        last_seen: t0(),
    };
    assert!(session.csrf_matches(&"00ff".repeat(16)));
    for wrong in [
        String::new(),
        "00FF".repeat(16),
        "00ff".repeat(15),
        format!("{}0", "00ff".repeat(16)),
        format!("{}e", &"00ff".repeat(16)[..63]),
    ] {
        assert!(!session.csrf_matches(&wrong), "{wrong}");
    }
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    let new = accounts.start_session("lan", t0()).unwrap();
    let (session, _) = accounts.session(&new.id, t0()).unwrap().unwrap();
    assert!(session.csrf_matches(&new.csrf));
    assert!(!session.csrf_matches(&new.id));
}

#[test]
fn sessions_end_one_by_one_by_account_and_by_expiry() {
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    accounts.create(operator("mai"), t0()).unwrap();
    let lan1 = accounts.start_session("lan", t0()).unwrap();
    let lan2 = accounts.start_session("lan", t0()).unwrap();
    let mai = accounts.start_session("mai", t0()).unwrap();
    assert!(accounts.end_session(&lan1.id).unwrap());
    assert!(!accounts.end_session(&lan1.id).unwrap());
    assert!(accounts.session(&lan1.id, t0()).unwrap().is_none());
    assert!(accounts.session(&lan2.id, t0()).unwrap().is_some());
    assert_eq!(accounts.end_sessions_of("lan").unwrap(), 1);
    assert!(accounts.session(&lan2.id, t0()).unwrap().is_none());
    assert_eq!(accounts.end_sessions_of("lan").unwrap(), 0);
    // An unreadable session goes with the expired ones.
    accounts.sessions.insert(b"junk", &b"{"[..]).unwrap();
    assert_eq!(accounts.purge_expired(t0() + hours(1)).unwrap(), 1);
    assert!(stored_session(&accounts, &mai.id).is_some());
    assert_eq!(
        accounts
            .purge_expired(t0() + SESSION_IDLE + secs(1))
            .unwrap(),
        1
    );
    assert!(accounts.sessions.is_empty());
}

#[test]
fn accounts_are_listed_by_name() {
    let (_dir, _db, accounts) = open();
    for name in ["mai", "an", "lan"] {
        accounts
            .create(new_account(name, Role::Viewer, &[], PASSWORD), t0())
            .unwrap();
    }
    let names: Vec<String> = accounts
        .list()
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["an", "lan", "mai"]);
}

#[test]
fn a_damaged_record_is_an_error_not_a_panic() {
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    accounts
        .accounts
        .insert("bad", &b"{\"account\":"[..])
        .unwrap();
    let err = accounts.get("bad").unwrap_err();
    assert!(matches!(err, AccountError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("`bad`"), "{err}");
    assert!(matches!(
        accounts.verify("bad", PASSWORD),
        Err(LoginError::Store(AccountError::Corrupt { .. }))
    ));
    assert!(matches!(accounts.list(), Err(AccountError::Corrupt { .. })));
    // A damaged session is simply no session.
    let new = accounts.start_session("lan", t0()).unwrap();
    accounts
        .sessions
        .insert(session_key(&new.id), &b"[]"[..])
        .unwrap();
    assert!(accounts.session(&new.id, t0()).unwrap().is_none());
    assert!(stored_session(&accounts, &new.id).is_none(), "removed");
}

#[test]
fn debug_output_hides_session_secrets() {
    let (_dir, _db, accounts) = open();
    accounts.create(operator("lan"), t0()).unwrap();
    let new = accounts.start_session("lan", t0()).unwrap();
    let shown = format!("{new:?}");
    assert!(!shown.contains(&new.id), "{shown}");
    assert!(!shown.contains(&new.csrf), "{shown}");
    assert!(shown.contains("lan"), "{shown}");
}
