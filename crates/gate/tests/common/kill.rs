//! The SIGKILL loop of the gate's crash tests (`harness = false` binaries that run
//! themselves as the child): spawn the child on a directory, wait until it reports
//! `ready`, kill it at a seeded random moment, and hand what it printed to the
//! parent's checks; a fresh directory every `kills_per_dir` kills.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Rng, TempDir};

/// One crash test's loop.
pub struct KillLoop {
    /// The environment variable that makes the binary the child; its value is
    /// `DIR|SEED`.
    pub child_env: &'static str,
    /// The temporary directories' name.
    pub dir_name: &'static str,
    /// Kills on one directory before a fresh one.
    pub kills_per_dir: u64,
    /// The kill comes 5 ms plus up to this many ms after `ready`.
    pub max_delay_ms: u64,
}

/// What the parent checks after one kill.
pub struct Killed<'a> {
    /// The directory the child ran on.
    pub dir: &'a Path,
    /// The kill's number, from 0.
    pub kill: u64,
    /// `seed S, kill K`: the context of every failure message.
    pub context: String,
    /// Every line the child printed after `ready`.
    pub lines: Vec<String>,
}

/// The number of kills: `CALYBRIS_CRASH_KILLS`, else `default`.
pub fn kills_from_env(default: u64) -> u64 {
    std::env::var("CALYBRIS_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

impl KillLoop {
    /// In the child (its variable set): runs `child(dir, seed)`, which never returns.
    /// In the parent: returns.
    pub fn child_role(&self, child: fn(&Path, u64) -> !) {
        if let Ok(spec) = std::env::var(self.child_env) {
            let (dir, seed) = spec.split_once('|').unwrap_or((spec.as_str(), "0"));
            child(Path::new(dir), seed.parse().unwrap_or(0));
        }
    }

    /// Kills `kills` children, each seeded from `seed`'s stream, and calls `after`
    /// once each child is dead and reaped.
    pub fn run(&self, seed: u64, kills: u64, mut after: impl FnMut(Killed<'_>)) {
        assert!(self.kills_per_dir > 0, "at least one kill per directory");
        let exe = std::env::current_exe().expect("own executable");
        let mut rng = Rng::new(seed);
        let mut dir = TempDir::new(self.dir_name);
        for kill in 0..kills {
            if kill > 0 && kill % self.kills_per_dir == 0 {
                dir = TempDir::new(self.dir_name);
            }
            let context = format!("seed {seed:#x}, kill {kill}");
            let child_seed = rng.next_u64();
            let mut child = Command::new(&exe)
                .env(self.child_env, format!("{}|{child_seed}", dir.0.display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn the child");
            let stdout = child.stdout.take().expect("piped stdout");
            let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if lines_tx.send(line).is_err() {
                        break;
                    }
                }
            });
            // Wait until it is ready, then kill it at a random moment of its workload.
            let first = lines_rx.recv_timeout(Duration::from_secs(60));
            assert!(
                first.as_deref().is_ok_and(|line| line.starts_with("ready")),
                "{context}: the child never became ready: {first:?}"
            );
            std::thread::sleep(Duration::from_millis(5 + rng.below(self.max_delay_ms)));
            let _ = child.kill(); // SIGKILL on Unix
            let _ = child.wait();
            reader.join().expect("reader thread");
            let lines = lines_rx.try_iter().collect();
            after(Killed {
                dir: &dir.0,
                kill,
                context,
                lines,
            });
        }
    }
}
