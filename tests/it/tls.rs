//! MQTT over TLS with a password, against mosquitto configured by the test
//! with its own CA (certificates made at test time with the openssl CLI).

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Broker, Daemon, Subscriber};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A self-signed CA: `{name}-ca.pem` and `{name}-ca.key`.
fn make_ca(dir: &Path, name: &str) {
    let (key, pem, subj) = (
        format!("{name}-ca.key"),
        format!("{name}-ca.pem"),
        format!("/CN={name} test CA"),
    );
    let mut args = vec!["req", "-x509"];
    args.extend(EC_KEY);
    args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
    openssl(dir, &args);
    std::fs::set_permissions(dir.join(&pem), std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// `{name}.pem` + `{name}.key` for `subject`, signed by CA `ca`, with the
/// given X.509 extensions.
fn issue_cert(dir: &Path, name: &str, subject: &str, extensions: &str, ca: &str) {
    let (key, csr, pem, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    let mut args = vec!["req"];
    args.extend(EC_KEY);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(dir, &args);
    std::fs::write(dir.join(&ext), extensions).unwrap();
    let (ca_pem, ca_key) = (format!("{ca}-ca.pem"), format!("{ca}-ca.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
    std::fs::set_permissions(dir.join(&pem), std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn make_server_cert(dir: &Path, ca: &str) {
    let ext = "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
    issue_cert(dir, "server", "/CN=localhost", ext, ca);
    // mosquitto runs as its own user and must read its key.
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
}

/// A client certificate for `line-3`, signed by the `good` CA.
fn make_client_cert(dir: &Path) {
    issue_cert(
        dir,
        "client",
        "/CN=line-3",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        "good",
    );
    std::fs::set_permissions(
        dir.join("client.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

fn config(dir: &Path, tls_port: u16, ca: &Path, password: &str) -> std::path::PathBuf {
    config_with(dir, tls_port, ca, password, "")
}

fn config_with(
    dir: &Path,
    tls_port: u16,
    ca: &Path,
    password: &str,
    extra: &str,
) -> std::path::PathBuf {
    let secret = dir.join("mqtt.pass");
    std::fs::write(&secret, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = dir.join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "device = \"tls1\"\n[model]\npath = {:?}\n[[source]]\nname = \"in\"\nkind = \"folder\"\npath = \"inbox\"\nsettle_ms = 100\n[mqtt]\nurl = \"mqtts://localhost:{tls_port}\"\nusername = \"line-3\"\npassword_file = \"mqtt.pass\"\nca_file = {:?}\noutbox = \"outbox\"\n{extra}\n[tiling]\nmode = \"off\"\n",
            common::model_path().display().to_string(),
            ca.display().to_string()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    cfg
}

#[test]
fn tls_with_password_delivers_and_an_untrusted_ca_is_reported_and_retried() {
    let certs = tempfile::tempdir().unwrap();
    std::fs::set_permissions(certs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    make_ca(certs.path(), "good");
    make_ca(certs.path(), "rogue");
    make_server_cert(certs.path(), "good");
    make_client_cert(certs.path());
    let pw = certs.path().join("passwd");
    assert!(Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&pw)
        .args(["line-3", "tls-pass-42"])
        .status()
        .unwrap()
        .success());
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();

    // Plain listener (anonymous) for the test's subscriber, TLS + password for the daemon.
    let tls_port = common::free_port();
    let mtls_port = common::free_port();
    let c = certs.path().display();
    let broker = Broker::start_with(
        common::free_port(),
        &format!(
            "allow_anonymous true\npassword_file {c}/passwd\nlistener {tls_port} 127.0.0.1\ncafile {c}/good-ca.pem\ncertfile {c}/server.pem\nkeyfile {c}/server.key\nlistener {mtls_port} 127.0.0.1\ncafile {c}/good-ca.pem\ncertfile {c}/server.pem\nkeyfile {c}/server.key\nrequire_certificate true\n"
        ),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "TLS listener up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sub = Subscriber::connect(broker.port, "edgewatch/tls1/#");

    // Trusted CA, right password: a message arrives.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        tls_port,
        &certs.path().join("good-ca.pem"),
        "tls-pass-42",
    );
    let check = Command::new(common::bin())
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let (img, _) = common::textimg::render(320, 96, 5, 1, 30, 30);
    common::save(&img, &dir.path().join("inbox/a.png"));
    let mut daemon = Daemon::start(&cfg);
    let got = sub.wait_until(Duration::from_secs(60), "a message over TLS", |all| {
        all.iter()
            .any(|m| m.topic == "edgewatch/tls1/in/detections")
    });
    assert!(got
        .iter()
        .any(|m| m.topic == "edgewatch/tls1/status" && m.payload == b"online"));
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(20)).success());

    // A broker that requires a client certificate: presented from client_cert/client_key.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(
        dir.path(),
        mtls_port,
        &certs.path().join("good-ca.pem"),
        "tls-pass-42",
        &format!(
            "client_cert = {:?}\nclient_key = {:?}",
            format!("{c}/client.pem"),
            format!("{c}/client.key")
        ),
    );
    common::save(&img, &dir.path().join("inbox/b.png"));
    let mut daemon = Daemon::start(&cfg);
    sub.wait_until(
        Duration::from_secs(60),
        "a message over mutual TLS",
        |all| {
            all.iter().any(|m| {
                m.topic.ends_with("/detections")
                    && m.json()["image"]["path"]
                        .as_str()
                        .is_some_and(|p| p.ends_with("b.png"))
            })
        },
    );
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(20)).success());

    // A CA that did not sign the broker's certificate: clear error, retried, no crash.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        tls_port,
        &certs.path().join("rogue-ca.pem"),
        "tls-pass-42",
    );
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_log("TLS failed", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        daemon.alive(),
        "an untrusted certificate is retried, not fatal"
    );
    let log = daemon.log().join("\n");
    assert!(
        log.contains("ca_file"),
        "the error says what to check: {log}"
    );
    assert!(!log.contains("tls-pass-42"), "no password in the log");
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(20)).success());
}
