//! Shared pieces of the integration tests: the server under test as a guard,
//! external tools (ffmpeg, ffprobe, rtmpdump) as guards, log waiting, and
//! media checks on ffprobe's packet listings.
//!
//! Rules every helper keeps:
//! - every wait has a deadline, so a broken server fails a test, never hangs
//!   the suite;
//! - every process we start is ended by its PID when its guard drops (the
//!   server gets SIGTERM first, then SIGKILL after 3 s);
//! - each test has its own server on its own free port, so tests run in
//!   parallel;
//! - artefacts (server log, tool stderr, recorded FLV files) are kept under
//!   `target/tmp/logs/<test name>/` for a post-mortem.

#![allow(dead_code)]

pub mod http_client;
pub mod rtmp_client;
pub mod test_ca;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The default vhost in stream keys.
pub const DEFAULT_VHOST: &str = "__defaultVhost__";

/// How long the server may take to log `listening`.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A free TCP port on 127.0.0.1: bind port 0, read it, release it.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A free TCP port on `ip`. A port free on 127.0.0.1 may be taken on
/// 127.0.0.3: an edge's pulls connect from its own address, so their
/// ephemeral ports are in use there.
pub fn free_port_on(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}:0: {e}"));
    l.local_addr().expect("local_addr").port()
}

/// The name of the running test (the harness names each test's thread).
pub fn test_name() -> String {
    let name = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_string();
    name.replace("::", "-")
}

/// Spawns a helper thread named after the running test, so artefacts it
/// writes land in the test's directory.
pub fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    std::thread::Builder::new()
        .name(test_name())
        .spawn(f)
        .expect("spawn helper thread")
}

/// `target/tmp/logs/<test name>/`, created.
pub fn artefact_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("logs")
        .join(test_name());
    std::fs::create_dir_all(&dir).expect("create artefact dir");
    dir
}

/// The value of a `key=value` token in a log line.
pub fn kv<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|tok| {
        tok.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
            .map(|v| v.trim_end_matches([',', ';']))
    })
}

/// True if the line has every `key=value` pair given.
pub fn has_kvs(line: &str, pairs: &[(&str, &str)]) -> bool {
    pairs.iter().all(|(k, v)| kv(line, k) == Some(v))
}

/// True if the line is logged at warn or error level.
pub fn is_warn_or_error(line: &str) -> bool {
    // env_logger's default format is `[<time> <LEVEL> <module>] <message>`.
    let head = line.split(']').next().unwrap_or("");
    head.contains("WARN") || head.contains("ERROR")
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; the PID is one of
    // our own children that has not been reaped yet.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Builds a [`Server`].
pub struct ServerBuilder {
    config: Option<String>,
    listen: String,
    shards: usize,
    log: String,
    extra_args: Vec<String>,
}

impl ServerBuilder {
    /// TOML written to a temporary `shardcast.toml` and passed as `--config`.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_string());
        self
    }

    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }

    /// The loopback address to listen on (default 127.0.0.1; 127.0.0.2,
    /// .3, … for the nodes of a cluster).
    pub fn listen(mut self, ip: &str) -> Self {
        self.listen = ip.to_string();
        self
    }

    pub fn log(mut self, level: &str) -> Self {
        self.log = level.to_string();
        self
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.extra_args.push(a.to_string());
        self
    }

    /// Starts the binary and waits for its `listening` line.
    pub fn start(self) -> Server {
        let port = free_port_on(&self.listen);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardcast"));
        let config_path = self.config.as_ref().map(|toml| {
            let path = dir.path().join("shardcast.toml");
            std::fs::write(&path, toml).expect("write config");
            cmd.arg("--config").arg(&path);
            path
        });
        cmd.args(["--listen", &self.listen])
            .args(["--port", &port.to_string()])
            .args(["--shards", &self.shards.to_string()])
            .args(["--log", &self.log])
            .args(&self.extra_args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn the shardcast binary");
        let log_path = artefact_dir().join(format!("server-{port}.log"));
        let log_file = Arc::new(Mutex::new(
            File::create(&log_path).expect("create server log"),
        ));
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut readers = Vec::new();
        let stderr = child.stderr.take().expect("stderr");
        let stdout = child.stdout.take().expect("stdout");
        for (prefix, stream) in [
            ("", Box::new(stderr) as Box<dyn std::io::Read + Send>),
            ("[stdout] ", Box::new(stdout)),
        ] {
            let (lines, log_file) = (lines.clone(), log_file.clone());
            readers.push(
                std::thread::Builder::new()
                    .name(format!("server-{port}-log"))
                    .spawn(move || {
                        let mut r = BufReader::new(stream);
                        let mut buf = Vec::new();
                        loop {
                            buf.clear();
                            match r.read_until(b'\n', &mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(_) => {
                                    let line = format!(
                                        "{prefix}{}",
                                        String::from_utf8_lossy(&buf).trim_end()
                                    );
                                    let _ = writeln!(log_file.lock().unwrap(), "{line}");
                                    lines.lock().unwrap().push(line);
                                }
                            }
                        }
                    })
                    .expect("spawn log reader"),
            );
        }
        let pid = child.id();
        let mut server = Server {
            child: Some(child),
            pid,
            listen: self.listen.clone(),
            port,
            shards: self.shards,
            lines,
            readers,
            log_path,
            config_path,
            _dir: dir,
        };
        let listening = server.wait_for_log(STARTUP_TIMEOUT, |l| l.contains("listening"));
        match listening {
            Some(line) => {
                let addr = format!("{}:{port}", self.listen);
                assert_eq!(
                    kv(&line, "addr"),
                    Some(addr.as_str()),
                    "listening line names the wrong address: {line}"
                );
                assert_eq!(
                    kv(&line, "shards"),
                    Some(self.shards.to_string().as_str()),
                    "listening line names the wrong shard count: {line}"
                );
            }
            None => {
                let exited = server
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                panic!(
                    "shardcast did not log `listening addr={}:{port} shards={}` within {:?} \
                     (process exit: {exited:?}); log:\n{}",
                    self.listen,
                    self.shards,
                    STARTUP_TIMEOUT,
                    server.log_tail(100)
                );
            }
        }
        server
    }
}

/// The shardcast binary under test, on its own port. Dropping it ends the
/// process by PID (SIGTERM, then SIGKILL after 3 s).
pub struct Server {
    child: Option<Child>,
    pub pid: u32,
    /// The address it listens on.
    pub listen: String,
    pub port: u16,
    pub shards: usize,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    pub log_path: PathBuf,
    /// The `--config` file, when the builder was given one (a test may
    /// rewrite it and send SIGHUP).
    pub config_path: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: None,
            listen: "127.0.0.1".into(),
            shards: 2,
            log: "debug".into(),
            extra_args: Vec::new(),
        }
    }

    /// Two shards, default config.
    pub fn start() -> Server {
        Self::builder().start()
    }

    /// Two shards with `toml` as the config file.
    pub fn with_config(toml: &str) -> Server {
        Self::builder().config(toml).start()
    }

    /// `rtmp://LISTEN:PORT/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("rtmp://{}:{}/{}", self.listen, self.port, path)
    }

    /// `http://LISTEN:PORT/<path>`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}:{}/{}", self.listen, self.port, path)
    }

    /// `LISTEN:PORT`.
    pub fn addr(&self) -> std::net::SocketAddr {
        format!("{}:{}", self.listen, self.port)
            .parse()
            .expect("listen is an IP address")
    }

    /// All log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn log_len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// The last `n` log lines, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let lines = self.lines.lock().unwrap();
        let start = lines.len().saturating_sub(n);
        let mut s = format!(
            "--- last {} lines of {} ---\n",
            lines.len() - start,
            self.log_path.display()
        );
        for l in &lines[start..] {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// Log lines matching `pred`.
    pub fn find_logs(&self, pred: impl Fn(&str) -> bool) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| pred(l))
            .cloned()
            .collect()
    }

    /// Waits for a log line matching `pred`, scanning from the start.
    pub fn wait_for_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.wait_for_log_from(0, timeout, pred)
    }

    /// Waits for a log line matching `pred` at index `from` or later.
    pub fn wait_for_log_from(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut next = from;
        loop {
            {
                let lines = self.lines.lock().unwrap();
                while next < lines.len() {
                    if pred(&lines[next]) {
                        return Some(lines[next].clone());
                    }
                    next += 1;
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the `publish key=<key>` line (the `n`th one, 1-based).
    pub fn wait_for_publish(&self, key: &str, n: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.find_logs(|l| is_event(l, "publish") && kv(l, "key") == Some(key));
            if found.len() >= n {
                return found[n - 1].clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "no `publish key={key}` line (#{n}) within {timeout:?}\n{}",
                    self.log_tail(80)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the `play` line of the player connected from local port
    /// `peer_port`; returns it.
    pub fn wait_for_play(&self, peer_port: u16, timeout: Duration) -> Option<String> {
        let peer = format!("127.0.0.1:{peer_port}");
        self.wait_for_log(timeout, |l| {
            is_event(l, "play") && kv(l, "peer") == Some(peer.as_str())
        })
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn sigterm(&self) {
        signal(self.pid, libc::SIGTERM);
    }

    /// Waits for the process to exit; None if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let st = wait_timeout(self.child.as_mut()?, timeout)?;
        self.child = None;
        // The log readers end at EOF once the process is gone.
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Some(st)
    }
}

/// True if the log line is an `event` line (`publish`, `play`, `close`):
/// its message part starts with that word (so `publish refused ...` is not
/// a `publish` line).
pub fn is_event(line: &str, event: &str) -> bool {
    let msg = match line.find("] ") {
        Some(i) if line.starts_with('[') => &line[i + 2..],
        _ => line,
    };
    msg.split_whitespace().next() == Some(event)
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(150));
        }
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                signal(self.pid, libc::SIGTERM);
                if wait_timeout(&mut child, Duration::from_secs(3)).is_none() {
                    let _ = child.kill();
                }
            }
            let _ = child.wait();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// An external tool (ffmpeg, ffprobe, rtmpdump) run as a guard: its stderr
/// goes to a file in the artefact dir, and dropping the guard SIGKILLs it by
/// PID if it is still running.
pub struct Proc {
    child: Option<Child>,
    pub name: String,
    pub pid: u32,
    pub stderr_path: PathBuf,
    pub started: Instant,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd`; `name` labels its artefacts and failure messages.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let dir = artefact_dir();
        let stderr_path = dir.join(format!("{name}.stderr"));
        let stderr = File::create(&stderr_path).expect("create stderr file");
        cmd.stdin(Stdio::null()).stderr(Stdio::from(stderr));
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("spawn {name} ({cmd:?}): {e}; is it installed? see scripts/test.sh")
        });
        Proc {
            pid: child.id(),
            child: Some(child),
            name: name.to_string(),
            stderr_path,
            started: Instant::now(),
            status: None,
        }
    }

    /// Waits for exit; None if still running after `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.status {
            return Some(st);
        }
        let st = wait_timeout(self.child.as_mut()?, timeout)?;
        self.status = Some(st);
        Some(st)
    }

    pub fn is_running(&mut self) -> bool {
        self.wait_timeout(Duration::ZERO).is_none()
    }

    pub fn signal(&self, sig: libc::c_int) {
        if self.status.is_none() {
            signal(self.pid, sig);
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if self.status.is_none() {
                let _ = c.kill();
                self.status = c.wait().ok();
            }
        }
    }

    /// The last `n` lines of the tool's stderr.
    pub fn stderr_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(n);
        format!(
            "--- {} stderr ({}) ---\n{}",
            self.name,
            self.stderr_path.display(),
            lines[start..].join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.stderr_tail(30));
        }
        self.kill();
    }
}

/// Options for [`ffmpeg_publish`].
#[derive(Clone, Debug, Default)]
pub struct PublishOpts {
    /// Stop after this many seconds (`-t`); None publishes until killed.
    pub duration_s: Option<f64>,
    /// Video bitrate such as "4M" (`-b:v`, with matching maxrate/bufsize).
    pub video_bitrate: Option<String>,
    /// Picture size such as "640x360"; None is 1280x720.
    pub video_size: Option<String>,
    /// Audio alone (a radio): no video input, no video stream.
    pub audio_only: bool,
}

impl PublishOpts {
    /// 640x360: for tests where the picture size does not matter, to spare
    /// the CPU that parallel tests share.
    pub fn small() -> PublishOpts {
        PublishOpts {
            video_size: Some("640x360".into()),
            ..Default::default()
        }
    }
}

/// The generated test stream, published with ffmpeg at real time:
/// testsrc2 1280x720 (or `opts.video_size`) at 30 fps and a 440 Hz sine at
/// 44.1 kHz, encoded as H.264 (2 s GOP, no B-frames) and AAC, muxed as FLV
/// to `url`.
pub fn ffmpeg_publish(name: &str, url: &str, opts: &PublishOpts) -> Proc {
    let size = opts.video_size.as_deref().unwrap_or("1280x720");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "warning"]);
    if !opts.audio_only {
        cmd.args([
            "-re",
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=30"),
        ]);
    }
    cmd.args([
        "-re",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
    ]);
    if let Some(t) = opts.duration_s {
        cmd.args(["-t", &t.to_string()]);
    }
    if opts.audio_only {
        cmd.args(["-map", "0:a"]);
    } else {
        cmd.args(["-map", "0:v", "-map", "1:a"]);
    }
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
    ])
    .args([
        "-g",
        "60",
        "-keyint_min",
        "60",
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
    ]);
    if let Some(b) = &opts.video_bitrate {
        cmd.args(["-b:v", b, "-maxrate", b, "-bufsize", b]);
    }
    cmd.args(["-c:a", "aac", "-b:a", "128k", "-ar", "44100"])
        .args(["-f", "flv", "-flvflags", "no_duration_filesize", url])
        .stdout(Stdio::null());
    Proc::spawn(name, &mut cmd)
}

/// Starts an endless publisher of the test stream to `live/test` and waits
/// for the server's `publish` line for it.
pub fn publish_and_wait(server: &Server, name: &str) -> Proc {
    publish_and_wait_opts(server, name, &PublishOpts::default())
}

/// Like [`publish_and_wait`], with publishing options.
pub fn publish_and_wait_opts(server: &Server, name: &str, opts: &PublishOpts) -> Proc {
    let key = format!("{DEFAULT_VHOST}/live/test");
    publish_and_wait_at(server, name, "live/test", &key, opts)
}

/// Publishes to `path` (`app/stream[?query]`) and waits for the server's
/// `publish` line for stream `key`.
pub fn publish_and_wait_at(
    server: &Server,
    name: &str,
    path: &str,
    key: &str,
    opts: &PublishOpts,
) -> Proc {
    let p = ffmpeg_publish(name, &server.url(path), opts);
    wait_published(server, p, key)
}

/// Waits (15 s at most) for the server's `publish` line for stream `key`
/// while publisher `p` runs; returns `p`.
pub fn wait_published(server: &Server, mut p: Proc, key: &str) -> Proc {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if !server
            .find_logs(|l| is_event(l, "publish") && kv(l, "key") == Some(key))
            .is_empty()
        {
            return p;
        }
        if !p.is_running() {
            panic!(
                "publisher {} exited before the server logged `publish key={key}`\n{}\n{}",
                p.name,
                p.stderr_tail(20),
                server.log_tail(60)
            );
        }
        if Instant::now() >= deadline {
            panic!(
                "no `publish key={key}` line within 15 s\n{}\n{}",
                p.stderr_tail(20),
                server.log_tail(60)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// ffmpeg 9, an enhanced-RTMP publisher (HEVC, AV1, VP9, Opus in FLV):
/// `SHARDCAST_FFMPEG9` (set by scripts/test.sh), else the binary of the
/// imageio-ffmpeg wheel in the project's `.venv/`.
pub fn ffmpeg9() -> PathBuf {
    if let Some(p) = std::env::var_os("SHARDCAST_FFMPEG9") {
        return PathBuf::from(p);
    }
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let out = Command::new(python)
        .args([
            "-c",
            "import imageio_ffmpeg as f; print(f.get_ffmpeg_exe())",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("{python}: {e}; scripts/test.sh installs imageio-ffmpeg into .venv/")
        });
    assert!(
        out.status.success(),
        "{python} has no imageio_ffmpeg (run scripts/test.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A live encode (`-re`) of testsrc2 at `size` and 30 fps (2 s GOP) and a
/// 440 Hz sine at 48 kHz, with the given codec arguments, published by
/// `ffmpeg` (Debian's, or [`ffmpeg9`] for enhanced RTMP) to `url`.
pub fn encode_and_publish(
    ffmpeg: &Path,
    name: &str,
    url: &str,
    size: &str,
    codec_args: &[&str],
) -> Proc {
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-re", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=30"))
        .args([
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ])
        .args(["-pix_fmt", "yuv420p", "-g", "60"])
        .args(codec_args)
        .args(["-f", "flv", url])
        .stdout(Stdio::null());
    Proc::spawn(name, &mut cmd)
}

/// SVT-AV1 at its fastest preset, for [`encode_and_publish`] with
/// [`ffmpeg9`].
pub const SVT_AV1_ARGS: &[&str] = &[
    "-c:v",
    "libsvtav1",
    "-preset",
    "12",
    "-svtav1-params",
    "keyint=60",
];
/// libopus at 64 kbit/s.
pub const OPUS_ARGS: &[&str] = &["-c:a", "libopus", "-b:a", "64k"];

/// One packet in an ffprobe listing.
#[derive(Clone, Debug)]
pub struct Packet {
    pub codec_type: String,
    pub stream_index: u32,
    pub pts: Option<f64>,
    pub dts: Option<f64>,
    pub key: bool,
}

/// What ffprobe saw: packets, streams, and how long it took.
#[derive(Clone, Debug, Default)]
pub struct Probe {
    pub packets: Vec<Packet>,
    pub streams: Vec<HashMap<String, String>>,
    pub wall: Duration,
    pub source: String,
    pub status: Option<ExitStatus>,
    /// ffprobe did not finish by itself and was killed at the timeout.
    pub timed_out: bool,
    pub stderr: String,
}

const PROBE_ENTRIES: &str = "packet=codec_type,stream_index,pts_time,dts_time,flags:\
stream=index,codec_type,codec_name,sample_rate,channels,width,height,avg_frame_rate";

fn parse_probe_output(text: &str) -> (Vec<Packet>, Vec<HashMap<String, String>>) {
    let mut packets = Vec::new();
    let mut streams = Vec::new();
    for line in text.lines() {
        let mut parts = line.split('|');
        let section = parts.next().unwrap_or("");
        let map: HashMap<String, String> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match section {
            "packet" => packets.push(Packet {
                codec_type: map.get("codec_type").cloned().unwrap_or_default(),
                stream_index: map
                    .get("stream_index")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                pts: map.get("pts_time").and_then(|v| v.parse().ok()),
                dts: map.get("dts_time").and_then(|v| v.parse().ok()),
                key: map.get("flags").is_some_and(|f| f.starts_with('K')),
            }),
            "stream" => streams.push(map),
            _ => {}
        }
    }
    (packets, streams)
}

/// Runs ffprobe over `input` (an rtmp:// URL or a file), listing packets
/// and streams; `read_s` limits the read to that many seconds of stream
/// time from the first packet. The whole run is bounded by `timeout`
/// (ffprobe is SIGKILLed by PID past it).
pub fn ffprobe(name: &str, input: &str, read_s: Option<f64>, timeout: Duration) -> Probe {
    let out_path = artefact_dir().join(format!("{name}.packets.txt"));
    let out = File::create(&out_path).expect("create ffprobe output");
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-hide_banner", "-v", "error"]);
    if input.starts_with("rtmp://") || input.starts_with("rtmps://") {
        // Give up on a silent server after 10 s (microseconds).
        cmd.args(["-rw_timeout", "10000000"]);
    }
    if let Some(s) = read_s {
        cmd.args(["-read_intervals", &format!("%+{s}")]);
    }
    cmd.args(["-show_entries", PROBE_ENTRIES])
        .args(["-of", "compact=p=1:nk=0"])
        .arg(input)
        .stdout(Stdio::from(out));
    let mut p = Proc::spawn(name, &mut cmd);
    let status = p.wait_timeout(timeout);
    if status.is_none() {
        p.kill();
    }
    let wall = p.started.elapsed();
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let (packets, streams) = parse_probe_output(&text);
    Probe {
        packets,
        streams,
        wall,
        source: format!("{name} ({input})"),
        status,
        timed_out: status.is_none(),
        stderr: p.stderr_tail(20),
    }
}

/// Records `url` to an FLV file with `ffmpeg -c copy` for `seconds` of
/// stream time; returns the file and the run's guard (already exited, or
/// killed at `timeout`).
pub fn ffmpeg_record(name: &str, url: &str, seconds: f64, timeout: Duration) -> (PathBuf, Proc) {
    let path = artefact_dir().join(format!("{name}.flv"));
    let _ = std::fs::remove_file(&path);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-rw_timeout", "10000000"])
        .args(["-i", url])
        .args(["-t", &seconds.to_string()])
        .args(["-map", "0", "-c", "copy", "-f", "flv", "-y"])
        .arg(&path)
        .stdout(Stdio::null());
    let mut p = Proc::spawn(name, &mut cmd);
    if p.wait_timeout(timeout).is_none() {
        // SIGINT makes ffmpeg finish the file; SIGKILL if it does not.
        p.signal(libc::SIGINT);
        if p.wait_timeout(Duration::from_secs(3)).is_none() {
            p.kill();
        }
    }
    (path, p)
}

/// Records `url` with rtmpdump (librtmp, an RTMP client independent of
/// ffmpeg's) to an FLV file for `seconds` of wall time, then stops it with
/// SIGINT (it closes the file cleanly), SIGKILL if it does not stop.
pub fn rtmpdump_record(name: &str, url: &str, seconds: f64) -> (PathBuf, Proc) {
    let path = artefact_dir().join(format!("{name}.flv"));
    let _ = std::fs::remove_file(&path);
    let mut cmd = Command::new("rtmpdump");
    cmd.args(["--live", "--timeout", "10", "--rtmp", url, "--flv"])
        .arg(&path)
        .stdout(Stdio::null());
    let mut p = Proc::spawn(name, &mut cmd);
    if p.wait_timeout(Duration::from_secs_f64(seconds)).is_none() {
        p.signal(libc::SIGINT);
        if p.wait_timeout(Duration::from_secs(3)).is_none() {
            p.kill();
        }
    }
    (path, p)
}

/// Summary of one client's H.264 + AAC reception.
#[derive(Clone, Debug)]
pub struct MediaSummary {
    pub video_frames: usize,
    pub audio_frames: usize,
    pub video_span_s: f64,
    pub fps: f64,
    pub audio_frames_per_s: f64,
}

/// The packets of one codec type, in order.
pub fn packets_of<'a>(p: &'a Probe, codec_type: &str) -> Vec<&'a Packet> {
    p.packets
        .iter()
        .filter(|k| k.codec_type == codec_type)
        .collect()
}

fn check_monotonic(pkts: &[&Packet], what: &str, errs: &mut Vec<String>) {
    let mut prev: Option<f64> = None;
    for (i, k) in pkts.iter().enumerate() {
        let Some(dts) = k.dts else {
            errs.push(format!("{what} packet #{i} has no DTS"));
            return;
        };
        if let Some(p) = prev {
            if dts <= p {
                errs.push(format!(
                    "{what} DTS not increasing at packet #{i}: {p} then {dts}"
                ));
                return;
            }
        }
        prev = Some(dts);
    }
}

/// Expected rates of the generated stream.
pub const FPS: f64 = 30.0;
/// AAC frames per second at 44.1 kHz (1024 samples per frame).
pub const AAC_FPS: f64 = 44_100.0 / 1024.0;

/// What a client should get: per kind, the ffprobe codec name, and for
/// video the picture size (0 = any) and frame rate, for audio the sample
/// rate and coded frames per second.
#[derive(Clone, Copy, Debug)]
pub struct Expect<'a> {
    pub video: Option<(&'a str, u32, u32)>,
    pub fps: f64,
    pub audio: Option<(&'a str, u32)>,
    pub audio_fps: f64,
    /// Video frames further apart than this (stream time) fail the check:
    /// a stall, not a steady frame rate.
    pub video_gap_max_s: Option<f64>,
}

impl Expect<'static> {
    /// The generated test stream of [`ffmpeg_publish`]: H.264 at 30 fps
    /// and AAC at 44.1 kHz.
    pub const H264_AAC: Expect<'static> = Expect {
        video: Some(("h264", 0, 0)),
        fps: FPS,
        audio: Some(("aac", 44_100)),
        audio_fps: AAC_FPS,
        video_gap_max_s: None,
    };
}

/// Checks a client got the generated stream: an h264 video and an aac
/// audio stream (44.1 kHz), DTS strictly increasing in each, at least
/// `min_span_s` seconds of video, a frame rate within 10% of 30 fps and an
/// AAC frame rate within 10% of 43.07/s over that span (so nothing was
/// dropped), and at least 90% of the frames the span should hold.
pub fn check_h264_aac(p: &Probe, min_span_s: f64) -> Result<MediaSummary, String> {
    check_media(p, &Expect::H264_AAC, min_span_s)
}

/// Checks a client got what `e` describes and nothing else: exactly the
/// expected streams with their codecs (and size and sample rate), DTS
/// strictly increasing in each, at least `min_span_s` seconds of video
/// (or audio, for an audio-only stream), frame rates within 10% of the
/// expected ones over that span (nothing dropped), no video gap over
/// `e.video_gap_max_s`, and at least 90% of the frames the span should
/// hold.
pub fn check_media(p: &Probe, e: &Expect, min_span_s: f64) -> Result<MediaSummary, String> {
    let mut errs = Vec::new();
    let stream = |t: &str| {
        p.streams
            .iter()
            .find(|s| s.get("codec_type").map(String::as_str) == Some(t))
    };
    let field = |s: Option<&HashMap<String, String>>, k: &str| s.and_then(|s| s.get(k)).cloned();
    for (kind, want) in [
        ("video", e.video.map(|v| v.0)),
        ("audio", e.audio.map(|a| a.0)),
    ] {
        let got = field(stream(kind), "codec_name");
        if got.as_deref() != want {
            errs.push(format!("{kind} stream codec {got:?}, expected {want:?}"));
        }
    }
    if let Some((_, w, h)) = e.video.filter(|v| v.1 > 0) {
        let size = (
            field(stream("video"), "width"),
            field(stream("video"), "height"),
        );
        if size != (Some(w.to_string()), Some(h.to_string())) {
            errs.push(format!("video size {size:?}, expected {w}x{h}"));
        }
    }
    if let Some((_, rate)) = e.audio {
        let got = field(stream("audio"), "sample_rate");
        if got != Some(rate.to_string()) {
            errs.push(format!("audio sample_rate {got:?}, expected {rate}"));
        }
    }
    let video = packets_of(p, "video");
    let audio = packets_of(p, "audio");
    check_monotonic(&video, "video", &mut errs);
    check_monotonic(&audio, "audio", &mut errs);
    let span = |pk: &[&Packet]| match (
        pk.first().and_then(|k| k.dts),
        pk.last().and_then(|k| k.dts),
    ) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    let rate = |pk: &[&Packet]| {
        let s = span(pk);
        if s > 0.0 {
            (pk.len() - 1) as f64 / s
        } else {
            0.0
        }
    };
    let (vspan, aspan) = (span(&video), span(&audio));
    let (fps, afps) = (rate(&video), rate(&audio));
    let main_span = if e.video.is_some() { vspan } else { aspan };
    if main_span < min_span_s {
        errs.push(format!(
            "the stream spans {main_span:.2} s of stream time, expected at least {min_span_s} s"
        ));
    }
    let mut kinds = Vec::new();
    if e.video.is_some() {
        kinds.push(("video", &video, fps, e.fps));
    }
    if e.audio.is_some() {
        kinds.push(("audio", &audio, afps, e.audio_fps));
    }
    for (kind, pk, got, want) in kinds {
        if !(want * 0.9..=want * 1.1).contains(&got) {
            errs.push(format!(
                "{kind} frame rate {got:.2}/s over {:.2} s, expected {want:.2} ±10%",
                span(pk)
            ));
        }
        let min = (min_span_s * want * 0.9) as usize;
        if pk.len() < min {
            errs.push(format!(
                "{} {kind} frames, expected at least {min}",
                pk.len()
            ));
        }
    }
    let gap = video
        .windows(2)
        .filter_map(|w| Some(w[1].dts? - w[0].dts?))
        .fold(0.0, f64::max);
    if e.video_gap_max_s.is_some_and(|max| gap > max) {
        errs.push(format!("a video gap of {gap:.3} s"));
    }
    if errs.is_empty() {
        Ok(MediaSummary {
            video_frames: video.len(),
            audio_frames: audio.len(),
            video_span_s: vspan,
            fps,
            audio_frames_per_s: afps,
        })
    } else {
        Err(format!(
            "{}: {}\n(exit {:?}{}, {} packets, {:.1} s wall)\n{}",
            p.source,
            errs.join("; "),
            p.status,
            if p.timed_out {
                ", killed at the timeout"
            } else {
                ""
            },
            p.packets.len(),
            p.wall.as_secs_f64(),
            p.stderr
        ))
    }
}

/// Fetches a media playlist with `get` until it lists a segment, for at
/// most `timeout`; returns it and its first segment URI.
pub fn playlist_with_segment(
    what: &str,
    timeout: Duration,
    mut get: impl FnMut() -> http_client::Response,
) -> (String, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let r = get();
        let text = r.text();
        if r.head.status == 200 && text.contains("#EXTINF") {
            let segment = text
                .lines()
                .find(|l| !l.starts_with('#') && !l.trim().is_empty())
                .unwrap_or_else(|| panic!("{what}: no segment URI in\n{text}"))
                .to_string();
            return (text, segment);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no playlist with a segment within {timeout:?}: {} {text}",
            r.head.status
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `vhost/app/stream` of `live/<name>` in the default vhost.
pub fn live_key(name: &str) -> String {
    format!("{DEFAULT_VHOST}/live/{name}")
}

/// Publishes the small test stream to `live/<name>` on `server` and waits
/// until it is published.
pub fn publish_live(server: &Server, name: &str) -> Proc {
    publish_and_wait_at(
        server,
        &format!("publisher-{name}"),
        &format!("live/{name}"),
        &live_key(name),
        &PublishOpts::small(),
    )
}

/// Polls `f` every 100 ms until it returns Some, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET target` on `server` (at its own address): status and JSON (null
/// if the body is not JSON).
pub fn api_at(server: &Server, target: &str) -> (u16, serde_json::Value) {
    let r = http_client::request_at(server.addr(), "GET", target, &[], Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("GET {target} on {}: {e}", server.addr()));
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.head.status, v)
}

/// What one failover cost an edge player.
pub struct Failover {
    /// Last video frame before the kill to the first after it.
    pub gap: Duration,
    /// The republish (the new origin's `publish` line seen) to the first
    /// frame.
    pub after_republish: Duration,
    /// The publisher on origin B, still publishing.
    pub publisher: Proc,
}

/// `name` published on origin `a` and played over HTTP-FLV on edge `e`:
/// `a` is SIGKILLed, the publisher moves to origin `b`. Checks the player
/// kept its connection and got media again; what it cost.
pub fn measure_failover(mut a: Server, b: &Server, e: &Server, name: &str) -> Failover {
    let mut first_publisher = publish_live(&a, name);
    let player = http_client::BgFlvPlayer::start_at(e.addr(), &format!("/live/{name}.flv"), false)
        .expect("connect");
    let playing = player.wait_until(Duration::from_secs(15), |tags| {
        tags.iter().filter(|t| t.is_video()).count() >= 30
    });
    assert!(playing, "the edge player did not start\n{}", e.log_tail(30));

    signal(a.pid, libc::SIGKILL);
    assert!(
        a.wait_exit(Duration::from_secs(5)).is_some(),
        "origin A did not die"
    );
    let killed = Instant::now();
    first_publisher.kill();
    let publisher = publish_live(b, name);
    let republished = Instant::now();
    let back = player.wait_until(Duration::from_secs(10), |tags| {
        tags.iter().any(|t| t.is_video() && t.at > republished)
    });
    let tags = player.snapshot();
    let last_before = tags
        .iter()
        .rev()
        .find(|t| t.is_video() && t.at <= killed)
        .map(|t| t.at);
    let first_after = tags
        .iter()
        .find(|t| t.is_video() && t.at > killed)
        .map(|t| t.at);
    assert!(
        back && !player.is_finished(),
        "no media on the same connection within 10 s of the republish (player ended: {})\n{}\n{}",
        player.is_finished(),
        e.log_tail(40),
        b.log_tail(20)
    );
    let (last_before, first_after) = (last_before.unwrap(), first_after.unwrap());
    let after_republish = first_after.saturating_duration_since(republished);
    println!(
        "failover: gap {} ms (last frame before the kill to the first after), {} ms after the republish, publisher away {} ms",
        first_after.duration_since(last_before).as_millis(),
        after_republish.as_millis(),
        republished.duration_since(killed).as_millis()
    );
    Failover {
        gap: first_after.duration_since(last_before),
        after_republish,
        publisher,
    }
}

/// The sum over shards of `shardcast_refused_total{reason}` in the
/// /metrics of the server at `addr`.
pub fn refused_total(addr: std::net::SocketAddr, reason: &str) -> u64 {
    let r = http_client::request_at(addr, "GET", "/metrics", &[], Duration::from_secs(5))
        .expect("GET /metrics");
    let label = format!("reason=\"{reason}\"}}");
    r.text()
        .lines()
        .filter(|l| l.starts_with("shardcast_refused_total{") && l.contains(&label))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// ffprobe of `bytes`, kept as `file` in the test's artefacts.
pub fn probe_bytes(file: &str, bytes: &[u8]) -> Probe {
    let path = artefact_dir().join(file);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    ffprobe(
        &format!("ffprobe-{file}"),
        path.to_str().expect("a UTF-8 path"),
        None,
        Duration::from_secs(20),
    )
}

/// What a test reads back of one fMP4 fragment: its `mfhd` sequence
/// number and, per `traf`, (track id, `tfdt`, sum of sample durations).
pub struct Fragment {
    pub sequence: u32,
    pub tracks: Vec<(u32, u64, u64)>,
}

/// The fragments (`moof` + `mdat` pairs) of a segment or part, every box
/// size checked against the bytes.
pub fn fragments(what: &str, data: &[u8]) -> Vec<Fragment> {
    let be32 = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        assert!(at + 8 <= data.len(), "{what}: a box header past the end");
        let size = be32(data, at) as usize;
        let kind = &data[at + 4..at + 8];
        assert!(
            size >= 8 && at + size <= data.len(),
            "{what}: box {:?} of {size} bytes at {at} overruns {}",
            String::from_utf8_lossy(kind),
            data.len()
        );
        match kind {
            b"moof" => {
                let moof = &data[at + 8..at + size];
                let mut f = Fragment {
                    sequence: 0,
                    tracks: Vec::new(),
                };
                let mut i = 0;
                while i < moof.len() {
                    let (bs, bk) = (be32(moof, i) as usize, &moof[i + 4..i + 8]);
                    assert!(bs >= 8 && i + bs <= moof.len(), "{what}: moof child size");
                    if bk == b"mfhd" {
                        f.sequence = be32(moof, i + 12);
                    }
                    if bk == b"traf" {
                        let traf = &moof[i + 8..i + bs];
                        let (mut id, mut time, mut total) = (0, 0, 0);
                        let mut j = 0;
                        while j < traf.len() {
                            let (cs, ck) = (be32(traf, j) as usize, &traf[j + 4..j + 8]);
                            match ck {
                                b"tfhd" => id = be32(traf, j + 12),
                                b"tfdt" => {
                                    time = u64::from(be32(traf, j + 12)) << 32
                                        | u64::from(be32(traf, j + 16))
                                }
                                b"trun" => {
                                    let flags = be32(traf, j + 8) & 0xff_ffff;
                                    assert_eq!(flags & 0x100, 0x100, "{what}: durations in trun");
                                    let count = be32(traf, j + 12) as usize;
                                    let per = 4 * [0x100, 0x200, 0x400, 0x800]
                                        .iter()
                                        .filter(|&&b| flags & b != 0)
                                        .count();
                                    let first = j + 16 + if flags & 1 != 0 { 4 } else { 0 };
                                    total = (0..count)
                                        .map(|k| u64::from(be32(traf, first + k * per)))
                                        .sum();
                                }
                                _ => {}
                            }
                            j += cs;
                        }
                        f.tracks.push((id, time, total));
                    }
                    i += bs;
                }
                out.push(f);
            }
            b"mdat" => assert!(!out.is_empty(), "{what}: an mdat before any moof"),
            other => panic!(
                "{what}: unexpected box {:?}",
                String::from_utf8_lossy(other)
            ),
        }
        at += size;
    }
    out
}

/// Checks that `segments` (URI and bytes, in playlist order) are valid
/// fragments ([`fragments`]) whose `mfhd` sequence numbers increase and
/// whose per-track `tfdt` runs on from where that track's previous
/// fragment ended: within a frame (34 ms), since the last sample of a
/// fragment lasts its track's spacing.
pub fn check_fragment_run<'a>(segments: impl IntoIterator<Item = (&'a str, &'a [u8])>) {
    let mut last_sequence = 0;
    let mut next_time: HashMap<u32, u64> = HashMap::new();
    for (uri, seg) in segments {
        for f in fragments(uri, seg) {
            assert!(
                f.sequence > last_sequence,
                "{uri}: sequence numbers increase"
            );
            last_sequence = f.sequence;
            for (id, time, total) in f.tracks {
                if let Some(expect) = next_time.insert(id, time + total) {
                    assert!(
                        time.abs_diff(expect) <= 34,
                        "{uri}: track {id} tfdt {time}, the previous fragment ended at {expect}"
                    );
                }
            }
        }
    }
}
