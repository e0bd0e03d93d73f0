//! tuning/: the sysctl file names keys this kernel has, with values of the
//! shape the kernel takes; the listen backlog it documents is the one the
//! running server has; tuning/cores.sh plans every online core, pins
//! shards where shardcast pins them, and with `--apply` writes what it
//! planned (against a fake /proc and /sys given with `--root`).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{artefact_dir, test_name, wait_for, wait_timeout, Server};

/// cores.sh reads a few files; shellcheck reads two scripts.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(30);
/// glommio 0.9's TcpListener::bind passes this to listen(2); the sysctl
/// file's somaxconn comment is written around it.
const GLOMMIO_LISTEN_BACKLOG: u64 = 1024;
/// The ports shardcast listens on by default or in the examples; the
/// local port range must start above them.
const SERVER_PORTS: [u16; 3] = [443, 1935, 8079];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `key = value` lines of the sysctl file, in order.
fn sysctl_settings() -> Vec<(String, String)> {
    let path = root().join("tuning/sysctl.d/60-shardcast.conf");
    let text = fs::read_to_string(&path).unwrap();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}:{}: not `key = value`: {line}", path.display(), n + 1));
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    out
}

fn numbers(key: &str, value: &str) -> Vec<u64> {
    value
        .split_whitespace()
        .map(|t| t.parse().unwrap_or_else(|e| panic!("{key} = {value}: '{t}' is not a number: {e}")))
        .collect()
}

/// Runs `cmd` to completion within SCRIPT_DEADLINE: its output.
fn run(name: &str, cmd: &mut Command) -> Output {
    let dir = artefact_dir();
    let (out, err) = (dir.join(format!("{name}.stdout")), dir.join(format!("{name}.stderr")));
    let mut child = cmd
        .stdout(Stdio::from(fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(fs::File::create(&err).unwrap()))
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e}"));
    let status = match wait_timeout(&mut child, SCRIPT_DEADLINE) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: {cmd:?} still running after {SCRIPT_DEADLINE:?}");
        }
    };
    Output { status, stdout: fs::read(&out).unwrap(), stderr: fs::read(&err).unwrap() }
}

fn cores_sh(name: &str, args: &[&str]) -> (i32, String, String) {
    let out = run(
        name,
        Command::new("bash")
            .arg(root().join("tuning/cores.sh"))
            .args(args)
            .env_remove("SHARDCAST_TUNING_ROOT"),
    );
    (
        out.status.code().expect("cores.sh exited, not killed"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// "0-3,5" -> [0, 1, 2, 3, 5]
fn cpu_list(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => out.push(part.parse().unwrap()),
        }
    }
    out
}

fn online_cpus() -> Vec<usize> {
    cpu_list(&fs::read_to_string("/sys/devices/system/cpu/online").unwrap())
}

/// "core N: what" lines of a plan.
fn plan_cores(plan: &str) -> BTreeMap<usize, String> {
    plan.lines()
        .filter_map(|l| l.trim().strip_prefix("core "))
        .filter_map(|l| l.split_once(": "))
        .map(|(n, what)| (n.parse().unwrap(), what.to_string()))
        .collect()
}

#[test]
fn every_sysctl_key_exists_here_and_its_value_parses() {
    let settings = sysctl_settings();
    assert!(settings.len() >= 12, "settings: {settings:?}");
    for (key, value) in &settings {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        let current = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{key}: {} not readable on this kernel: {e}", path.display()));
        let ours = numbers(key, value);
        let theirs = numbers(key, current.trim());
        assert_eq!(
            ours.len(),
            theirs.len(),
            "{key} = {value}: the kernel's value '{}' has {} field(s)",
            current.trim(),
            theirs.len()
        );
        match key.as_str() {
            "net.ipv4.tcp_rmem" | "net.ipv4.tcp_wmem" => {
                assert!(ours[0] <= ours[1] && ours[1] <= ours[2], "{key} = {value}: min <= default <= max");
            }
            "net.ipv4.ip_local_port_range" => {
                assert!(ours[0] < ours[1], "{key} = {value}: low < high");
                assert!(ours[1] <= 65535, "{key} = {value}: above 65535");
                for p in SERVER_PORTS {
                    assert!(ours[0] > p as u64, "{key} = {value}: takes our listening port {p}");
                }
            }
            "net.core.somaxconn" => {
                assert!(ours[0] >= GLOMMIO_LISTEN_BACKLOG, "{key} = {value} would cut glommio's backlog")
            }
            "fs.file-max" => {
                let nr_open = settings.iter().find(|(k, _)| k == "fs.nr_open").expect("fs.nr_open set");
                assert!(ours[0] >= numbers("fs.nr_open", &nr_open.1)[0], "fs.file-max below fs.nr_open");
            }
            _ => {}
        }
    }
    for must in ["net.core.somaxconn", "net.ipv4.tcp_notsent_lowat", "net.ipv4.ip_local_port_range", "fs.nr_open"] {
        assert!(settings.iter().any(|(k, _)| k == must), "{must} missing from the sysctl file");
    }
}

/// The somaxconn comment says each shard has its own listener with a
/// backlog of min(1024, somaxconn): `ss -lnt` shows a listener's backlog
/// in Send-Q.
#[test]
fn each_shard_listens_with_the_documented_backlog() {
    if Command::new("ss").arg("-V").stdout(Stdio::null()).status().is_err() {
        eprintln!("SKIPPED: no `ss` (iproute2) to read the listen backlog; scripts/test.sh installs it");
        return;
    }
    let somaxconn: u64 = fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap().trim().parse().unwrap();
    let server = Server::builder().shards(2).start();
    let out = run(
        &format!("{}-ss", test_name()),
        Command::new("ss").args(["-ltnH", &format!("( sport = :{} )", server.port)]),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let backlogs: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("LISTEN"))
        .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
        .collect();
    assert_eq!(backlogs.len(), 2, "one listener per shard on port {}: {text}", server.port);
    for b in backlogs {
        assert_eq!(b, GLOMMIO_LISTEN_BACKLOG.min(somaxconn), "listen backlog (somaxconn {somaxconn}): {text}");
    }
}

#[test]
fn dry_run_on_this_machine_plans_every_online_core() {
    let cpus = online_cpus();
    let (code, plan, err) = cores_sh(&test_name(), &[]);
    assert_eq!(code, 0, "cores.sh failed: {err}\n{plan}");
    assert!(plan.contains("dry run"), "{plan}");
    assert!(!plan.contains("wrote "), "a dry run wrote something: {plan}");
    let cores = plan_cores(&plan);
    assert_eq!(cores.keys().copied().collect::<Vec<_>>(), cpus, "every online core once: {plan}");
    let shards = if cpus.len() > 1 { cpus.len() - 1 } else { 1 };
    assert!(plan.contains(&format!("shards = {shards} and pin_cores = true")), "{plan}");
    if cpus.len() > 1 {
        let last = cpus[cpus.len() - 1];
        assert_eq!(cores[&last], "NIC interrupts", "the spare core takes the interrupts: {plan}");
        assert!(cores.values().filter(|w| w.contains("shard")).count() == shards, "{plan}");
    }
    let (code, _, err) = cores_sh(&format!("{}-bad", test_name()), &["--shards", "many"]);
    assert_eq!(code, 1);
    assert!(err.contains("--shards 'many' is not a number"), "{err}");
}

/// shardcast with pin_cores puts shard k on the core the plan says.
#[test]
fn shards_run_where_the_plan_puts_them() {
    let cpus = online_cpus();
    let shards = cpus.len();
    let (code, plan, err) = cores_sh(&test_name(), &["--shards", &shards.to_string()]);
    assert_eq!(code, 0, "{err}");
    let cores = plan_cores(&plan);
    let server = Server::builder().shards(shards).arg("--pin-cores").start();
    for k in 0..shards {
        // glommio names an executor's threads "<name>-<executor id>":
        // shard k's are "shard-k-<id>" (its executor and its helper).
        let prefix = format!("shard-{k}-");
        let allowed: Vec<Vec<usize>> = wait_for(Duration::from_secs(5), || {
            let found: Vec<Vec<usize>> = fs::read_dir(format!("/proc/{}/task", server.pid))
                .unwrap()
                .flatten()
                .filter_map(|t| {
                    let comm = fs::read_to_string(t.path().join("comm")).ok()?;
                    comm.starts_with(&prefix).then(|| {
                        let status = fs::read_to_string(t.path().join("status")).unwrap();
                        let line = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")).unwrap();
                        cpu_list(line.split_once(':').unwrap().1)
                    })
                })
                .collect();
            (!found.is_empty()).then_some(found)
        })
        .unwrap_or_else(|| panic!("no thread named {prefix}* in shardcast {}", server.pid));
        for cpus in &allowed {
            assert_eq!(cpus, &allowed[0], "shard {k}'s threads on different CPUs: {allowed:?}");
        }
        assert_eq!(allowed[0].len(), 1, "shard {k} is pinned to one CPU: {allowed:?}");
        let cpu = allowed[0][0];
        let what = &cores[&cpu];
        assert!(
            what.starts_with("shard") && what.split_whitespace().any(|w| w == k.to_string()),
            "shard {k} runs on CPU {cpu}, the plan says 'core {cpu}: {what}'\n{plan}"
        );
    }
}

/// A fake machine: 4 CPUs on one node, a virtio NIC eth9 whose PCI parent
/// has MSI vectors 40-43 (40 is the config vector), 1 RX and 2 TX queues;
/// an NVMe IRQ 50 that is not the NIC's.
fn fake_root(dir: &Path) {
    let w = |p: &str, s: &str| {
        let p = dir.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, s).unwrap();
    };
    w("sys/devices/system/cpu/online", "0-3\n");
    w("sys/devices/system/node/node0/cpulist", "0-3\n");
    let pci = "sys/devices/pci0000:00/0000:00:03.0";
    for n in 40..=43 {
        w(&format!("{pci}/msi_irqs/{n}"), "msix\n");
    }
    w(&format!("{pci}/numa_node"), "0\n");
    w(&format!("{pci}/virtio7/vendor"), "0x1af4\n");
    fs::create_dir_all(dir.join("sys/class/net/eth9/queues/rx-0")).unwrap();
    std::os::unix::fs::symlink("../../../devices/pci0000:00/0000:00:03.0/virtio7", dir.join("sys/class/net/eth9/device"))
        .unwrap();
    w("sys/class/net/eth9/queues/rx-0/rps_cpus", "0\n");
    w("sys/class/net/eth9/queues/tx-0/xps_cpus", "0\n");
    w("sys/class/net/eth9/queues/tx-1/xps_cpus", "0\n");
    fs::create_dir_all(dir.join("sys/class/net/lo/queues/rx-0")).unwrap();
    w(
        "proc/interrupts",
        "           CPU0       CPU1       CPU2       CPU3\n\
         40:          0          0          0          0  PCI-MSIX-0000:00:03.0   0-edge      virtio7-config\n\
         41:        100          0          0          0  PCI-MSIX-0000:00:03.0   1-edge      virtio7-input.0\n\
         42:          0        200          0          0  PCI-MSIX-0000:00:03.0   2-edge      virtio7-output.0\n\
         43:          0          0          0          1  PCI-MSIX-0000:00:03.0   3-edge      virtio7-output.1\n\
         50:         10         10         10         10  PCI-MSIX-0000:00:04.0   0-edge      nvme0q1\n",
    );
    for n in [40, 41, 42, 43, 50] {
        w(&format!("proc/irq/{n}/smp_affinity_list"), "0-3\n");
    }
}

fn read(dir: &Path, p: &str) -> String {
    fs::read_to_string(dir.join(p)).unwrap().trim().to_string()
}

#[test]
fn apply_writes_the_plan_into_a_fake_root() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fake_root(dir);
    let root = dir.to_str().unwrap();

    // A dry run reads the fake machine and writes nothing.
    let (code, plan, err) = cores_sh(&format!("{}-dry", test_name()), &["--root", root, "--shards", "3"]);
    assert_eq!(code, 0, "{err}\n{plan}");
    assert_eq!(plan_cores(&plan).len(), 4, "{plan}");
    assert!(plan.contains("irq 41 virtio7-input.0: CPUs 0-3 -> 3"), "{plan}");
    assert!(!plan.contains("irq 40"), "the config vector is not moved: {plan}");
    assert_eq!(read(dir, "proc/irq/41/smp_affinity_list"), "0-3", "dry run wrote: {plan}");
    assert_eq!(read(dir, "sys/class/net/eth9/queues/tx-0/xps_cpus"), "0");

    // 3 shards on CPUs 0-2, interrupts on CPU 3; XPS: shard cores 0 and 2
    // on tx-0 (mask 5), 1 on tx-1 (mask 2); one RX queue for one IRQ core:
    // no RPS.
    let (code, out, err) = cores_sh(&format!("{}-apply", test_name()), &["--root", root, "--shards", "3", "--apply"]);
    assert_eq!(code, 0, "{err}\n{out}");
    for n in [41, 42, 43] {
        assert_eq!(read(dir, &format!("proc/irq/{n}/smp_affinity_list")), "3", "irq {n}: {out}");
    }
    assert_eq!(read(dir, "proc/irq/40/smp_affinity_list"), "0-3", "config vector moved: {out}");
    assert_eq!(read(dir, "proc/irq/50/smp_affinity_list"), "0-3", "a disk's IRQ moved: {out}");
    assert_eq!(read(dir, "sys/class/net/eth9/queues/tx-0/xps_cpus"), "5", "{out}");
    assert_eq!(read(dir, "sys/class/net/eth9/queues/tx-1/xps_cpus"), "2", "{out}");
    assert_eq!(read(dir, "sys/class/net/eth9/queues/rx-0/rps_cpus"), "0", "{out}");

    // 2 shards, interrupts on CPUs 2-3: the one RX queue spreads over both.
    let (code, out, err) = cores_sh(
        &format!("{}-apply2", test_name()),
        &["--root", root, "--shards", "2", "--irq-cores", "2-3", "--apply"],
    );
    assert_eq!(code, 0, "{err}\n{out}");
    assert_eq!(read(dir, "proc/irq/42/smp_affinity_list"), "2-3", "{out}");
    assert_eq!(read(dir, "sys/class/net/eth9/queues/rx-0/rps_cpus"), "c", "{out}");
    assert_eq!(read(dir, "sys/class/net/eth9/queues/tx-0/xps_cpus"), "1", "{out}");
    assert_eq!(read(dir, "sys/class/net/eth9/queues/tx-1/xps_cpus"), "2", "{out}");

    // A file it cannot write is named, and the exit status says so.
    fs::remove_dir_all(dir.join("proc/irq/43")).unwrap();
    let (code, _, err) = cores_sh(&format!("{}-fail", test_name()), &["--root", root, "--apply"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("proc/irq/43/smp_affinity_list"), "{err}");

    // Asking for a CPU that is not online is refused, naming it.
    let (code, _, err) = cores_sh(&format!("{}-offline", test_name()), &["--root", root, "--irq-cores", "9"]);
    assert_eq!(code, 1);
    assert!(err.contains("CPU 9 is not online"), "{err}");
}

/// A container or VM with no device-backed interface: a plan, no error.
#[test]
fn no_nic_interrupts_visible_is_not_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("sys/devices/system/cpu")).unwrap();
    fs::write(dir.join("sys/devices/system/cpu/online"), "0-1\n").unwrap();
    fs::create_dir_all(dir.join("sys/class/net/lo")).unwrap();
    fs::create_dir_all(dir.join("sys/class/net/veth0")).unwrap();
    let (code, out, err) = cores_sh(&test_name(), &["--root", dir.to_str().unwrap(), "--apply"]);
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(out.contains("no interface backed by a device"), "{out}");
    assert_eq!(plan_cores(&out).len(), 2, "{out}");
    // An interface with a device but no MSI vectors and no line naming it.
    fs::create_dir_all(dir.join("sys/devices/platform/eth5")).unwrap();
    std::os::unix::fs::symlink("../../../devices/platform/eth5", dir.join("sys/class/net/veth0/device")).unwrap();
    let (code, out, err) = cores_sh(&format!("{}-noirq", test_name()), &["--root", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(out.contains("no interrupts of veth0 visible"), "{out}");
}

#[test]
fn scripts_pass_shellcheck() {
    if Command::new("shellcheck").arg("--version").stdout(Stdio::null()).status().is_err() {
        eprintln!("SKIPPED: no shellcheck on PATH (scripts/test.sh installs Debian's)");
        return;
    }
    let out = run(
        &test_name(),
        Command::new("shellcheck")
            .arg("-x")
            .current_dir(root())
            .args(["tuning/cores.sh", "tuning/measure.sh", "tuning/measure-accept.sh", "tuning/measure-lib.sh"]),
    );
    assert!(out.status.success(), "shellcheck: {}", String::from_utf8_lossy(&out.stdout));
}
