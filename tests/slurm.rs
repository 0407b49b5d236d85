//! The job scripts on a real (single-node, loopback) Slurm: munged, slurmctld and slurmd are
//! started for the test from `tests/slurm/cluster.sh` with their configuration in a temporary
//! directory, and stopped at the end. The scripts in `jobscripts/` are submitted with
//! `sbatch`; a long run is signalled with USR1, checkpoints, requeues itself and resumes, and
//! its history must equal an uninterrupted run's.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Cluster {
    dir: tempfile::TempDir,
    conf: String,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(script("cluster.sh"))
            .args(["start", dir.path().to_str().unwrap()])
            .output()
            .expect("bash runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let cluster = Cluster {
            conf: stdout
                .trim()
                .trim_start_matches("export SLURM_CONF=")
                .to_string(),
            dir,
        };
        assert!(
            out.status.success(),
            "slurm did not start (scripts/setup.sh installs slurm-wlm and munge):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// Submits a job script from `workdir` with the given environment; returns the job id.
    fn sbatch(
        &self,
        workdir: &Path,
        script: &Path,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> String {
        let mut c = self.cmd("sbatch");
        c.args(["--parsable", "--export=ALL"])
            .args(extra)
            .arg(script)
            .current_dir(workdir)
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            // More slots are declared than the machine has cores: let waiting ranks yield.
            .env("OMPI_MCA_mpi_yield_when_idle", "1")
            .env("OMPI_MCA_hwloc_base_binding_policy", "none")
            .env("LAYERPAR", BIN);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("sbatch runs");
        assert!(
            out.status.success(),
            "sbatch failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    }

    /// The job's state, or None once it has left the queue ("UNREACHABLE" while squeue fails).
    fn state(&self, job: &str) -> Option<String> {
        let out = self
            .cmd("squeue")
            .args(["-h", "-j", job, "-o", "%T"])
            .output()
            .unwrap();
        if !out.status.success() {
            return Some("UNREACHABLE".into());
        }
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!s.is_empty()).then_some(s)
    }

    fn wait(&self, job: &str, limit: Duration) {
        let t = Instant::now();
        while self.state(job).is_some() {
            assert!(
                t.elapsed() < limit,
                "job {job} still queued after {limit:?}\n{}",
                self.diagnose(job)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// What Slurm knows about a job, and the tails of the daemons' logs: printed when a job
    /// does not do what the test expects.
    fn diagnose(&self, job: &str) -> String {
        let mut report = String::new();
        if let Ok(out) = self.cmd("scontrol").args(["show", "job", job]).output() {
            report += &String::from_utf8_lossy(&out.stdout);
            report += &String::from_utf8_lossy(&out.stderr);
        }
        for log in ["slurmctld.log", "slurmd.log"] {
            let text =
                std::fs::read_to_string(self.dir.path().join("log").join(log)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            report += &format!("--- {log} (last lines) ---\n");
            for l in &lines[lines.len().saturating_sub(25)..] {
                report += l;
                report += "\n";
            }
        }
        report
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script("cluster.sh"))
            .args(["stop", self.dir.path().to_str().unwrap()])
            .status();
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/slurm")
        .join(name)
}

fn jobscript(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("jobscripts")
        .join(name)
}

fn output(dir: &Path, prefix: &str, job: &str) -> String {
    let p = dir.join(format!("{prefix}-{job}.out"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn strip_time(path: &Path) -> Vec<Vec<String>> {
    rows_without_time(path)
}

/// Submits requeue.sbatch with `launcher`, signals it with USR1 once it has run 24 iterations,
/// waits for the requeued job to finish, checks its output, and returns its history file.
fn signalled_run_requeues(cluster: &Cluster, w: &Path, sets: &str, launcher: &str) -> PathBuf {
    let run_dir = format!("long-{launcher}");
    let job = cluster.sbatch(
        w,
        &jobscript("requeue.sbatch"),
        &[],
        &[
            ("SETS", sets.to_string()),
            ("RUN_DIR", run_dir.clone()),
            ("EVERY", "20".into()),
            ("LAUNCHER", launcher.to_string()),
        ],
    );
    let t = Instant::now();
    let hist = w.join(&run_dir).join("history.csv");
    while std::fs::read_to_string(&hist)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 25
    {
        assert!(
            t.elapsed() < Duration::from_secs(240),
            "the long run ({launcher}) did not start\n{}",
            cluster.diagnose(&job)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let sig = cluster
        .cmd("scancel")
        .args(["--signal=USR1", "--batch", &job])
        .status()
        .unwrap();
    assert!(sig.success());
    // The requeued job waits in PENDING until Slurm's credential lifetime has passed (set to
    // 10 s by cluster.sh), then resumes; any other outcome fails at once, with Slurm's view.
    let t = Instant::now();
    let done = || w.join(&run_dir).join("final.h5").exists();
    while !done() {
        let state = cluster.state(&job);
        let alive = matches!(
            state.as_deref(),
            Some("PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING" | "REQUEUED" | "UNREACHABLE")
        );
        if !done() && (!alive || t.elapsed() > Duration::from_secs(240)) {
            let out = std::fs::read_to_string(w.join(format!("layerpar-long-{job}.out")))
                .unwrap_or_default();
            panic!(
                "the requeued run ({launcher}) did not finish (state {state:?} after {:?})\n{out}\n{}",
                t.elapsed(),
                cluster.diagnose(&job)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    cluster.wait(&job, Duration::from_secs(240));
    let out = output(w, "layerpar-long", &job);
    println!("--- requeue.sbatch, LAUNCHER={launcher} (job {job}) ---\n{out}");
    assert!(
        out.contains("training on 4 MPI ranks")
            && out.contains("forwarding USR1")
            && out.contains("requeueing job")
            && out.contains("(restart 1)"),
        "{out}"
    );
    hist
}

#[test]
fn job_scripts_run_on_a_real_slurm_and_a_signalled_job_requeues_exactly() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let minute = Duration::from_secs(240);

    // (a) A training run on 4 ranks.
    let sets = "--set optimizer.max_iter=5 --set data.train_size=500 --set output.progress=lines"
        .to_string();
    let job = cluster.sbatch(
        w,
        &jobscript("train.sbatch"),
        &[],
        &[("SETS", sets.clone()), ("RUN_DIR", "train".into())],
    );
    cluster.wait(&job, minute);
    let out = output(w, "layerpar-train", &job);
    println!("--- train.sbatch (job {job}) ---\n{out}");
    assert!(
        out.contains("training on 4 MPI ranks")
            && out.contains("stopped: reached optimizer.max_iter = 5"),
        "{out}"
    );
    assert!(w.join("train/final.h5").exists());

    // (a') The same run launched by srun (PMIx) instead of mpirun: same ranks, same result.
    let job = cluster.sbatch(
        w,
        &jobscript("train.sbatch"),
        &[],
        &[
            ("SETS", sets.clone()),
            ("RUN_DIR", "train-srun".into()),
            ("LAUNCHER", "srun".into()),
        ],
    );
    cluster.wait(&job, minute);
    let out_srun = output(w, "layerpar-train", &job);
    println!("--- train.sbatch, LAUNCHER=srun (job {job}) ---\n{out_srun}");
    let fingerprint = |o: &str| {
        o.lines()
            .find(|l| l.starts_with("parameters:"))
            .map(String::from)
    };
    assert!(out_srun.contains("training on 4 MPI ranks"), "{out_srun}");
    assert_eq!(fingerprint(&out_srun), fingerprint(&out), "{out_srun}");
    assert!(fingerprint(&out).is_some());

    // (a'') A 2 × 2 data × layer grid (DATA_GROUPS, CHUNKS): the bits of the same chunked run
    // on one rank.
    let job = cluster.sbatch(
        w,
        &jobscript("train.sbatch"),
        &[],
        &[
            ("SETS", sets.clone()),
            ("RUN_DIR", "train-grid".into()),
            ("DATA_GROUPS", "2".into()),
            ("CHUNKS", "4".into()),
        ],
    );
    cluster.wait(&job, minute);
    let out_grid = output(w, "layerpar-train", &job);
    println!("--- train.sbatch, DATA_GROUPS=2 CHUNKS=4 (job {job}) ---\n{out_grid}");
    assert!(
        out_grid.contains("training on 4 MPI ranks") && out_grid.contains("grid: 2 × 2 ("),
        "{out_grid}"
    );
    let serial: Vec<String> = sets
        .split_whitespace()
        .map(String::from)
        .chain(
            [
                "--set",
                "parallel.chunks=4",
                "--set",
                "output.checkpoint_dir=grid1",
            ]
            .map(String::from),
        )
        .collect();
    let serial: Vec<&str> = ["train", "--history", "grid1.csv"]
        .into_iter()
        .chain(serial.iter().map(|s| s.as_str()))
        .collect();
    let one = ok(&layerpar(w, &serial));
    let tail =
        |o: &str| fingerprint(o).and_then(|l| l.split("fingerprint ").nth(1).map(String::from));
    assert!(tail(&one).is_some(), "{one}");
    assert_eq!(tail(&out_grid), tail(&one), "{out_grid}");

    // (b) Nested iteration.
    let job = cluster.sbatch(
        w,
        &jobscript("nested.sbatch"),
        &["--ntasks=2"],
        &[
            ("LAYERS", "16".into()),
            ("LEVELS", "3".into()),
            ("ITERS", "[4,3,3]".into()),
            ("RUN_DIR", "nested".into()),
        ],
    );
    cluster.wait(&job, minute);
    let out = output(w, "layerpar-nested", &job);
    println!("--- nested.sbatch (job {job}) ---\n{out}");
    for f in ["level0.h5", "level1.h5", "level2.h5"] {
        assert!(out.contains(&format!("nested/{f}")), "{out}");
    }

    // (d) A scaling sweep over 1, 2, 4 ranks.
    let job = cluster.sbatch(
        w,
        &jobscript("scaling.sbatch"),
        &["--ntasks=4"],
        &[
            (
                "SETS",
                "--set network.layers=32 --set optimizer.max_iter=3 --set data.train_size=500"
                    .into(),
            ),
            ("RUN_DIR", "scaling".into()),
        ],
    );
    cluster.wait(&job, minute);
    let out = output(w, "layerpar-scaling", &job);
    println!("--- scaling.sbatch (job {job}) ---\n{out}");
    let ranks: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ranks, ["1", "2", "4"], "{out}");

    // (e) A study as a job array: one run per task; the last task writes the summary.
    std::fs::write(
        w.join("tiny.toml"),
        "[study]\nname = \"tiny\"\nseeds = [1, 2]\n[study.base]\n\"optimizer.max_iter\" = 3\n\"data.train_size\" = 200\n\"network.layers\" = 4\n[[study.group]]\nname = \"layer\"\n[[study.group]]\nname = \"spline\"\nset = { \"controls.kind\" = \"spline\", \"controls.count\" = 4 }\n",
    )
    .unwrap();
    let count = ok(&layerpar(w, &["study", "tiny.toml", "--count"]));
    assert_eq!(count.trim(), "4");
    let job = cluster.sbatch(
        w,
        &jobscript("study-array.sbatch"),
        &["--array=0-3", "--ntasks=1"],
        &[("STUDY", "tiny.toml".into())],
    );
    cluster.wait(&job, minute);
    let runs = std::fs::read_to_string(w.join("tiny/runs.csv")).unwrap_or_default();
    let tasks: String = (0..4)
        .map(|t| {
            std::fs::read_to_string(w.join(format!("layerpar-study-{job}_{t}.out")))
                .unwrap_or_default()
        })
        .collect();
    println!("--- study-array.sbatch (job {job}) ---\n{tasks}");
    assert_eq!(runs.lines().count(), 5, "{runs}\n{tasks}");
    assert!(
        w.join("tiny/summary.csv").is_file() && w.join("tiny/boxplot.png").is_file(),
        "{tasks}"
    );

    // (c) A long run, signalled (as Slurm does before the time limit), requeued and resumed,
    // launched by mpirun and by srun (PMIx). Long enough (several seconds) that the signal
    // lands well before the end.
    let long = "--set network.layers=48 --set network.width=16 --set data.train_size=2000 --set optimizer.max_iter=400 \
                --set output.progress=lines --set output.print_every=100";
    let histories: Vec<PathBuf> = ["mpirun", "srun"]
        .iter()
        .map(|launcher| signalled_run_requeues(&cluster, w, long, launcher))
        .collect();
    // The resumed histories are the uninterrupted one, bit for bit (wall time aside).
    let reference = [
        &[
            "train",
            "--history",
            "ref.csv",
            "--set",
            "output.checkpoint_dir=ref",
        ][..],
        &long.split_whitespace().collect::<Vec<_>>(),
    ]
    .concat();
    ok(&layerpar(w, &reference));
    for hist in &histories {
        assert_eq!(
            strip_time(hist),
            strip_time(&w.join("ref.csv")),
            "{}",
            hist.display()
        );
    }
    drop(cluster);
}
