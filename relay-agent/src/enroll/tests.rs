use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::bundle::tests::sample;

fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .expect("lookup")
        .expect("this process's user")
        .name
}

#[test]
fn a_bundle_lands_where_the_config_says_private_and_owned_by_the_service_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = dir.path().join("received.toml");
    std::fs::write(&from, toml::to_string(&sample()).expect("toml")).expect("write");
    std::fs::set_permissions(&from, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let to = dir.path().join("etc/relay-agent/bundle.toml");
    let done = enrol(&Enrolment {
        from: from.clone(),
        to: to.clone(),
        owner: Some(me()),
        start: false,
    })
    .expect("enrolled");
    assert_eq!(done.commune, "binh-trung");
    assert!(!done.started);
    let meta = std::fs::metadata(&to).expect("installed");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read(&to).expect("read"),
        std::fs::read(&from).expect("read")
    );
    assert_eq!(Bundle::load(&to).expect("loads"), sample());
}

#[test]
fn a_bundle_copied_into_place_by_hand_gets_its_mode_put_right() {
    let dir = tempfile::tempdir().expect("tempdir");
    let to = dir.path().join("bundle.toml");
    std::fs::write(&to, toml::to_string(&sample()).expect("toml")).expect("write");
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    enrol(&Enrolment {
        from: to.clone(),
        to: to.clone(),
        owner: None,
        start: false,
    })
    .expect("enrolled");
    let mode = std::fs::metadata(&to).expect("there").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(Bundle::load(&to).expect("still the bundle"), sample());
}

#[test]
fn a_bad_bundle_or_unknown_user_is_refused_and_nothing_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let to = dir.path().join("bundle.toml");
    std::fs::write(&to, "old bundle").expect("write");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "commune = 'x'\n").expect("write");
    let e = enrol(&Enrolment {
        from: bad,
        to: to.clone(),
        owner: None,
        start: false,
    })
    .expect_err("not a bundle");
    assert!(e.to_string().contains("ask the district"), "{e}");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, toml::to_string(&sample()).expect("toml")).expect("write");
    let e = enrol(&Enrolment {
        from: good,
        to: to.clone(),
        owner: Some("no-such-user-here".into()),
        start: false,
    })
    .expect_err("no user");
    assert!(matches!(e, EnrolError::NoSuchUser(_)), "{e}");
    assert_eq!(std::fs::read_to_string(&to).expect("read"), "old bundle");
    let missing = enrol(&Enrolment {
        from: dir.path().join("missing.toml"),
        to: to.clone(),
        owner: None,
        start: false,
    })
    .expect_err("no file");
    assert!(missing.to_string().contains("missing.toml"), "{missing}");
}
