//! The process log (`[log]`): env_logger's filter and formatting, behind a
//! logger that SIGHUP can replace (level, format, file, access log) and
//! SIGUSR1 can point at a fresh file of the same name (after logrotate moved
//! the old one away).
//!
//! Every thread logs through one [`Sink`]: stderr, or an append-only file.
//! Each line is one `write` to it, so shards' lines never interleave.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use serde::Serialize;

use crate::config::{LogConfig, LogFormat};

/// The log target of HTTP access lines (`log.access`).
pub const ACCESS_TARGET: &str = "access";

static LOGGER: OnceLock<Reloadable> = OnceLock::new();

/// The installed logger: the env_logger of the running `[log]`, swapped
/// whole by [`reload`].
struct Reloadable {
    inner: RwLock<env_logger::Logger>,
    sink: Arc<Sink>,
    access: AtomicBool,
}

/// Where lines go: stderr, or the file `log.file` names, opened for append.
struct Sink {
    file: Mutex<Option<(String, File)>>,
}

impl Sink {
    fn open(path: &str) -> Result<Option<(String, File)>, String> {
        if path.is_empty() {
            return Ok(None);
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(|f| Some((path.to_string(), f)))
            .map_err(|e| format!("log.file: cannot open {path}: {e}"))
    }

    fn path(&self) -> String {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.as_ref().map(|(p, _)| p.clone()).unwrap_or_default()
    }
}

/// env_logger's pipe: one `write_all` per formatted line.
struct SinkWriter(Arc<Sink>);

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut file = self.0.file.lock().unwrap_or_else(|p| p.into_inner());
        match file.as_mut() {
            Some((_, f)) => f.write(buf),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One line of `log.format = "json"`.
#[derive(Serialize)]
struct JsonLine<'a> {
    ts: String,
    level: &'a str,
    target: &'a str,
    msg: String,
}

fn build(config: &LogConfig, sink: &Arc<Sink>, to_file: bool) -> env_logger::Logger {
    let mut b = env_logger::Builder::new();
    b.parse_filters(&config.level);
    if config.access {
        // Access lines are written whatever the level filter says.
        b.filter_module(ACCESS_TARGET, log::LevelFilter::Info);
    }
    b.target(env_logger::Target::Pipe(Box::new(SinkWriter(sink.clone()))));
    let styled = !to_file && config.format == LogFormat::Text && io::stderr().is_terminal();
    b.write_style(if styled {
        env_logger::WriteStyle::Always
    } else {
        env_logger::WriteStyle::Never
    });
    match config.format {
        LogFormat::Text => {
            b.format_timestamp_millis();
        }
        LogFormat::Json => {
            b.format(|buf, record| {
                let line = JsonLine {
                    ts: buf.timestamp_millis().to_string(),
                    level: record.level().as_str(),
                    target: record.target(),
                    msg: record.args().to_string(),
                };
                let text = serde_json::to_string(&line).map_err(io::Error::other)?;
                writeln!(buf, "{text}")
            });
        }
    }
    b.build()
}

impl log::Log for Reloadable {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .log(record)
    }

    fn flush(&self) {}
}

/// Installs the logger of `config`; an error names `log.file` and why it
/// could not be opened.
pub fn init(config: &LogConfig) -> Result<(), String> {
    let sink = Arc::new(Sink {
        file: Mutex::new(Sink::open(&config.file)?),
    });
    let inner = build(config, &sink, !config.file.is_empty());
    let max = inner.filter();
    let logger = LOGGER.get_or_init(|| Reloadable {
        inner: RwLock::new(inner),
        sink,
        access: AtomicBool::new(config.access),
    });
    log::set_logger(logger).map_err(|e| format!("log: {e}"))?;
    log::set_max_level(max);
    Ok(())
}

/// Applies a new `[log]` (SIGHUP): the filter, format and access log at
/// once, and a changed `log.file` opened in place of the old one. If the
/// new file cannot be opened, everything stays as it was.
pub fn reload(config: &LogConfig) -> Result<(), String> {
    let Some(logger) = LOGGER.get() else {
        return Err("log: no logger installed".into());
    };
    if logger.sink.path() != config.file {
        let file = Sink::open(&config.file)?;
        *logger.sink.file.lock().unwrap_or_else(|p| p.into_inner()) = file;
    }
    let inner = build(config, &logger.sink, !config.file.is_empty());
    let max = inner.filter();
    *logger.inner.write().unwrap_or_else(|p| p.into_inner()) = inner;
    logger.access.store(config.access, Ordering::Relaxed);
    log::set_max_level(max);
    Ok(())
}

/// SIGUSR1: opens `log.file` again by name, so lines go to the new file
/// after logrotate renamed the old one. The file in use when this fails
/// stays in use. Ok(None) when the log goes to stderr.
pub fn reopen() -> Result<Option<String>, String> {
    let Some(logger) = LOGGER.get() else {
        return Ok(None);
    };
    let path = logger.sink.path();
    match Sink::open(&path)? {
        None => Ok(None),
        Some(file) => {
            *logger.sink.file.lock().unwrap_or_else(|p| p.into_inner()) = Some(file);
            Ok(Some(path))
        }
    }
}

/// Whether HTTP requests are logged (`log.access`).
pub fn access() -> bool {
    LOGGER
        .get()
        .is_some_and(|l| l.access.load(Ordering::Relaxed))
}
