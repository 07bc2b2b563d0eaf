//! A real `redis-server` per test, on a free loopback port, that the test can kill and
//! restart (with or without its data). `scripts/test.sh` installs the Debian package.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    aof: bool,
    password: Option<String>,
    /// (certificate, key, CA) PEM files: serve TLS only.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl RedisServer {
    pub fn start() -> Self {
        Self::launch(false, None)
    }

    /// With append-only persistence (fsync always): data survives a kill.
    pub fn start_with_aof() -> Self {
        Self::launch(true, None)
    }

    pub fn start_with_password(password: &str) -> Self {
        Self::launch(false, Some(password.to_owned()))
    }

    /// TLS only, with a certificate for `localhost` signed by a CA generated here; returns
    /// the server and the CA's PEM file.
    pub fn start_with_tls() -> (Self, PathBuf) {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("afw-redis-tls-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (cert, key, ca) = test_certificates(&dir);
        let mut server = Self {
            port,
            dir,
            aof: false,
            password: None,
            tls: Some((cert, key, ca.clone())),
            child: None,
        };
        server.restart();
        (server, ca)
    }

    fn launch(aof: bool, password: Option<String>) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("afw-redis-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server = Self {
            port,
            dir,
            aof,
            password,
            tls: None,
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        match (&self.password, &self.tls) {
            (_, Some(_)) => format!("rediss://localhost:{}", self.port),
            (Some(p), None) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            (None, None) => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Starts (again) on the same port and directory.
    pub fn restart(&mut self) {
        self.spawn(&[]);
        self.wait_for_ping(|reply| reply == "PONG");
    }

    /// Waits (10 s at most) until `PING` answers as `ready` wants.
    fn wait_for_ping(&self, ready: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready(self.cli(&["PING"]).trim()) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts again, replaying its data slowly (`key_load_delay_us` per key, and serving
    /// clients between every KiB it loads): returns as soon as it answers, while it still
    /// answers `LOADING`.
    #[allow(dead_code)] // used by tests/conformance, which shares this file
    pub fn restart_loading(&mut self, key_load_delay_us: u32) {
        let delay = key_load_delay_us.to_string();
        self.spawn(&[
            "--key-load-delay",
            &delay,
            "--loading-process-events-interval-bytes",
            "1024",
        ]);
        // Any answer will do: `LOADING` is one.
        self.wait_for_ping(|reply| !reply.is_empty());
    }

    /// `n` keys (`DEBUG POPULATE`) written into the AOF's base by a rewrite, so a restart
    /// has them to load.
    #[allow(dead_code)] // used by tests/conformance, which shares this file
    pub fn populate(&self, n: usize) {
        assert_eq!(
            self.cli(&["DEBUG", "POPULATE", &n.to_string()]).trim(),
            "OK"
        );
        self.cli(&["BGREWRITEAOF"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = self.cli(&["INFO", "persistence"]);
            if info.contains("aof_rewrite_in_progress:0")
                && info.contains("aof_rewrite_scheduled:0")
            {
                return;
            }
            assert!(Instant::now() < deadline, "the AOF rewrite did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server is still loading its dataset.
    #[allow(dead_code)] // used by tests/conformance, which shares this file
    pub fn loading(&self) -> bool {
        self.cli(&["INFO", "persistence"]).contains("loading:1")
    }

    fn spawn(&mut self, extra: &[&str]) {
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => cmd.arg("--port").arg(self.port.to_string()),
            Some((cert, key, ca)) => cmd
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-auth-clients", "no"]),
        };
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", if self.aof { "yes" } else { "no" }])
            .args(["--appendfsync", "always", "--loglevel", "warning"])
            // DEBUG SLEEP (a stalled server) for the conformance suite, from loopback only.
            .args(["--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        cmd.args(extra);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start redis-server ({e}); install it (scripts/test.sh does: apt-get install redis-server)")
        });
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown save, connections drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some((_, _, ca)) = &self.tls {
            cmd.args(["-h", "localhost", "--tls", "--cacert"]).arg(ca);
        }
        if let Some(p) = &self.password {
            cmd.args(["-a", p, "--no-auth-warning"]);
        }
        cmd.args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .cli(&["--scan", "--pattern", pattern])
            .lines()
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA and a `localhost` certificate it signed, as PEM files in `dir`.
fn test_certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "afw test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key")).expect("CA");
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("server params")
        .signed_by(&key, &ca)
        .expect("server certificate");
    let paths = (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("ca.pem"),
    );
    std::fs::write(&paths.0, cert.pem()).expect("write certificate");
    std::fs::write(&paths.1, key.serialize_pem()).expect("write key");
    std::fs::write(&paths.2, ca.pem()).expect("write CA");
    paths
}

/// A restart of a simulated Redis served by [`spawn_sim_redis_controlled`]: with its data
/// (AOF) or without.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // used by tests/conformance, which shares this file
pub enum SimRestart {
    KeepData,
    /// With its data, loading it for this long first.
    KeepDataLoading(Duration),
    LoseData,
}

type Control = tokio::sync::mpsc::UnboundedSender<(SimRestart, std::sync::mpsc::Sender<()>)>;

/// Serves a fresh simulated Redis on a loopback port, on a thread of its own (its Lua state
/// is single-threaded). Test scaffolding only: in the simulation it runs as a turmoil host.
pub fn spawn_sim_redis() -> u16 {
    spawn_sim_redis_controlled().0
}

/// [`spawn_sim_redis`], with a handle that restarts it the way the simulation's faults do.
pub fn spawn_sim_redis_controlled() -> (u16, SimControl) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let (control, mut requests) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let host = afw_sim::redis_host::RedisHost::new();
            let restarts = host.clone();
            tokio::task::spawn_local(async move {
                while let Some((how, done)) = requests.recv().await {
                    match how {
                        // A real server loads the few keys of a test at once.
                        SimRestart::KeepData => restarts.restart_loading(Duration::ZERO),
                        SimRestart::KeepDataLoading(d) => restarts.restart_loading(d),
                        SimRestart::LoseData => restarts.wipe(),
                    }
                    let _ = std::sync::mpsc::Sender::send(&done, ());
                }
            });
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let host = host.clone();
                tokio::task::spawn_local(async move { host.serve(stream).await });
            }
        });
    });
    (port, SimControl(control))
}

/// Restarts a simulated Redis from a test.
#[allow(dead_code)] // used by tests/conformance, which shares this file
pub struct SimControl(Control);

#[allow(dead_code)] // used by tests/conformance, which shares this file
impl SimControl {
    /// Returns once the host has restarted.
    pub fn restart(&self, how: SimRestart) {
        let (done, wait) = std::sync::mpsc::channel();
        self.0.send((how, done)).expect("the simulated Redis runs");
        wait.recv().expect("the simulated Redis restarts");
    }
}
