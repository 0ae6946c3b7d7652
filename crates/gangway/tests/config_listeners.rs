//! Extra listeners from the configuration file: started, moved, switched to
//! HTTPS and closed while gangway runs; a port that is taken refuses the
//! change and the running listeners stay.

#![allow(clippy::unwrap_used)] // a panic is the intended test failure

mod common;

use common::*;
use gangway_testkit::{curl, free_port, make_cert, wait_until, TempDir};

/// Routes that tell which listener a request came in on.
fn config(listeners: &str, port: u16) -> String {
    format!(
        r#"{listeners}
[[routes]]
name = "alt-only"
ports = [{port}]
respond = {{ body = "alt\n" }}

[[routes]]
name = "main"
respond = {{ body = "main\n" }}
"#
    )
}

fn body(port: u16) -> String {
    curl([format!("http://127.0.0.1:{port}/")]).body
}

#[test]
fn listeners_start_move_switch_to_https_and_close() {
    let dir = TempDir::new();
    let file = dir.join("gangway.toml");
    let alt = free_port();
    write_atomic(
        &file,
        &config(
            &format!("[[listeners]]\nname = \"alt\"\nport = {alt}\n"),
            alt,
        ),
    );
    let g = start_with(&file);
    assert_eq!(body(alt), "alt\n", "{}", g.output());
    assert_eq!(body(g.http_port), "main\n");
    // Dual-stack like the main listeners.
    let v6 = curl([format!("http://[::1]:{alt}/")]);
    assert!(v6.status == 200 || v6.exit_code == 7, "{v6:#?}");

    // Moved to another port, over HTTPS.
    let (cert, key) = make_cert(dir.path(), "alt.test");
    let secure = free_port();
    write_atomic(
        &file,
        &config(
            &format!(
                "[[listeners]]\nname = \"alt\"\nport = {secure}\nprotocol = \"https\"\ncert = \"{}\"\nkey = \"{}\"\n",
                cert.display(),
                key.display()
            ),
            secure,
        ),
    );
    let https = || {
        curl([
            "--cacert".to_owned(),
            cert.to_string_lossy().into_owned(),
            "--resolve".to_owned(),
            format!("alt.test:{secure}:127.0.0.1"),
            format!("https://alt.test:{secure}/"),
        ])
    };
    assert!(
        wait_until(WAIT, || https().body == "alt\n"),
        "HTTPS listener not serving: {:#?}\n{}",
        https(),
        g.output()
    );
    let old = curl([format!("http://127.0.0.1:{alt}/")]);
    assert_eq!(old.exit_code, 7, "the old port still answers: {old:#?}");
    assert!(g
        .wait_for_message("listener closed", |v| v["port"] == alt, WAIT)
        .is_some());

    // Removed from the file: closed.
    write_atomic(&file, &config("", secure));
    assert!(
        wait_until(WAIT, || https().exit_code == 7),
        "listener not closed:\n{}",
        g.output()
    );
    assert_eq!(body(g.http_port), "main\n");
}

#[test]
fn a_taken_port_refuses_the_change_until_it_is_free() {
    let dir = TempDir::new();
    let file = dir.join("gangway.toml");
    let alt = free_port();
    write_atomic(
        &file,
        &config(
            &format!("[[listeners]]\nname = \"alt\"\nport = {alt}\n"),
            alt,
        ),
    );
    let g = start_with(&file);
    assert_eq!(body(alt), "alt\n");

    let squatter = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    write_atomic(
        &file,
        &config(
            &format!("[[listeners]]\nname = \"alt\"\nport = {alt}\n\n[[listeners]]\nname = \"more\"\nport = {taken}\n"),
            alt,
        ),
    );
    let line = g
        .wait_for_message(
            "config file rejected; keeping the last good configuration",
            |v| {
                v["problem"]
                    .as_str()
                    .is_some_and(|p| p.contains(&format!("cannot listen on port {taken}")))
            },
            WAIT,
        )
        .unwrap_or_else(|| panic!("no rejection:\n{}", g.output()));
    assert!(line["file"]
        .as_str()
        .is_some_and(|f| f.ends_with("gangway.toml")));
    assert_eq!(body(alt), "alt\n", "the running listener must stay");

    // Once the port is free, the same file is applied.
    drop(squatter);
    assert!(
        wait_until(WAIT, || curl([format!("http://127.0.0.1:{taken}/")]).status
            == 200),
        "not retried after the port was freed:\n{}",
        g.output()
    );

    // A port of the settings is refused with the setting's name.
    write_atomic(
        &file,
        &config(
            &format!("[[listeners]]\nname = \"clash\"\nport = {}\n", g.http_port),
            alt,
        ),
    );
    assert!(
        g.wait_for_message(
            "config file rejected; keeping the last good configuration",
            |v| v["problem"]
                .as_str()
                .is_some_and(|p| p.contains("is already HTTP_PORT's")),
            WAIT
        )
        .is_some(),
        "{}",
        g.output()
    );
}

#[test]
fn a_listener_that_cannot_start_stops_start_up() {
    let dir = TempDir::new();
    let file = dir.join("gangway.toml");
    let squatter = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    write_atomic(
        &file,
        &config(
            &format!("[[listeners]]\nname = \"alt\"\nport = {taken}\n"),
            taken,
        ),
    );
    let mut g = gangway_testkit::GangwayBuilder::new(GANGWAY)
        .network(NO_NETWORK)
        .env("GANGWAY_CONFIG", file.to_string_lossy())
        .spawn();
    let status = g
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("gangway did not exit:\n{}", g.output()));
    assert!(!status.success());
    assert!(
        g.output()
            .contains(&format!("cannot listen on port {taken}")),
        "{}",
        g.output()
    );
    drop(squatter);
}
