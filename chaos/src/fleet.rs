//! The system under test: `orders` service processes, started, killed and stopped on command,
//! each logging to its own file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::Res;

/// How to start one `orders` process.
#[derive(Debug, Clone)]
pub(crate) struct ServiceSpec {
    pub(crate) bin: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) bootstrap: String,
    pub(crate) input: String,
    pub(crate) output: String,
    pub(crate) group: String,
    /// Extra `--set` items.
    pub(crate) sets: Vec<String>,
    pub(crate) log_dir: PathBuf,
}

/// One running (or finished) `orders` process.
pub(crate) struct Service {
    /// 1-based number in start order, for logs (`svc3`).
    pub(crate) number: usize,
    child: Child,
    pub(crate) log: PathBuf,
    /// The exit status, once it exited.
    pub(crate) status: Option<ExitStatus>,
    /// Set when we asked it to stop (SIGTERM or SIGKILL); an exit without it is a crash.
    pub(crate) told_to_stop: bool,
}

impl Service {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn name(&self) -> String {
        format!("svc{} (pid {})", self.number, self.pid())
    }

    /// Whether it still runs (collects the status if it exited).
    pub(crate) fn running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.status = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    pub(crate) fn sigkill(&mut self) -> Res<()> {
        self.told_to_stop = true;
        if self.running() {
            self.child.kill()?;
        }
        Ok(())
    }

    pub(crate) fn sigterm(&mut self) -> Res<()> {
        self.told_to_stop = true;
        if self.running() {
            let status = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status()?;
            if !status.success() && self.running() {
                return Err(format!("kill -TERM {} failed", self.pid()).into());
            }
        }
        Ok(())
    }

    /// Waits until the process logged that its listener started (its signal handlers are
    /// installed right after) plus a small margin; `false` if it did not within `timeout`.
    /// A SIGTERM before that point meets the default signal disposition, not the framework.
    pub(crate) fn wait_started(&mut self, timeout: Duration) -> bool {
        let started = self.wait_log("listener started", timeout);
        if started {
            std::thread::sleep(Duration::from_millis(200));
        }
        started
    }

    /// Waits until the process's log contains `needle`; `false` if it did not within
    /// `timeout` (or the process exited).
    pub(crate) fn wait_log(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && self.running() {
            if std::fs::read_to_string(&self.log).is_ok_and(|text| text.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits for the exit; SIGKILLs it after `timeout` (and returns `None` then).
    pub(crate) fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.running() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.status
    }
}

/// All processes started in one scenario.
pub(crate) struct Fleet {
    spec: ServiceSpec,
    pub(crate) services: Vec<Service>,
}

impl Fleet {
    pub(crate) fn new(spec: ServiceSpec) -> Res<Self> {
        std::fs::create_dir_all(&spec.log_dir)?;
        Ok(Fleet {
            spec,
            services: Vec::new(),
        })
    }

    /// Starts one more process; returns its index in `services`.
    pub(crate) fn start(&mut self) -> Res<usize> {
        let number = self.services.len() + 1;
        let log = self.spec.log_dir.join(format!("svc{number}.log"));
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&self.spec.bin);
        cmd.arg("--config")
            .arg(&self.spec.config)
            .args([
                "--set",
                &format!("kafka.listener.orders.group-id={}", self.spec.group),
            ])
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.spec.bootstrap)
            .env("ORDERS_TOPIC", &self.spec.input)
            .env("ORDERS_ACCEPTED_TOPIC", &self.spec.output)
            .env(
                "RUST_LOG",
                std::env::var("CHAOS_SERVICE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for set in &self.spec.sets {
            cmd.args(["--set", set]);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.spec.bin.display()))?;
        self.services.push(Service {
            number,
            child,
            log,
            status: None,
            told_to_stop: false,
        });
        Ok(self.services.len() - 1)
    }

    /// Indexes of the processes still running.
    pub(crate) fn running(&mut self) -> Vec<usize> {
        (0..self.services.len())
            .filter(|&i| self.services[i].running())
            .collect()
    }

    /// Processes that exited without being told to: crashes.
    pub(crate) fn crashed(&mut self) -> Vec<usize> {
        (0..self.services.len())
            .filter(|&i| !self.services[i].running() && !self.services[i].told_to_stop)
            .collect()
    }

    /// Kills what still runs (used when the harness itself fails).
    pub(crate) fn kill_all(&mut self) {
        for s in &mut self.services {
            let _ = s.sigkill();
            let _ = s.wait(Duration::from_secs(5));
        }
    }
}

/// Lines of a service log at WARN or ERROR level (the interesting part on a failure),
/// at most `max`, last ones first cut.
pub(crate) fn warnings(log: &Path, max: usize) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(log) else {
        return Vec::new();
    };
    let lines: Vec<String> = text
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("panicked"))
        .map(str::to_owned)
        .collect();
    let skip = lines.len().saturating_sub(max);
    lines.into_iter().skip(skip).collect()
}

/// Lines of a service log containing `needle`: how many, and the first `max` of them.
pub(crate) fn grep(log: &Path, needle: &str, max: usize) -> (usize, Vec<String>) {
    let Ok(text) = std::fs::read_to_string(log) else {
        return (0, Vec::new());
    };
    let hits: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
    (
        hits.len(),
        hits.iter().take(max).map(|l| (*l).to_owned()).collect(),
    )
}
