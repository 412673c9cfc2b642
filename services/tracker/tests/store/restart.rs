//! PostgreSQL going away and coming back: a private server (initdb + pg_ctl from the
//! system's PostgreSQL binaries, on a free port in a temporary directory, run as the
//! `postgres` user when the tests run as root) so the shared server is never disturbed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tracker::model::Event;
use tracker::store::{self, StoreConfig, StoreError};

use crate::support::{event, frame, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_is_unavailable_then_recovers_without_losing_acknowledged_events() {
    let server = PrivateServer::launch();
    let store = store::open(&StoreConfig::Postgres { url: server.url() })
        .await
        .expect("open the private server");
    let frame = frame("cam01");
    let acknowledged: Vec<Event> = (0..50)
        .map(|n| event(&frame, &format!("before-{n}"), n, n + 1))
        .collect();
    store
        .append(&acknowledged)
        .await
        .expect("append before the stop");

    // A crash rather than a clean shutdown: acknowledged commits must survive recovery.
    server.stop("immediate");
    let later: Vec<Event> = (0..50)
        .map(|n| event(&frame, &format!("after-{n}"), 100 + n, 101 + n))
        .collect();
    let error = store.append(&later).await.expect_err("the server is down");
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let error = store.journey(&frame).await.expect_err("the server is down");
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let error = store.status().await.expect_err("the server is down");
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");

    server.start();
    // The same store, not reopened: it reconnects by itself.
    let outcome = store
        .append(&later)
        .await
        .expect("append after the restart");
    assert_eq!((outcome.inserted, outcome.duplicates), (50, 0));
    let journey = store.journey(&frame).await.expect("journey");
    let stored: Vec<_> = journey.iter().map(|stored| stored.event.event_id).collect();
    let expected: Vec<_> = acknowledged
        .iter()
        .chain(&later)
        .map(|event| event.event_id)
        .collect();
    assert_eq!(stored, expected);
    let status = store.status().await.expect("status");
    assert_eq!((status.events, status.frames), (100, 1));
}

/// A PostgreSQL cluster of our own, removed on drop.
struct PrivateServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivateServer {
    fn launch() -> PrivateServer {
        let bin = postgres_bin_dir();
        let dir = std::env::temp_dir().join(unique_name());
        std::fs::create_dir_all(&dir).expect("create the server directory");
        // PostgreSQL refuses to run as root: hand the directory to the postgres user.
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let server = PrivateServer {
            bin,
            dir,
            port,
            as_postgres,
        };
        let data = server.data();
        run(server.command("initdb").args([
            "-D",
            &data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        server.start();
        server
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        run(self.command("pg_ctl").args([
            "-D",
            &self.data(),
            "-l",
            &log,
            "-o",
            &options,
            "-w",
            "start",
        ]));
    }

    fn stop(&self, mode: &str) {
        run(self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", mode, "-w", "stop"]));
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb` and `pg_ctl`.
fn postgres_bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .unwrap_or_else(|error| {
            panic!(
                "PostgreSQL server binaries not found in {}: {error}; install the \
                 postgresql package (cargo xtask test does)",
                root.display()
            )
        })
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("no initdb and pg_ctl under {}", root.display()))
}

fn is_root() -> bool {
    let output = run(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
