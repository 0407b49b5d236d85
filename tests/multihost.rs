//! Training across hosts: two network namespaces made by the test and joined by a veth pair
//! stand for two hosts; `mpirun` starts its daemons in them through an rsh agent that enters
//! the namespace of the address it is given, and the ranks talk over TCP. The history must
//! equal the single-host run's.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

struct Hosts {
    names: [String; 2],
    addrs: [String; 2],
    subnet: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Hosts {
    fn create() -> Hosts {
        let id = std::process::id();
        let net = 10 + id % 200;
        let names = [format!("lpa{id}"), format!("lpb{id}")];
        let addrs = [format!("10.77.{net}.1"), format!("10.77.{net}.2")];
        let (va, vb) = (format!("va{id}"), format!("vb{id}"));
        let ok = ip(&["netns", "add", &names[0]])
            && ip(&["netns", "add", &names[1]])
            && ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])
            && ip(&["link", "set", &va, "netns", &names[0]])
            && ip(&["link", "set", &vb, "netns", &names[1]])
            && ip(&[
                "-n",
                &names[0],
                "addr",
                "add",
                &format!("{}/24", addrs[0]),
                "dev",
                &va,
            ])
            && ip(&[
                "-n",
                &names[1],
                "addr",
                "add",
                &format!("{}/24", addrs[1]),
                "dev",
                &vb,
            ])
            && ip(&["-n", &names[0], "link", "set", &va, "up"])
            && ip(&["-n", &names[1], "link", "set", &vb, "up"])
            && ip(&["-n", &names[0], "link", "set", "lo", "up"])
            && ip(&["-n", &names[1], "link", "set", "lo", "up"]);
        let hosts = Hosts {
            names,
            addrs,
            subnet: format!("10.77.{net}.0/24"),
        };
        assert!(
            ok,
            "could not create the test's network namespaces (needs root and iproute2)"
        );
        hosts
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in &self.names {
            ip(&["netns", "del", n]);
        }
    }
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn training_across_two_namespaced_hosts_equals_the_single_host_run() {
    let hosts = Hosts::create();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The rsh agent: run the command in the namespace that holds the host's address.
    write_script(
        &d.join("netns-rsh"),
        &format!(
            "#!/bin/sh\nhost=$1; shift\ncase $host in\n  {}) ns={} ;;\n  {}) ns={} ;;\n  *) echo \"unknown host $host\" >&2; exit 1 ;;\nesac\nexec ip netns exec $ns /bin/sh -c \"$*\"\n",
            hosts.addrs[0], hosts.names[0], hosts.addrs[1], hosts.names[1]
        ),
    );
    // Each rank notes the namespace it runs in, then becomes layerpar.
    write_script(
        &d.join("rank.sh"),
        &format!(
            "#!/bin/sh\nip netns identify $$ > ns-$OMPI_COMM_WORLD_RANK.txt\nexec {BIN} \"$@\"\n"
        ),
    );
    let train = [
        "train",
        "--set",
        "optimizer.max_iter=6",
        "--set",
        "data.train_size=500",
        "--set",
        "output.progress=lines",
    ];
    for ranks in [2usize, 4] {
        let hostlist = format!(
            "{}:{},{}:{}",
            hosts.addrs[0],
            ranks / 2,
            hosts.addrs[1],
            ranks / 2
        );
        let history = format!("multi{ranks}.csv");
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &hosts.names[0],
                "mpirun",
                "--host",
                &hostlist,
                "-n",
                &ranks.to_string(),
            ])
            .args([
                "--mca",
                "plm_rsh_agent",
                d.join("netns-rsh").to_str().unwrap(),
            ])
            .args([
                "--mca",
                "btl",
                "tcp,self",
                "--mca",
                "btl_tcp_if_include",
                &hosts.subnet,
                "--mca",
                "oob_tcp_if_include",
                &hosts.subnet,
            ])
            .args([
                "-x",
                "OMPI_ALLOW_RUN_AS_ROOT",
                "-x",
                "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM",
                "--wdir",
                d.to_str().unwrap(),
            ])
            .arg(d.join("rank.sh"))
            .args(train)
            .args([
                "--history",
                &history,
                "--set",
                &format!("output.checkpoint_dir=\"m{ranks}\""),
            ])
            .current_dir(d)
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .output()
            .unwrap();
        let text = ok(&out);
        assert!(
            text.contains(&format!("training on {ranks} MPI ranks")),
            "{text}"
        );
        let ns: Vec<String> = (0..ranks)
            .map(|r| {
                std::fs::read_to_string(d.join(format!("ns-{r}.txt")))
                    .unwrap()
                    .trim()
                    .to_string()
            })
            .collect();
        assert_eq!(
            ns.iter().filter(|n| **n == hosts.names[0]).count(),
            ranks / 2,
            "{ns:?}"
        );
        assert_eq!(
            ns.iter().filter(|n| **n == hosts.names[1]).count(),
            ranks / 2,
            "{ns:?}"
        );
    }
    ok(&layerpar(
        d,
        &[
            &train[..],
            &[
                "--history",
                "single.csv",
                "--set",
                "output.checkpoint_dir=single",
            ],
        ]
        .concat(),
    ));
    let strip = |p: &str| rows_without_time(&d.join(p));
    assert_eq!(strip("multi2.csv"), strip("single.csv"));
    assert_eq!(strip("multi4.csv"), strip("single.csv"));
}
