//! The `bahinlink` command line, run as a real process.

use std::process::Output;

use bahinlink::storage::migrate;

use crate::helpers::{bahinlink, connect, fresh_database, scratch_dir};

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[actix_web::test]
async fn migrate_applies_reports_status_is_idempotent_and_resets_only_with_yes() {
    let url = fresh_database(false).await;
    let run = |args: &[&str]| {
        let out = bahinlink()
            .args(args)
            .env("DATABASE_URL", &url)
            .output()
            .expect("run bahinlink");
        let (stdout, stderr) = text(&out);
        (out.status.code(), stdout, stderr)
    };

    let (code, stdout, stderr) = run(&["migrate"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("applied 20250619104237 initial_security_workforce_schema"),
        "{stdout}"
    );
    assert!(
        stdout.contains("applied 20250619104915 add_performance_indexes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("applied 20261126100000 location_tracking_ingest_layout"),
        "{stdout}"
    );

    let (code, stdout, _) = run(&["migrate", "status"]);
    assert_eq!(code, Some(0));
    for m in migrate::embedded() {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&m.version.to_string()))
            .unwrap_or_else(|| panic!("{} missing from status:\n{stdout}", m.version));
        assert!(
            line.contains(" applied ") && line.contains(&m.checksum),
            "{line}"
        );
    }

    let (code, stdout, _) = run(&["migrate"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("up to date"), "{stdout}");

    let client = connect(&url).await;
    client
        .execute(
            "INSERT INTO system_configurations (key, value) VALUES ('marker', '1')",
            &[],
        )
        .await
        .unwrap();

    let (code, _, stderr) = run(&["migrate", "reset"]);
    assert_eq!(code, Some(2), "reset without --yes is refused");
    assert!(stderr.contains("--yes"), "{stderr}");
    let kept: i64 = client
        .query_one("SELECT count(*) FROM system_configurations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1, "nothing dropped without --yes");
    drop(client);

    let (code, stdout, stderr) = run(&["migrate", "reset", "--yes"]);
    assert_eq!(code, Some(0), "{stderr}");
    let total = migrate::embedded().len();
    assert!(
        stdout.contains(&format!("{total} migrations applied")),
        "{stdout}"
    );
    let client = connect(&url).await;
    let left: i64 = client
        .query_one("SELECT count(*) FROM system_configurations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "reset drops the data");
    let (_, stdout, _) = run(&["migrate", "status"]);
    assert_eq!(stdout.matches(" applied ").count(), total, "{stdout}");
}

#[test]
fn database_url_flag_beats_the_environment() {
    // An unreachable URL from the flag must be the one used (and its password never shown).
    let out = bahinlink()
        .args([
            "migrate",
            "status",
            "--database-url",
            "postgres://u:topsecret@127.0.0.1:1/db",
        ])
        .env("DATABASE_URL", "host=/also/not/here dbname=x")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("connect"), "{stderr}");
    assert!(!stderr.contains("topsecret"), "password leaked: {stderr}");
}

#[test]
fn invalid_configuration_stops_start_up_naming_the_key() {
    let dir = scratch_dir("cfg");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:0\"\nworkerz = 2\n").unwrap();
    let out = bahinlink()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("server.workerz"), "{}", text(&out).1);

    std::fs::write(&file, "[database]\npool_size = 0\n").unwrap();
    let out = bahinlink()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("database.pool_size"),
        "{}",
        text(&out).1
    );

    let out = bahinlink()
        .args(["serve"])
        .env("BAHINLINK_SERVER__WORKERS", "several")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("BAHINLINK_SERVER__WORKERS"),
        "{}",
        text(&out).1
    );

    let out = bahinlink()
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--listen"), "{}", text(&out).1);

    let out = bahinlink()
        .args(["serve", "--config", "/no/such/file.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("/no/such/file.toml"),
        "{}",
        text(&out).1
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn loadgen_refuses_bad_options_naming_them_before_touching_anything() {
    for (args, named) in [
        (&["--warmup", "30", "--duration", "20"][..], "--warmup"),
        (&["--source-addrs", "300"][..], "--source-addrs"),
        (&["--window", "0"][..], "--window"),
        (&["--rate", "0"][..], "--rate"),
        (&["--rate", "fast"][..], "--rate"),
    ] {
        let out = bahinlink()
            .arg("loadgen")
            .args(args)
            // Never reached: options are checked first.
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}
