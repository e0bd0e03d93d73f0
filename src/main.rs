//! The `shardcast` binary: reads the config, starts one shard per core and
//! runs until SIGTERM or SIGINT.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use shardcast::config::{Command, Config, Flags};
use shardcast::server::{
    self, CHANNEL_CAPACITY, CONTROL_BACKLOG_MAX, CONTROL_CHANNEL_CAPACITY, SHUTDOWN_GRACE,
};

/// After a stop signal, how long the process waits for shards before exiting anyway.
const EXIT_DEADLINE: Duration = Duration::from_secs(5);

fn main() {
    let flags = Flags::parse();
    if let Some(Command::Sign {
        secret,
        action,
        stream,
        ttl,
        vhost,
    }) = &flags.command
    {
        let vhost = vhost
            .clone()
            .unwrap_or_else(|| Config::default().default_vhost);
        let key = format!("{vhost}/{}", stream.trim_matches('/'));
        let expires = (shardcast::stream::unix_ms() / 1000).saturating_add(*ttl);
        println!(
            "{}",
            proto::sign::signed_query(secret.as_bytes(), action, &key, expires)
        );
        return;
    }
    let config = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardcast: {e}");
            std::process::exit(2);
        }
    };
    if flags.check {
        check(&flags, &config);
        return;
    }
    if let Err(e) = shardcast::logging::init(&config.log) {
        eprintln!("shardcast: {e}");
        std::process::exit(2);
    }

    let shards = config.shard_count();
    log::info!(
        "shardcast {} starting: shards={shards} pin_cores={}",
        env!("CARGO_PKG_VERSION"),
        config.pin_cores
    );
    let pool = shards::PoolConfig {
        shards,
        pin_cores: config.pin_cores,
        media_capacity: CHANNEL_CAPACITY,
        control_capacity: CONTROL_CHANNEL_CAPACITY,
        control_backlog_max: CONTROL_BACKLOG_MAX,
        name: "shard".into(),
    };
    let tls = if config.tls.enabled() {
        match shardcast::net::TlsAcceptor::load(&config.tls) {
            Ok(t) => {
                log::info!(
                    "tls: {} certificate(s) loaded; TLS beside plain on port {}{}",
                    1 + config.tls.certs.len(),
                    config.port,
                    match config.tls.port {
                        0 => String::new(),
                        p => format!(", TLS only on tls.port {p}"),
                    }
                );
                Some(Arc::new(t))
            }
            Err(e) => {
                eprintln!("shardcast: {e}");
                std::process::exit(2);
            }
        }
    } else {
        None
    };
    let registry = shardcast::cluster::Registry::start(
        &config.cluster,
        config.node_id(),
        config.advertise(),
        shards,
    );
    let config = Arc::new(config);
    shardcast::reload::install(config.clone());
    let (done_tx, done_rx) = crossbeam_channel::bounded::<std::io::Result<()>>(1);
    let shard_config = config.clone();
    let shard_tls = tls.clone();
    std::thread::Builder::new()
        .name("pool".into())
        .spawn(move || {
            let result = shards::run(&pool, move |ctx| {
                server::shard_main(
                    ctx,
                    shard_config.clone(),
                    shard_tls.clone(),
                    registry.clone(),
                )
            });
            let _ = done_tx.send(result);
        })
        .expect("spawning the pool thread");

    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGUSR1,
    ]) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot install signal handlers: {e}");
            std::process::exit(1);
        }
    };
    let (sig_tx, sig_rx) = crossbeam_channel::bounded::<i32>(1);
    std::thread::spawn(move || {
        let mut config = config;
        for sig in signals.forever() {
            match sig {
                signal_hook::consts::SIGHUP => {
                    shardcast::reload::on_sighup(&flags, &mut config, tls.as_deref());
                    continue;
                }
                signal_hook::consts::SIGUSR1 => {
                    match shardcast::logging::reopen() {
                        Ok(Some(path)) => log::info!("log reopened (SIGUSR1): {path}"),
                        Ok(None) => log::info!("SIGUSR1: the log is stderr; nothing to reopen"),
                        Err(e) => log::error!("SIGUSR1: {e}; logging on to the open file"),
                    }
                    continue;
                }
                _ => {}
            }
            let _ = sig_tx.send(sig);
            return;
        }
    });

    crossbeam_channel::select! {
        recv(done_rx) -> result => {
            // The pool ended by itself: a shard could not start or listen.
            match result {
                Ok(Ok(())) => log::error!("shards stopped unexpectedly"),
                Ok(Err(e)) => log::error!("{e}"),
                Err(_) => log::error!("the pool thread died"),
            }
            std::process::exit(1);
        }
        recv(sig_rx) -> sig => {
            log::info!("signal {} received: stopping (players and publishers are told)", sig.unwrap_or(0));
            shards::request_stop();
            match done_rx.recv_timeout(EXIT_DEADLINE.max(SHUTDOWN_GRACE)) {
                Ok(_) => log::info!("stopped"),
                Err(_) => log::warn!("shards did not stop within {}s; exiting", EXIT_DEADLINE.as_secs()),
            }
            std::process::exit(0);
        }
    }
}

/// `--check`: what Config::load accepted, plus the TLS certificates (read
/// here as at a start); exits 2 on the first error.
fn check(flags: &Flags, config: &Config) {
    let source = flags
        .config
        .as_ref()
        .map_or("the embedded defaults".to_string(), |p| {
            p.display().to_string()
        });
    if !config.log.file.is_empty() {
        if let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.log.file)
        {
            eprintln!(
                "shardcast: config {source}: log.file: cannot open {}: {e}",
                config.log.file
            );
            std::process::exit(2);
        }
    }
    if config.tls.enabled() {
        if let Err(e) = shardcast::net::TlsAcceptor::load(&config.tls) {
            eprintln!("shardcast: config {source}: {e}");
            std::process::exit(2);
        }
    }
    println!(
        "shardcast: config {source}: valid; listen {}:{}, {} shard(s), mode {}{}",
        config.listen,
        config.port,
        config.shard_count(),
        config.mode.name(),
        if config.tls.enabled() { ", TLS" } else { "" }
    );
}
