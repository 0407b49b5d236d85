//! Study files: parsing, expansion into runs, and their errors.

use super::*;

fn parse(text: &str) -> Result<Study> {
    Study::parse(
        text,
        Path::new("dir/s.toml"),
        "study file s.toml",
        &[],
        None,
    )
}

const GOOD: &str = r#"
[study]
name = "t"
config = "base.toml"
seeds = [1, 2]
design = "lhs"
samples = 3
[study.base]
"optimizer.max_iter" = 3
network.width = 4
[[study.param]]
key = "optimizer.learning_rate"
range = [1e-3, 1e-1]
scale = "log"
[[study.group]]
name = "layer"
set = { "controls.kind" = "layer" }
[[study.group]]
name = "spline"
set = { "controls.kind" = "spline", "controls.count" = 4 }
"#;

#[test]
fn a_study_expands_to_groups_times_points_times_seeds() {
    let s = parse(GOOD).unwrap();
    assert_eq!(s.config.as_deref(), Some(Path::new("dir/base.toml")));
    assert_eq!(s.out, PathBuf::from("t"));
    let runs = s.runs().unwrap();
    assert_eq!(runs.len(), 2 * 3 * 2);
    assert_eq!(runs[0].group, "layer");
    assert_eq!(runs[11].group, "spline");
    assert_eq!((runs[0].seed, runs[1].seed), (1, 2));
    // The same point for both seeds and for both groups.
    assert_eq!(runs[0].values, runs[1].values);
    assert_eq!(runs[0].values, runs[6].values);
    let sets = &runs[7].sets[1..];
    assert_eq!(sets[0], "network.width=4");
    assert_eq!(sets[1], "optimizer.max_iter=3");
    assert_eq!(sets[2], "controls.count=4");
    assert_eq!(sets[3], "controls.kind=\"spline\"");
    assert!(
        sets[4].starts_with("optimizer.learning_rate=0.0"),
        "{sets:?}"
    );
    assert_eq!(sets[5], "seed=2");
}

#[test]
fn bad_study_files_fail_with_one_line_naming_the_problem() {
    let cases = [
            ("[study]\nname = \"t\"\nsede = [1]\n", "unknown key `study.sede`"),
            ("[stud]\nname = \"t\"\n", "unknown key `stud`"),
            ("[study]\n", "`study.name` is missing"),
            ("[study]\nname = \"a b\"\n", "`study.name` must be letters"),
            (
                "[study]\nname = \"t\"\n[[study.param]]\nkey = \"x\"\nrange = [2, 1]\npoints = 2\n",
                "`range` must be [lo, hi] with numbers lo < hi",
            ),
            (
                "[study]\nname = \"t\"\n[[study.param]]\nkey = \"x\"\nrange = [0, 1]\nscale = \"log\"\npoints = 2\n",
                "a log range needs lo > 0",
            ),
            (
                "[study]\nname = \"t\"\n[[study.param]]\nkey = \"x\"\nrange = [0, 1]\n",
                "a grid needs `points = k`",
            ),
            (
                "[study]\nname = \"t\"\ndesign = \"lhs\"\n",
                "needs `study.samples`",
            ),
            (
                "[study]\nname = \"t\"\ndesign = \"sobol\"\n",
                "`study.design` must be \"grid\" or \"lhs\"",
            ),
            (
                "[study]\nname = \"t\"\n[[study.param]]\nkey = \"x\"\nvalues = [1]\nscale = \"log\"\n",
                "`scale` applies to a range",
            ),
            (
                "[study]\nname = \"t\"\n[study.base]\nseed = 3\n",
                "the study sets `seed` for each run",
            ),
            (
                "[study]\nname = \"t\"\n[[study.group]]\nname = \"a\"\n[[study.group]]\nname = \"a\"\n",
                "two groups are named \"a\"",
            ),
            (
                "[study]\nname = \"t\"\n[[study.group]]\nname = \"a\"\nsett = {}\n",
                "unknown key `study.group[0].sett`",
            ),
            ("[study]\nname = \"t\"\nseeds = [1, 1]\n", "lists seed 1 twice"),
            ("[study]\nname = \"t\"\nreach_acc = 2\n", "`study.reach_acc` must be a fraction"),
            ("[study\n", "is not valid TOML (line 1)"),
        ];
    for (text, expect) in cases {
        let e = format!("{:#}", parse(text).unwrap_err());
        assert!(e.contains(expect), "{text:?}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn every_run_is_resolved_through_the_config_loader() {
    let s = parse("[study]\nname = \"t\"\n[study.base]\n\"network.widht\" = 3\n").unwrap();
    let runs = s.runs().unwrap();
    let e = format!("{:#}", s.resolve(&runs).unwrap_err());
    assert!(
        e.contains("run 0") && e.contains("unknown config key `network.widht`"),
        "{e}"
    );
    let s = parse(
        "[study]\nname = \"t\"\n[[study.param]]\nkey = \"network.layers\"\nvalues = [0, 4]\n",
    )
    .unwrap();
    let e = format!("{:#}", s.resolve(&s.runs().unwrap()).unwrap_err());
    assert!(e.contains("`network.layers` must be ≥ 1"), "{e}");
    let s = parse("[study]\nname = \"t\"\nseeds = [1, 2]\n").unwrap();
    let a = s.resolve(&s.runs().unwrap()).unwrap();
    assert_eq!(a.lines().count(), 3);
    assert_eq!(a, s.resolve(&s.runs().unwrap()).unwrap());
}
