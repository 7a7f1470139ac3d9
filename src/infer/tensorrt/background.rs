//! Engine builds in a child process at the lowest CPU priority, so the
//! daemon serves on the CPU backend meanwhile and a build that crashes or is
//! OOM-killed takes only itself down.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A running build.
pub struct BackgroundBuild {
    child: Child,
    started: Instant,
    timeout: Duration,
}

/// How a build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0: the engine is in the cache.
    Built,
    /// Anything else, with the reason for the log.
    Failed(String),
}

impl BackgroundBuild {
    /// Starts `command` at nice 19 (the kernel's lowest priority); its
    /// output goes where the daemon's goes (the journal).
    pub fn spawn(mut command: Command, timeout: Duration) -> std::io::Result<BackgroundBuild> {
        // SAFETY: setpriority is async-signal-safe; nothing else runs here.
        unsafe {
            command.pre_exec(|| {
                if libc::setpriority(libc::PRIO_PROCESS, 0, 19) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        Ok(BackgroundBuild {
            child,
            started: Instant::now(),
            timeout,
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `None` while it runs; kills it past the timeout.
    pub fn poll(&mut self) -> Option<Outcome> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(outcome(status)),
            Ok(None) if self.started.elapsed() > self.timeout => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Some(Outcome::Failed(format!(
                    "the build ran past tensorrt.build_timeout_s ({} s) and was stopped",
                    self.timeout.as_secs()
                )))
            }
            Ok(None) => None,
            Err(e) => Some(Outcome::Failed(format!("cannot wait for the build: {e}"))),
        }
    }

    /// Stops the build (the daemon is stopping).
    pub fn stop(mut self) {
        // SIGTERM first: the builder cancels at its next progress step.
        // SAFETY: kill on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn outcome(status: ExitStatus) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => Outcome::Built,
        (Some(code), _) => Outcome::Failed(format!(
            "the build exited with status {code} (its reason is in the log above)"
        )),
        (None, Some(libc::SIGKILL)) => Outcome::Failed(
            "the build was killed (SIGKILL: most likely out of memory; add swap or lower tensorrt.workspace_mb)".into(),
        ),
        (None, Some(sig)) => Outcome::Failed(format!("the build was killed by signal {sig}")),
        (None, None) => Outcome::Failed("the build ended without a status".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(build: &mut BackgroundBuild) -> Outcome {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(o) = build.poll() {
                return o;
            }
            assert!(Instant::now() < deadline, "the child never ended");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn the_child_runs_at_nice_19_and_success_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nice");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!("nice > {}", out.display()));
        let mut build = BackgroundBuild::spawn(cmd, Duration::from_secs(60)).unwrap();
        assert_eq!(wait(&mut build), Outcome::Built);
        assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "19");
    }

    #[test]
    fn failures_timeouts_and_oom_kills_are_explained() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]);
        let mut build = BackgroundBuild::spawn(cmd, Duration::from_secs(60)).unwrap();
        assert!(matches!(wait(&mut build), Outcome::Failed(w) if w.contains("status 3")));

        let mut cmd = Command::new("sh");
        cmd.args(["-c", "kill -9 $$"]);
        let mut build = BackgroundBuild::spawn(cmd, Duration::from_secs(60)).unwrap();
        assert!(matches!(wait(&mut build), Outcome::Failed(w) if w.contains("out of memory")));

        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut build = BackgroundBuild::spawn(cmd, Duration::from_millis(200)).unwrap();
        let started = Instant::now();
        assert!(matches!(wait(&mut build), Outcome::Failed(w) if w.contains("build_timeout_s")));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn stop_ends_the_child() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let build = BackgroundBuild::spawn(cmd, Duration::from_secs(60)).unwrap();
        let pid = build.pid();
        let started = Instant::now();
        build.stop();
        assert!(started.elapsed() < Duration::from_secs(6));
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
