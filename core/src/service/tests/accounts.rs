use super::*;

#[test]
fn add_show_duplicate_delete() {
    let f = fixture("");
    let v = f.svc.add_user("alice", "s3cret", NOW).expect("add");
    assert_eq!(v.state, TokenState::Unregistered);
    assert_eq!(
        f.svc.add_user("alice", "x", NOW),
        Err(OpError::UserExists("alice".into()))
    );
    assert_eq!(f.svc.add_user("bad id", "x", NOW), Err(OpError::BadLoginId));
    assert!(matches!(
        f.svc.add_user("bob", "", NOW),
        Err(OpError::BadInput(_))
    ));
    f.svc.delete_user("alice").expect("delete");
    assert_eq!(
        f.svc.delete_user("alice"),
        Err(OpError::UnknownUser("alice".into()))
    );
}

#[test]
fn import_is_all_or_nothing_and_legacy_hashes_upgrade_at_login() {
    let f = fixture("");
    let svc = &f.svc;
    svc.add_user("existing", "pw", NOW).expect("add");
    let sha = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
    let bc = bcrypt::hash_with_salt("bc-pw", 4, [3u8; 16])
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoB);
    let row = |line, id: &str, hash: &str| ImportRow {
        line,
        login_id: id.into(),
        password_hash: hash.into(),
        email: Some(format!("{id}@example.jp")),
    };
    // A bad row anywhere imports nothing, and the error names its line.
    let bad = [row(2, "a", sha), row(3, "b", "plaintext")];
    let e = svc.import(&bad, NOW).expect_err("refused");
    assert!(e.to_string().starts_with("line 3:"), "{e}");
    assert!(
        svc.store().get_user("a").expect("read").is_none(),
        "nothing imported"
    );
    let dup = [row(2, "a", sha), row(3, "existing", sha)];
    assert!(svc
        .import(&dup, NOW)
        .expect_err("refused")
        .to_string()
        .contains("line 3"));
    let twice = [row(2, "a", sha), row(5, "a", sha)];
    assert!(svc
        .import(&twice, NOW)
        .expect_err("refused")
        .to_string()
        .contains("line 5"));
    // A good file imports every row.
    let good = [row(2, "a", sha), row(3, "b", &bc)];
    assert_eq!(svc.import(&good, NOW), Ok(2));
    // The legacy hash verifies as it is, and is replaced by argon2id on success.
    assert_eq!(
        svc.login("a", "wrong", NOW),
        LoginOutcome::Reject(RejectReason::BadPassword)
    );
    assert!(
        svc.get("a").expect("a").password_hash.starts_with("$6$"),
        "unchanged after a failure"
    );
    assert_eq!(
        svc.login("a", "secret", NOW),
        LoginOutcome::Accept { with_otp: false }
    );
    assert!(svc
        .get("a")
        .expect("a")
        .password_hash
        .starts_with("$argon2id$"));
    assert_eq!(
        svc.login("a", "secret", NOW),
        LoginOutcome::Accept { with_otp: false }
    );
    assert_eq!(
        svc.login("b", "bc-pw", NOW),
        LoginOutcome::Accept { with_otp: false }
    );
    assert!(svc
        .get("b")
        .expect("b")
        .password_hash
        .starts_with("$argon2id$"));
}

#[test]
fn backup_restores_into_an_empty_store() {
    let f = fixture("");
    let svc = &f.svc;
    let secret = active(svc, "u");
    let rows = svc.backup().expect("backup");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(dir.path()).expect("store");
    let raw: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.tree.clone(),
                crate::seal::unhex(&r.key).expect("hex"),
                crate::seal::unhex(&r.value).expect("hex"),
            )
        })
        .collect();
    store.restore(&raw).expect("restore");
    let restored =
        Service::new(&config(""), store, Sealer::from_key(&[9u8; 32]), NOW).expect("svc");
    assert_eq!(
        restored.view(&restored.get("u").expect("u"), NOW).state,
        TokenState::Active
    );
    let used = format!("pw-of-{}", code(svc, &secret, NOW));
    assert_eq!(
        restored.login("u", &used, NOW),
        LoginOutcome::Reject(RejectReason::OtpReplayed)
    );
    let t = NOW + 60;
    assert_eq!(
        restored.login("u", &format!("pw-of-{}", code(svc, &secret, t)), t),
        LoginOutcome::Accept { with_otp: true }
    );
}
