//! The directory a training run writes into (`output.checkpoint_dir`), as rank 0 prepares it
//! before training: a check that it is writable (a probe file created and removed), a lock
//! against a second run in the same directory, and the removal of the temporary files that a
//! killed run left behind.
//!
//! The lock is the file [`LOCK_NAME`] in the directory, created exclusively, holding the
//! process id, the host name and the process's start time (and the Slurm job and restart
//! count, where set). It is removed when the run ends, also on an error and before an
//! `MPI_Abort` ([`release_held`]). A lock whose process is gone — on this host: no process
//! with that id, or one that started at another time; a Slurm job's earlier incarnation — is
//! stale and taken over. A lock held by a live process, or by one on another host (which this
//! host cannot check), refuses the run.

use anyhow::{anyhow, bail, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The lock file's name in the run directory.
pub const LOCK_NAME: &str = ".layerpar.lock";

/// The lock this process holds (its path and contents), for [`release_held`].
static HELD: Mutex<Option<(PathBuf, String)>> = Mutex::new(None);

/// Who holds a lock: what the lock file records.
#[derive(Clone, Debug, PartialEq)]
pub struct Holder {
    pub pid: i32,
    pub host: String,
    /// The process's start time in clock ticks since boot (/proc/PID/stat), 0 if unknown.
    pub start: u64,
    /// SLURM_JOB_ID and SLURM_RESTART_COUNT of the holder, where set.
    pub slurm_job: Option<String>,
    pub slurm_restart: Option<String>,
}

impl Holder {
    /// This process.
    pub fn me() -> Holder {
        let pid = std::process::id() as i32;
        Holder {
            pid,
            host: hostname(),
            start: start_time(pid).unwrap_or(0),
            slurm_job: std::env::var("SLURM_JOB_ID").ok().filter(|s| !s.is_empty()),
            slurm_restart: std::env::var("SLURM_RESTART_COUNT")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }

    /// The lock file's text.
    pub fn to_text(&self) -> String {
        let mut t = format!(
            "layerpar lock\npid {}\nhost {}\nstart {}\n",
            self.pid, self.host, self.start
        );
        if let Some(j) = &self.slurm_job {
            t.push_str(&format!("slurm_job {j}\n"));
        }
        if let Some(r) = &self.slurm_restart {
            t.push_str(&format!("slurm_restart {r}\n"));
        }
        t
    }

    /// The holder recorded in a lock file's text (None if it is not one).
    pub fn parse(text: &str) -> Option<Holder> {
        let mut lines = text.lines();
        if lines.next()? != "layerpar lock" {
            return None;
        }
        let (mut pid, mut host, mut start) = (None, None, 0);
        let (mut slurm_job, mut slurm_restart) = (None, None);
        for line in lines {
            let (k, v) = line.split_once(' ')?;
            match k {
                "pid" => pid = v.parse::<i32>().ok().filter(|&p| p > 0),
                "host" => host = Some(v.to_string()),
                "start" => start = v.parse().ok()?,
                "slurm_job" => slurm_job = Some(v.to_string()),
                "slurm_restart" => slurm_restart = Some(v.to_string()),
                _ => {}
            }
        }
        Some(Holder {
            pid: pid?,
            host: host?,
            start,
            slurm_job,
            slurm_restart,
        })
    }

    fn describe(&self) -> String {
        format!("layerpar process {} on host {}", self.pid, self.host)
    }
}

/// Whether the lock of `holder` is stale as seen by `me`: Some(reason) if its process is
/// gone, None if it may be alive (or cannot be checked from this host).
pub fn stale(holder: &Holder, me: &Holder) -> Option<String> {
    if let (Some(job), Some(mine)) = (&holder.slurm_job, &me.slurm_job) {
        if job == mine && holder.slurm_restart != me.slurm_restart {
            return Some(format!(
                "left by an earlier run of Slurm job {job} (restart {})",
                holder.slurm_restart.as_deref().unwrap_or("0")
            ));
        }
    }
    if holder.host != me.host {
        return None;
    }
    if holder.pid == me.pid && holder.start == me.start {
        // This very process (a second lock on the same directory): held.
        return None;
    }
    if !process_exists(holder.pid) {
        return Some(format!("its process {} has ended", holder.pid));
    }
    match start_time(holder.pid) {
        Some(t) if holder.start != 0 && t != holder.start => Some(format!(
            "its process {} has ended (the id now belongs to another process)",
            holder.pid
        )),
        _ => None,
    }
}

/// The lock on a run directory, held by rank 0 while the run lasts; removed on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    text: String,
    /// Why an earlier lock was taken over (a note for the log), if one was.
    pub took_over: Option<String>,
}

impl RunLock {
    /// Takes the lock on `dir` (which exists), or says who holds it. `key` names the
    /// configuration key of the directory in the messages.
    pub fn acquire(dir: &Path, key: &str) -> Result<RunLock> {
        let path = dir.join(LOCK_NAME);
        let me = Holder::me();
        let text = me.to_text();
        let mut took_over = None;
        // Twice at most: after a stale lock is removed, the second try creates ours (or meets
        // a run that won the race).
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
                    if let Err(e) = written {
                        let _ = std::fs::remove_file(&path);
                        bail!("cannot write the lock file {}: {e}", path.display());
                    }
                    *HELD.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((path.clone(), text.clone()));
                    return Ok(RunLock {
                        path,
                        text,
                        took_over,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let found = match std::fs::read_to_string(&path) {
                        Ok(t) => t,
                        // Released meanwhile: try again.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => bail!("cannot read the lock file {}: {e}", path.display()),
                    };
                    let reason = match Holder::parse(&found) {
                        Some(h) => match stale(&h, &me) {
                            Some(reason) => reason,
                            None => bail!(
                                "{key} = {} is in use by {} (lock file {}); give this run another {key}, or remove the lock file if that run has ended",
                                dir.display(),
                                h.describe(),
                                path.display()
                            ),
                        },
                        // A lock being written right now, or a damaged one (written by a
                        // process killed at that moment): stale once it is old.
                        None if modified_before(&path, Duration::from_secs(30)) => {
                            "it is not a lock file layerpar wrote completely".to_string()
                        }
                        None => bail!(
                            "{key} = {} is being locked by another run (lock file {}); give this run another {key}",
                            dir.display(),
                            path.display()
                        ),
                    };
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => bail!(
                            "cannot remove the stale lock file {} ({reason}): {e}",
                            path.display()
                        ),
                    }
                    took_over = Some(format!(
                        "took over the stale lock {} ({reason})",
                        path.display()
                    ));
                }
                Err(e) => bail!("cannot create the lock file {}: {e}", path.display()),
            }
        }
        bail!(
            "cannot lock {key} = {}: another run took the lock {} at the same moment",
            dir.display(),
            path.display()
        )
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        remove_if_ours(&self.path, &self.text);
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if held.as_ref().is_some_and(|(p, _)| *p == self.path) {
            *held = None;
        }
    }
}

/// Removes the lock this process holds, if any (before `MPI_Abort`, which runs no
/// destructors).
pub fn release_held() {
    let held = HELD.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some((path, text)) = held {
        remove_if_ours(&path, &text);
    }
}

/// Removes the lock file `path` if it still holds `text` (not another run's lock that took
/// over a lock believed stale).
fn remove_if_ours(path: &Path, text: &str) {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        let _ = std::fs::remove_file(path);
    }
}

fn modified_before(path: &Path, age: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|d| d > age)
}

/// Checks that files can be created in `dir`: creates and removes a probe file. `what`
/// names the directory in the message (e.g. "config key `output.checkpoint_dir` = runs").
pub fn probe_writable(dir: &Path, what: &str) -> Result<()> {
    let probe = dir.join(format!(".layerpar-probe.{}", std::process::id()));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"probe\n"));
    let removed = created.as_ref().ok().map(|_| std::fs::remove_file(&probe));
    match (created, removed) {
        (Ok(()), Some(Ok(()))) => Ok(()),
        (Err(e), _) | (Ok(()), Some(Err(e))) => {
            let _ = std::fs::remove_file(&probe);
            Err(anyhow!(
                "{what}: cannot write in directory {} ({e}); nothing was trained",
                dir.display()
            ))
        }
        (Ok(()), None) => unreachable!("a created probe is removed"),
    }
}

/// Whether `name` is a temporary file of a checkpoint that `layerpar train` writes
/// (`checkpoint::fsio::temporary_path` of `ckpt_NNNNNN.h5`, `ckpt_LℓNNNNNN.h5`, `final.h5` or
/// `levelℓ.h5`: the name followed by `.tmp` and a process id).
pub fn is_checkpoint_temporary(name: &str) -> bool {
    let Some((stem, pid)) = name.rsplit_once(".h5.tmp") else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) {
        return false;
    }
    if stem == "final" {
        return true;
    }
    if let Some(l) = stem.strip_prefix("level") {
        return digits(l);
    }
    let Some(rest) = stem.strip_prefix("ckpt_") else {
        return false;
    };
    match rest.strip_prefix('L').and_then(|r| r.split_once('_')) {
        Some((level, iter)) => digits(level) && digits(iter),
        None => digits(rest),
    }
}

/// Removes the checkpoint temporaries ([`is_checkpoint_temporary`]) in `dir` that earlier,
/// killed runs left behind (call while holding the lock: no live run writes them); returns
/// the names removed.
pub fn remove_stale_temporaries(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_checkpoint_temporary(n))
        .filter(|n| std::fs::remove_file(dir.join(n)).is_ok())
        .collect();
    removed.sort();
    removed
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether a process with id `pid` exists on this host (it may belong to another user).
fn process_exists(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_temporaries_are_recognized_exactly() {
        for n in [
            "ckpt_000002.h5.tmp123",
            "ckpt_L1_000003.h5.tmp9",
            "final.h5.tmp42",
            "level0.h5.tmp7",
        ] {
            assert!(is_checkpoint_temporary(n), "{n}");
        }
        for n in [
            "ckpt_000002.h5",
            "ckpt_000002.h5.tmp",
            "ckpt_000002.h5.tmp12x",
            "ckpt_x.h5.tmp1",
            "ckpt_L_000003.h5.tmp9",
            "other.h5.tmp1",
            "final.h5.tmp",
            "history.csv.tmp1",
            "levelx.h5.tmp1",
            ".layerpar.lock",
        ] {
            assert!(!is_checkpoint_temporary(n), "{n}");
        }
    }

    #[test]
    fn lock_files_round_trip_and_stale_locks_are_told_apart() {
        let me = Holder::me();
        assert_eq!(Holder::parse(&me.to_text()), Some(me.clone()));
        assert_eq!(Holder::parse("garbage"), None);
        assert_eq!(Holder::parse("layerpar lock\npid x\nhost h\n"), None);
        // This process holds it: alive.
        assert_eq!(stale(&me, &me), None);
        // Another host: cannot be checked, so held.
        let elsewhere = Holder {
            host: format!("{}-other", me.host),
            pid: 1,
            ..me.clone()
        };
        assert_eq!(stale(&elsewhere, &me), None);
        // A process id that no process has (above the kernel's pid_max).
        let gone = Holder {
            pid: i32::MAX,
            ..me.clone()
        };
        assert!(stale(&gone, &me).unwrap().contains("has ended"));
        // The parent (alive) with a start time that is not its own: the id was reused.
        let parent = std::os::unix::process::parent_id() as i32;
        let reused = Holder {
            pid: parent,
            start: start_time(parent).unwrap_or(1) + 1,
            ..me.clone()
        };
        assert!(stale(&reused, &me).unwrap().contains("another process"));
        let live = Holder {
            pid: parent,
            start: start_time(parent).unwrap_or(0),
            ..me.clone()
        };
        assert_eq!(stale(&live, &me), None);
        // A requeued Slurm job's earlier incarnation, on another host.
        let job = |restart: &str| Holder {
            slurm_job: Some("77".into()),
            slurm_restart: Some(restart.into()),
            ..elsewhere.clone()
        };
        let me_job = Holder {
            slurm_job: Some("77".into()),
            slurm_restart: Some("1".into()),
            ..me.clone()
        };
        assert!(stale(&job("0"), &me_job).unwrap().contains("Slurm job 77"));
        assert_eq!(stale(&job("1"), &me_job), None);
    }

    #[test]
    fn a_second_lock_is_refused_and_a_released_one_can_be_taken() {
        let d = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(d.path(), "output.checkpoint_dir").unwrap();
        assert!(lock.took_over.is_none());
        let e = RunLock::acquire(d.path(), "output.checkpoint_dir").unwrap_err();
        let e = e.to_string();
        assert!(e.contains("is in use by layerpar process"), "{e}");
        assert!(!e.contains('\n'));
        drop(lock);
        assert!(!d.path().join(LOCK_NAME).exists());
        // A stale lock (a process that has ended) is taken over.
        let gone = Holder {
            pid: i32::MAX,
            ..Holder::me()
        };
        std::fs::write(d.path().join(LOCK_NAME), gone.to_text()).unwrap();
        let lock = RunLock::acquire(d.path(), "output.checkpoint_dir").unwrap();
        assert!(lock.took_over.as_deref().unwrap().contains("has ended"));
        release_held();
        assert!(!d.path().join(LOCK_NAME).exists());
    }

    #[test]
    fn the_probe_finds_unwritable_directories_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        probe_writable(d.path(), "x").unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        let e = probe_writable(
            Path::new("/proc/self"),
            "config key `output.checkpoint_dir` = /proc/self",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cannot write in directory /proc/self"), "{e}");
    }

    #[test]
    fn only_checkpoint_temporaries_are_removed() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "ckpt_000002.h5.tmp1",
            "final.h5.tmp2",
            "ckpt_000002.h5",
            "keep.tmp3",
            "x.h5.tmp4",
        ] {
            std::fs::write(d.path().join(n), "x").unwrap();
        }
        let removed = remove_stale_temporaries(d.path());
        assert_eq!(removed, ["ckpt_000002.h5.tmp1", "final.h5.tmp2"]);
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["ckpt_000002.h5", "keep.tmp3", "x.h5.tmp4"]);
    }
}
