//! SIGHUP: reading the configuration again while serving.
//!
//! The loaded configuration is published here, process-wide, with a
//! generation number. Each shard compares the generation with its own when
//! it accepts a connection and, when it is behind, takes the new config
//! and rebuilds what it parsed from it (IP rules, `api.allow`, hooks, the
//! settings of new streams). Connections and streams that are open keep
//! what they started with: a reload drops nobody.
//!
//! What is only read at start (addresses, ports, shards, the mode, edge and
//! cluster settings, TLS on or off) keeps its running value, and the log
//! says `restart needed for <key>`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::{Config, Flags};
use crate::net::TlsAcceptor;

/// A loaded configuration and when it was loaded.
#[derive(Debug)]
pub struct Loaded {
    /// 1 for the configuration the process started with, +1 per reload
    /// that was applied.
    pub generation: u64,
    pub loaded_unix_ms: u64,
    pub config: Arc<Config>,
}

static CURRENT: RwLock<Option<Arc<Loaded>>> = RwLock::new(None);
/// `CURRENT`'s generation, read without the lock on every accept.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Publishes `config` as the next generation; returns it.
pub fn install(config: Arc<Config>) -> Arc<Loaded> {
    let mut current = CURRENT.write().unwrap_or_else(|p| p.into_inner());
    let generation = current.as_ref().map_or(1, |l| l.generation + 1);
    let loaded = Arc::new(Loaded {
        generation,
        loaded_unix_ms: crate::stream::unix_ms(),
        config,
    });
    *current = Some(loaded.clone());
    GENERATION.store(generation, Ordering::Release);
    loaded
}

/// The generation last installed (0 before the first).
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// The configuration last installed.
pub fn current() -> Option<Arc<Loaded>> {
    CURRENT.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Gives `fresh` the running value of every key that only a restart
/// changes, and names the keys whose value differed.
pub fn keep_restart_keys(running: &Config, fresh: &mut Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    macro_rules! keep {
        ($($field:ident).+ => $name:literal) => {
            if fresh.$($field).+ != running.$($field).+ {
                fresh.$($field).+ = running.$($field).+.clone();
                keys.push($name);
            }
        };
    }
    keep!(listen => "listen");
    keep!(port => "port");
    keep!(internal_port => "internal_port");
    keep!(shards => "shards");
    keep!(pin_cores => "pin_cores");
    keep!(mode => "mode");
    keep!(edge => "edge");
    keep!(cluster => "cluster");
    keep!(tls.port => "tls.port");
    if fresh.tls.enabled() != running.tls.enabled() {
        fresh.tls = running.tls.clone();
        keys.push("tls (turned on or off)");
    }
    keys
}

/// SIGHUP: loads the file again; a file that fails to load or validate
/// keeps the running configuration (logged with the reason). Otherwise
/// applies the log settings and certificates at once and installs the
/// rest for the shards to take. `running` becomes what was installed.
pub fn on_sighup(flags: &Flags, running: &mut Arc<Config>, tls: Option<&TlsAcceptor>) {
    let mut fresh = match Config::load(flags) {
        Ok(c) => c,
        Err(e) => {
            // TOML's errors draw the line with a caret: one log line here.
            let e = e.to_string();
            let e: Vec<&str> = e.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            log::error!(
                "reload (SIGHUP): {}; keeping the running configuration",
                e.join(" ")
            );
            return;
        }
    };
    if let Err(e) = crate::logging::reload(&fresh.log) {
        log::error!("reload (SIGHUP): {e}; keeping the running configuration");
        return;
    }
    if let (Some(tls), true) = (tls, fresh.tls.enabled()) {
        if let Err(e) = tls.reload(&fresh.tls) {
            let _ = crate::logging::reload(&running.log);
            log::error!("reload (SIGHUP): {e}; keeping the running configuration");
            return;
        }
        log::info!(
            "reload (SIGHUP): tls: {} certificate(s) loaded for new connections",
            1 + fresh.tls.certs.len()
        );
    }
    for key in keep_restart_keys(running, &mut fresh) {
        log::warn!("reload (SIGHUP): restart needed for {key}; keeping its running value");
    }
    let changed = changed_sections(running, &fresh);
    let fresh = Arc::new(fresh);
    let loaded = install(fresh.clone());
    *running = fresh;
    log::info!(
        "reload (SIGHUP): configuration generation {} loaded; changed: {}; \
         new connections and streams use it",
        loaded.generation,
        if changed.is_empty() {
            "nothing".to_string()
        } else {
            changed.join(", ")
        }
    );
}

/// The top-level keys and sections whose values differ, for the log.
fn changed_sections(old: &Config, new: &Config) -> Vec<String> {
    let (Ok(toml::Value::Table(old)), Ok(toml::Value::Table(new))) =
        (toml::Value::try_from(old), toml::Value::try_from(new))
    else {
        return vec!["(not comparable)".into()];
    };
    let mut keys: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    keys.sort();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_keys_keep_their_running_values() {
        let running = Config::default();
        let mut fresh = Config::from_toml_str(
            "port = 9000\nshards = 3\nmode = \"edge\"\n[edge]\norigins = [\"127.0.0.1:1935\"]\n\
             [http]\nstream_wait_s = 3\n",
            "new.toml",
        )
        .unwrap();
        let keys = keep_restart_keys(&running, &mut fresh);
        assert_eq!(keys, ["port", "shards", "mode", "edge"]);
        assert_eq!(fresh.port, running.port);
        assert_eq!(fresh.mode, running.mode);
        assert_eq!(fresh.edge, running.edge);
        // What may change live does.
        assert_eq!(fresh.http.stream_wait_s, 3);
        assert_eq!(changed_sections(&running, &fresh), ["http"]);
    }

    #[test]
    fn generations_count_up() {
        let a = install(Arc::new(Config::default()));
        let b = install(Arc::new(Config::default()));
        assert_eq!(b.generation, a.generation + 1);
        assert_eq!(generation(), b.generation);
        assert_eq!(current().unwrap().generation, b.generation);
    }
}
