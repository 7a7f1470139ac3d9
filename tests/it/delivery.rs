//! Delivery that loses nothing: broker outages, SIGKILL, wrong credentials.
//! Real mosquitto (with persistence, so a subscriber misses nothing while the
//! broker restarts), the real daemon binary and model, real files.

use crate::common;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::textimg::render;
use common::{Broker, Daemon, Subscriber};

fn write_config(dir: &Path, broker_url: &str, extra_model: &str, extra_mqtt: &str) -> PathBuf {
    let cfg = dir.join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "device = \"dev1\"\n[model]\npath = {:?}\n{extra_model}\n[[source]]\nname = \"in\"\nkind = \"folder\"\npath = \"inbox\"\nsettle_ms = 100\n[mqtt]\nurl = \"{broker_url}\"\noutbox = \"outbox\"\n{extra_mqtt}\n[tiling]\nmode = \"off\"\n",
            common::model_path().display().to_string()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    cfg
}

/// Small images keep a 100-image run short; one text line each.
fn drop_images(dir: &Path, names: impl Iterator<Item = String>, pause: Duration) {
    let (img, _) = render(320, 96, 77, 1, 30, 30);
    for name in names {
        let staged = dir.join(format!(".{name}"));
        common::save(&img, &staged);
        std::fs::rename(&staged, dir.join("inbox").join(&name)).unwrap();
        std::thread::sleep(pause);
    }
}

fn names(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("img{i:03}.png"))
}

fn file_of(m: &common::Received) -> String {
    let v = m.json();
    let p = v["image"]["path"].as_str().unwrap_or("").to_string();
    Path::new(&p)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn broker_stopped_for_10s_while_100_images_flow_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start_persistent();
    let sub = Subscriber::persistent(broker.port, "edgewatch/dev1/in/detections", "outage-sub");
    let cfg = write_config(dir.path(), &broker.url(), "", "");
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_log("edgewatch ready", Duration::from_secs(60));

    let writer = {
        let d = dir.path().to_path_buf();
        std::thread::spawn(move || drop_images(&d, names(100), Duration::from_millis(40)))
    };
    sub.wait_until(
        Duration::from_secs(60),
        "20 messages before the outage",
        |all| all.len() >= 20,
    );
    broker.stop_gracefully();
    std::thread::sleep(Duration::from_secs(10));
    broker.restart();
    writer.join().unwrap();
    let got = sub.wait_until(
        Duration::from_secs(180),
        "all 100 images after the outage",
        |all| all.iter().map(file_of).collect::<HashSet<_>>().len() >= 100,
    );
    let files: BTreeSet<String> = got.iter().map(file_of).collect();
    assert_eq!(files, names(100).collect::<BTreeSet<_>>());
    daemon.wait_log("lost the MQTT broker", Duration::from_secs(1));
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(20)).success());
}

#[test]
fn sigkill_mid_batch_then_restart_keeps_every_file_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_persistent();
    let sub = Subscriber::persistent(broker.port, "edgewatch/dev1/in/detections", "kill-sub");
    let cfg = write_config(dir.path(), &broker.url(), "", "");
    drop_images(dir.path(), names(30), Duration::ZERO);
    let mut daemon = Daemon::start(&cfg);
    let done = dir.path().join("done");
    wait_for(Duration::from_secs(120), "5 files done", || {
        files_in(&done).len() >= 5
    });
    daemon.kill9();
    let after_kill = files_in(&done).len();
    assert!(after_kill < 30, "killed mid-batch ({after_kill} done)");

    let mut daemon = Daemon::start(&cfg);
    wait_for(Duration::from_secs(180), "every file done", || {
        files_in(&done).len() >= 30
    });
    let mut in_done = files_in(&done);
    in_done.sort();
    assert_eq!(
        in_done,
        names(30).collect::<Vec<_>>(),
        "each file in done/ exactly once"
    );
    assert!(files_in(&dir.path().join("failed")).is_empty());
    assert!(files_in(&dir.path().join("inbox")).is_empty());
    assert!(files_in(&dir.path().join("inbox/.processing")).is_empty());
    let got = sub.wait_until(
        Duration::from_secs(60),
        "a message for every done file",
        |all| all.iter().map(file_of).collect::<HashSet<_>>().len() >= 30,
    );
    // At least once; a duplicate carries the same id as its original.
    let mut id_of = std::collections::HashMap::new();
    for m in &got {
        let id = m.json()["id"].as_str().unwrap().to_string();
        let prev = id_of.insert(file_of(m), id.clone());
        assert!(
            prev.is_none() || prev == Some(id),
            "a re-sent message keeps its id"
        );
    }
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(20)).success());
}

#[test]
fn broker_down_for_the_whole_run_then_up_delivers_all_50_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start_persistent();
    // Register the subscriber's session, then take the broker away.
    let sub = Subscriber::persistent(broker.port, "edgewatch/dev1/in/detections", "order-sub");
    broker.stop_gracefully();
    // One worker: files are processed, and so queued, in name order.
    let cfg = write_config(dir.path(), &broker.url(), "workers = 1", "");
    drop_images(dir.path(), names(50), Duration::ZERO);
    let mut daemon = Daemon::start(&cfg);
    let done = dir.path().join("done");
    wait_for(
        Duration::from_secs(180),
        "all 50 processed while the broker is down",
        || files_in(&done).len() >= 50,
    );
    assert!(sub.all().is_empty());
    broker.restart();
    let got = sub.wait_until(Duration::from_secs(60), "50 messages", |all| {
        all.len() >= 50
    });
    let order: Vec<String> = got.iter().map(file_of).collect();
    assert_eq!(order, names(50).collect::<Vec<_>>(), "delivered in order");
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(20)).success());
    assert!(
        !daemon.log().iter().any(|l| l.contains("stopping with")),
        "outbox drained before exit"
    );
}

#[test]
fn wrong_password_is_reported_and_retried_without_leaking_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    // The password file must exist before mosquitto reads its config.
    let setup = tempfile::tempdir().unwrap();
    let pwfile = setup.path().join("passwd");
    let ok = std::process::Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&pwfile)
        .args(["line-3", "right-horse-battery"])
        .status()
        .expect("mosquitto_passwd (package mosquitto)");
    assert!(ok.success());
    std::fs::set_permissions(setup.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let broker = Broker::start_with(
        port,
        &format!(
            "allow_anonymous false\npassword_file {}\n",
            pwfile.display()
        ),
    );
    let sub_opts = {
        let mut o = rumqttc::MqttOptions::new("auth-sub", "127.0.0.1", port);
        o.set_credentials("line-3", "right-horse-battery");
        o
    };
    let secret = dir.path().join("mqtt.pass");
    std::fs::write(&secret, "wrong-donkey-staple\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = write_config(
        dir.path(),
        &broker.url(),
        "",
        &format!(
            "username = \"line-3\"\npassword_file = {:?}",
            secret.display().to_string()
        ),
    );
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_log("refused the connection", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    assert!(daemon.alive(), "a refused login is retried, not fatal");
    assert!(
        !daemon
            .log()
            .iter()
            .any(|l| l.contains("wrong-donkey-staple")),
        "the password never reaches the log"
    );
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(20)).success());

    // The right password delivers.
    std::fs::write(&secret, "right-horse-battery\n").unwrap();
    let (client, mut conn) = rumqttc::Client::new(sub_opts, 10);
    client
        .subscribe("edgewatch/dev1/in/detections", rumqttc::QoS::AtLeastOnce)
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    let _ = tx.send(None);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let _ = tx.send(Some(p.topic.clone()));
                }
                Err(_) => break,
                _ => {}
            }
        }
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        None,
        "subscribed"
    );
    drop_images(dir.path(), names(1), Duration::ZERO);
    let mut daemon = Daemon::start(&cfg);
    let topic = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a message with the right password");
    assert_eq!(topic.as_deref(), Some("edgewatch/dev1/in/detections"));
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(20)).success());
    drop(client);
    drop(broker);
}

#[test]
fn full_outbox_makes_the_folder_wait_and_drains_when_the_broker_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start_persistent();
    let sub = Subscriber::persistent(broker.port, "edgewatch/dev1/in/detections", "full-sub");
    broker.stop_gracefully();
    // About 12 messages fit in 10 KiB.
    let cfg = write_config(dir.path(), &broker.url(), "", "outbox_max_mb = 0.01");
    drop_images(dir.path(), names(30), Duration::ZERO);
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_log("outbox full", Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(2));
    let waiting = files_in(&dir.path().join("inbox")).len();
    let done = files_in(&dir.path().join("done")).len();
    assert!(waiting > 0, "the folder waits: files stay in the inbox");
    assert!(
        done < 30,
        "not everything could be processed while full ({done})"
    );
    broker.restart();
    let got = sub.wait_until(
        Duration::from_secs(180),
        "all 30 after the broker returned",
        |all| all.iter().map(file_of).collect::<HashSet<_>>().len() >= 30,
    );
    assert_eq!(
        got.iter().map(file_of).collect::<BTreeSet<_>>(),
        names(30).collect::<BTreeSet<_>>()
    );
    wait_for(Duration::from_secs(30), "all files done", || {
        files_in(&dir.path().join("done")).len() >= 30
    });
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(20)).success());
}

#[test]
fn an_outbox_with_its_tail_cut_off_starts_and_keeps_what_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start_persistent();
    let sub = Subscriber::persistent(broker.port, "edgewatch/dev1/in/detections", "torn-sub");
    broker.stop_gracefully();
    let cfg = write_config(dir.path(), &broker.url(), "workers = 1", "");
    drop_images(dir.path(), names(5), Duration::ZERO);
    let mut daemon = Daemon::start(&cfg);
    let done = dir.path().join("done");
    wait_for(Duration::from_secs(120), "5 processed", || {
        files_in(&done).len() >= 5
    });
    daemon.kill9();
    // Cut into the last record, as a power cut during a write would.
    let outbox = dir.path().join("outbox");
    let mut segs = files_in(&outbox);
    segs.sort();
    let last = outbox.join(segs.last().expect("a segment"));
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 10)
        .unwrap();

    broker.restart();
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_log("torn byte(s)", Duration::from_secs(60));
    let got = sub.wait_until(Duration::from_secs(60), "the 4 whole messages", |all| {
        all.len() >= 4
    });
    std::thread::sleep(Duration::from_secs(1));
    let order: Vec<String> = sub.all().iter().map(file_of).collect();
    assert_eq!(
        order,
        names(4).collect::<Vec<_>>(),
        "whole records kept, torn one dropped"
    );
    assert!(got.len() >= 4);
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(20)).success());
}

/// Two daemons left on the default outbox (an operator running `edgewatch
/// run` by hand beside the service) once lost half their detections. The
/// second daemon is now refused, naming the outbox and the pid holding it,
/// and the first keeps delivering. After `kill -9` of the first the lock is
/// gone with it: a new daemon opens the outbox and delivers what was queued.
#[test]
fn a_second_daemon_on_the_same_outbox_exits_2_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/+/+/detections");
    let first_cfg = write_config(dir.path(), &broker.url(), "", "");
    let mut first = Daemon::start(&first_cfg);
    first.wait_log("edgewatch ready", Duration::from_secs(60));

    // Its own inbox and config file, the same outbox directory.
    let other = dir.path().join("other");
    std::fs::create_dir_all(other.join("inbox")).unwrap();
    let text = std::fs::read_to_string(&first_cfg)
        .unwrap()
        .replace(
            "outbox = \"outbox\"",
            &format!(
                "outbox = {:?}",
                dir.path().join("outbox").display().to_string()
            ),
        )
        .replace("device = \"dev1\"", "device = \"dev2\"");
    let second_cfg = other.join("edgewatch.toml");
    std::fs::write(&second_cfg, text).unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["run", "--config"])
        .arg(&second_cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "second daemon: {stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("in use by"))
        .unwrap_or_else(|| panic!("no line saying the outbox is in use: {stderr}"));
    assert!(line.contains(&format!("pid {}", first.pid())), "{line}");
    assert!(line.contains("outbox"), "{line}");

    // The first daemon is untouched and still delivers.
    drop_images(dir.path(), names(3), Duration::from_millis(50));
    wait_for(
        Duration::from_secs(60),
        "3 detections from the first daemon",
        || common::detections_by_file(&sub).len() == 3,
    );
    first.kill9();

    // No clean-up after kill -9: the kernel dropped the lock.
    let mut third = Daemon::start(&second_cfg);
    third.wait_log("edgewatch ready", Duration::from_secs(60));
    assert!(third.alive());
    third.stop_cleanly();
}

/// Several industrial PCs share one network inbox, each with its own
/// outbox: every file is claimed by exactly one daemon and published once.
#[test]
fn two_daemons_on_one_shared_inbox_process_every_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/+/+/detections");
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(shared.join("inbox")).unwrap();
    let mut daemons = Vec::new();
    for name in ["pc1", "pc2"] {
        let home = dir.path().join(name);
        std::fs::create_dir_all(&home).unwrap();
        let cfg = write_config(&home, &broker.url(), "", "");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace(
                "path = \"inbox\"",
                &format!("path = {:?}", shared.join("inbox").display().to_string()),
            )
            .replace("device = \"dev1\"", &format!("device = \"{name}\""));
        std::fs::write(&cfg, text).unwrap();
        let d = Daemon::start(&cfg);
        d.wait_log("edgewatch ready", Duration::from_secs(60));
        daemons.push(d);
    }
    let n = 30;
    drop_images(&shared, names(n), Duration::from_millis(20));
    wait_for(Duration::from_secs(120), "a message for every file", || {
        common::detections_by_file(&sub).len() == n
    });
    // Settle: a file taken twice would show up as a second message.
    std::thread::sleep(Duration::from_secs(2));
    let by_file = common::detections_by_file(&sub);
    for (file, msgs) in &by_file {
        assert_eq!(msgs.len(), 1, "{file} was published {} times", msgs.len());
    }
    let devices: BTreeSet<String> = sub
        .all()
        .iter()
        .filter_map(|m| m.topic.split('/').nth(1).map(str::to_string))
        .collect();
    assert_eq!(
        files_in(&shared.join("inbox")).len(),
        0,
        "files left in the inbox"
    );
    let done = files_in(&shared.join("done")).len();
    assert_eq!(done, n, "done/ holds {done} of {n} files");
    eprintln!("devices that published: {devices:?}");
    for mut d in daemons {
        d.stop_cleanly();
    }
}
