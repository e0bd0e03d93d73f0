//! The crates enforce the layering of ARCHITECTURE.md: this test reads
//! `cargo metadata` (for this host's platform) and fails when a crate
//! gains a dependency its layer may not have, directly or through another
//! crate.
//!
//! | crate | may not depend on |
//! | --- | --- |
//! | `shardcast-proto` | any IO: glommio, libc, socket2, and the runtimes and OS bindings below |
//! | `shards` | `shardcast-proto`, `shardcast` (it knows nothing of media) |
//! | `shardcast-bench` | `shardcast` (the server) |

use std::collections::{HashMap, HashSet};
use std::process::Command;

use serde_json::Value;

/// Crates that do IO or bind the OS: the protocol crate may reach none.
const IO_CRATES: &[&str] = &[
    "glommio",
    "libc",
    "socket2",
    "nix",
    "rustix",
    "mio",
    "tokio",
    "async-io",
    "polling",
    "io-uring",
    "futures-lite",
    "signal-hook",
];

/// The workspace's dependency graph: package name → names of its normal
/// (not dev, not build) dependencies, resolved for this host.
struct Graph {
    deps: HashMap<String, Vec<String>>,
}

impl Graph {
    fn load() -> Self {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let host = String::from_utf8(
            Command::new("rustc")
                .arg("-vV")
                .output()
                .expect("run rustc -vV")
                .stdout,
        )
        .unwrap();
        let host = host
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .expect("rustc -vV names the host")
            .to_string();
        let out = Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--filter-platform",
                &host,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run cargo metadata");
        assert!(
            out.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
        let name_of: HashMap<&str, &str> = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
            .collect();
        let mut deps = HashMap::new();
        for node in meta["resolve"]["nodes"].as_array().unwrap() {
            let name = name_of[node["id"].as_str().unwrap()].to_string();
            let normal: Vec<String> = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| name_of[d["pkg"].as_str().unwrap()].to_string())
                .collect();
            deps.insert(name, normal);
        }
        Graph { deps }
    }

    /// Every crate `root` depends on, directly or not, with the path by
    /// which it is reached.
    fn reachable(&self, root: &str) -> HashMap<String, Vec<String>> {
        assert!(
            self.deps.contains_key(root),
            "no crate {root} in the workspace"
        );
        let mut seen: HashMap<String, Vec<String>> = HashMap::new();
        let mut todo = vec![(root.to_string(), vec![root.to_string()])];
        let mut done = HashSet::new();
        while let Some((name, path)) = todo.pop() {
            if !done.insert(name.clone()) {
                continue;
            }
            for d in self.deps.get(&name).into_iter().flatten() {
                let mut p = path.clone();
                p.push(d.clone());
                seen.entry(d.clone()).or_insert_with(|| p.clone());
                todo.push((d.clone(), p));
            }
        }
        seen
    }

    fn assert_free_of(&self, root: &str, forbidden: &[&str]) {
        let reach = self.reachable(root);
        let bad: Vec<String> = forbidden
            .iter()
            .filter_map(|f| reach.get(*f).map(|path| path.join(" → ")))
            .collect();
        assert!(
            bad.is_empty(),
            "{root} may not depend on {forbidden:?}, but: {}",
            bad.join("; ")
        );
    }
}

#[test]
fn the_protocol_crate_does_no_io() {
    let g = Graph::load();
    g.assert_free_of("shardcast-proto", IO_CRATES);
    // The check can fail: the server reaches glommio and libc.
    let server = g.reachable("shardcast");
    assert!(server.contains_key("glommio") && server.contains_key("libc"));
}

#[test]
fn the_runtime_knows_nothing_of_media() {
    Graph::load().assert_free_of("shards", &["shardcast-proto", "shardcast"]);
}

#[test]
fn the_load_generator_does_not_use_the_server() {
    let g = Graph::load();
    g.assert_free_of("shardcast-bench", &["shardcast"]);
    assert!(g
        .reachable("shardcast-bench")
        .contains_key("shardcast-proto"));
}

/// Inside the server crate the compiler cannot hold the line, so this
/// reads the sources: the stream layer (`src/stream/`) and the edge's
/// policy (`src/edge.rs`) are pure (they take events and return actions)
/// and name no runtime, socket, driver or shard; `src/net/` names no shard
/// or driver.
#[test]
fn the_stream_layer_names_no_io_and_net_names_no_shard() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let pure: &[&str] = &[
        "glommio",
        "libc::",
        "socket2",
        "crate::net",
        "crate::server",
        "shards::",
    ];
    let rules: &[(&str, &[&str])] = &[
        ("stream", pure),
        // The edge's origin choice and retry policy.
        ("edge.rs", pure),
        ("net", &["crate::server", "Shard {", "Shard>", "Shard)"]),
    ];
    let mut bad = Vec::new();
    for (dir, forbidden) in rules {
        let mut files = 0;
        let at = root.join(dir);
        let paths: Vec<std::path::PathBuf> = if at.is_file() {
            vec![at]
        } else {
            std::fs::read_dir(&at)
                .expect("read src dir")
                .map(|e| e.unwrap().path())
                .collect()
        };
        for path in paths {
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                for f in forbidden.iter().filter(|f| code.contains(**f)) {
                    bad.push(format!("{}:{}: names {f}: {line}", path.display(), n + 1));
                }
            }
        }
        assert!(files > 0, "no sources in src/{dir}");
    }
    assert!(bad.is_empty(), "layering broken:\n{}", bad.join("\n"));
}
