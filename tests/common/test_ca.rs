//! A certificate authority for TLS tests, made with Debian's openssl CLI in
//! the test's own directory, and leaf certificates it signs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A certificate authority made with openssl for one test, and leaf
/// certificates it signs.
pub struct TestCa {
    dir: PathBuf,
    name: String,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let key = format!("{name}.key");
        let pem = format!("{name}.pem");
        let subj = format!("/CN=shardcast test CA {name}");
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &pem,
                "-days",
                "2",
                "-subj",
                &subj,
            ],
            dir,
        );
        TestCa {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    pub fn pem(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// A leaf certificate for `names` (DNS names, and 127.0.0.1), written
    /// to `<stem>.pem` and `<stem>.key`.
    pub fn leaf(&self, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let d = &self.dir;
        let (key, csr, pem) = (
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.pem"),
        );
        let ext = format!("{stem}.ext");
        let sans: Vec<String> = names
            .iter()
            .map(|n| format!("DNS:{n}"))
            .chain(["IP:127.0.0.1".to_string()])
            .collect();
        std::fs::write(d.join(&ext), format!("subjectAltName={}\n", sans.join(","))).unwrap();
        let subj = format!("/CN={}", names[0]);
        openssl(
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subj,
            ],
            d,
        );
        let (ca_pem, ca_key) = (format!("{}.pem", self.name), format!("{}.key", self.name));
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
            d,
        );
        (d.join(pem), d.join(key))
    }
}
