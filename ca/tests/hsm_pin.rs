//! A wrong PIN, in its own process: PKCS#11 login state is per process, so
//! once any test has logged in, a wrong PIN would be answered with
//! CKR_USER_ALREADY_LOGGED_IN. This binary never logs in successfully
//! before the check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use ward_ca::authority;
use ward_ca::store::{SqliteStore, Store};

#[test]
fn wrong_pin_is_named_never_echoed_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "");
    let pin_file = write(dir.path(), "pin", b"00000000\n");
    cfg.keys.root = format!(
        "pkcs11:token={TOKEN};object=root?module-path={MODULE}&pin-source=file:{}",
        pin_file.display()
    );
    let e = authority::init(&cfg).unwrap_err();
    assert_eq!(e.status(), 503, "{e}");
    assert!(
        e.to_string().contains("wrong PIN for token `ward-test`"),
        "{e}"
    );
    assert!(!e.to_string().contains("00000000"), "PIN leaked: {e}");
    let store = SqliteStore::open(&cfg.database).unwrap();
    assert!(store.authority().unwrap().is_none());
}
