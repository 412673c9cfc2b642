//! Helpers for integration tests: find the servers and tools that `cargo xtask test`
//! provisioned.
//!
//! `cargo xtask test` makes sure Redis, PostgreSQL, RabbitMQ and `promtool` are available
//! and passes their locations to the tests in `REDIS_URL`, `DATABASE_URL`, `AMQP_URL` and
//! `PROMTOOL`. Tests read them back through this crate, which falls back to the local
//! defaults when a variable is unset (a plain `cargo test` on a machine running the
//! servers works too).
//!
//! A test that needs a server calls [`Server::require`] (or [`require_reachable`]): when
//! the server is down the test fails with a message naming the server, the variable and
//! the URL. Tests that need a server never skip or pass silently.
//!
//! ```no_run
//! let url = testkit::REDIS.require();
//! assert!(url.starts_with("redis://"));
//! ```
//!
//! The same declarations ([`REDIS`], [`POSTGRES`], [`RABBITMQ`]) drive the provisioning in
//! xtask, so the variable names and defaults live in one place.

#![warn(missing_docs)]

use std::env;
use std::io::{ErrorKind, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

/// How long [`check_reachable`] waits for a TCP connection before calling a server down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The variable holding the path of the `promtool` binary.
pub const PROMTOOL_VAR: &str = "PROMTOOL";

/// Redis, found through `REDIS_URL`.
pub const REDIS: Server = Server {
    name: "Redis",
    var: "REDIS_URL",
    default_url: "redis://127.0.0.1:6379",
};

/// PostgreSQL, found through `DATABASE_URL` (the default relies on local trust auth).
pub const POSTGRES: Server = Server {
    name: "PostgreSQL",
    var: "DATABASE_URL",
    default_url: "postgres://postgres@127.0.0.1:5432/postgres",
};

/// RabbitMQ, found through `AMQP_URL`.
pub const RABBITMQ: Server = Server {
    name: "RabbitMQ",
    var: "AMQP_URL",
    default_url: "amqp://guest:guest@127.0.0.1:5672/%2f",
};

/// A server the tests talk to: its name, the variable carrying its URL and the local
/// default URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    name: &'static str,
    var: &'static str,
    default_url: &'static str,
}

impl Server {
    /// The human name, e.g. `"Redis"`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The environment variable carrying the URL, e.g. `"REDIS_URL"`.
    pub fn var(&self) -> &'static str {
        self.var
    }

    /// The URL of a server on this machine with the stock configuration.
    pub fn default_url(&self) -> &'static str {
        self.default_url
    }

    /// The URL from the variable when it is set and not empty, else the default.
    pub fn url(&self) -> String {
        match env::var(self.var) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => self.default_url.to_owned(),
        }
    }

    /// The URL, after checking the server accepts TCP connections.
    ///
    /// # Panics
    ///
    /// When the server is unreachable, with a message naming the server, the variable and
    /// the URL: the calling test fails and says what is missing.
    pub fn require(&self) -> String {
        let url = self.url();
        require_reachable(self.name, self.var, &url);
        url
    }
}

/// `REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    REDIS.url()
}

/// `DATABASE_URL`, or the local default.
pub fn database_url() -> String {
    POSTGRES.url()
}

/// `AMQP_URL`, or the local default.
pub fn amqp_url() -> String {
    RABBITMQ.url()
}

/// Checks that the server `name` behind `url` (read from `var`) accepts TCP connections.
///
/// # Panics
///
/// When it does not, with the message of [`check_reachable`].
pub fn require_reachable(name: &str, var: &str, url: &str) {
    if let Err(message) = check_reachable(name, var, url) {
        panic!("{message}");
    }
}

/// Connects to the host and port of `url`; on failure the error names the server, the
/// variable, the URL (password redacted) and how to fix it.
pub fn check_reachable(name: &str, var: &str, url: &str) -> Result<(), String> {
    let shown = redact_password(url);
    let Some((host, port)) = host_port(url) else {
        return Err(format!(
            "{name}: cannot find a host and port in {var}={shown}; \
             expected scheme://[user[:password]@]host[:port][/path]"
        ));
    };
    connect(&host, port, CONNECT_TIMEOUT).map_err(|error| {
        format!(
            "{name} is not reachable at {host}:{port} ({var}={shown}): {error}; \
             run `cargo xtask test`, which starts it, or set {var} to a reachable server"
        )
    })
}

/// Whether `host:port` accepts a TCP connection within `timeout` (per resolved address).
pub fn tcp_reachable(host: &str, port: u16, timeout: Duration) -> bool {
    connect(host, port, timeout).is_ok()
}

/// The host and port of a URL such as `redis://127.0.0.1:6379` or
/// `postgres://user:secret@[::1]/db`; the port defaults by scheme (redis, postgres,
/// amqp, http and their TLS variants). `None` when there is no host, the port is not a
/// number, or it is absent and the scheme has no known default.
///
/// ```
/// assert_eq!(
///     testkit::host_port("amqp://guest:guest@localhost/%2f"),
///     Some(("localhost".to_owned(), 5672)),
/// );
/// ```
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_and_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_userinfo, host_and_port)| host_and_port);
    let (host, port) = if let Some(bracketed) = host_and_port.strip_prefix('[') {
        let (host, tail) = bracketed.split_once(']')?;
        let port = match tail {
            "" => None,
            tail => Some(tail.strip_prefix(':')?.parse::<u16>().ok()?),
        };
        (host, port)
    } else {
        match host_and_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse::<u16>().ok()?)),
            None => (host_and_port, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = port.or_else(|| default_port(scheme))?;
    Some((host.to_owned(), port))
}

/// The URL with the password of its userinfo replaced by `***`, for messages.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

/// The `promtool` binary: `PROMTOOL` when set, else `promtool` on `PATH`.
///
/// # Panics
///
/// When neither exists, naming `promtool` and the command that installs it.
pub fn promtool() -> PathBuf {
    match find_promtool() {
        Ok(path) => path,
        Err(message) => panic!("{message}"),
    }
}

/// Like [`promtool`], returning the message as an error instead of panicking.
pub fn find_promtool() -> Result<PathBuf, String> {
    if let Some(path) = env::var_os(PROMTOOL_VAR).filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "promtool not found: {PROMTOOL_VAR}={} is not a file",
                path.display()
            ))
        };
    }
    which("promtool").ok_or_else(|| {
        format!(
            "promtool not found: {PROMTOOL_VAR} is unset and there is no `promtool` on PATH; \
             run `cargo xtask test`, which installs it"
        )
    })
}

/// Runs `promtool check metrics` on Prometheus exposition text. `Err` carries promtool's
/// output when it exits non-zero or reports anything (lint problems included).
pub fn promtool_check_metrics(text: &str) -> Result<(), String> {
    let promtool = find_promtool()?;
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run {}: {error}", promtool.display()))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Write from another thread: a large input could otherwise fill the pipe while
    // promtool waits for us to read its output.
    let output = thread::scope(|scope| {
        let writer = scope.spawn(move || match stdin.write_all(text.as_bytes()) {
            // promtool may stop reading early on bad input; its output says why.
            Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
            other => other,
        });
        let output = child.wait_with_output();
        let written = writer.join().expect("the stdin writer does not panic");
        written.and(output)
    })
    .map_err(|error| format!("cannot run {} check metrics: {error}", promtool.display()))?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && report.trim().is_empty() {
        Ok(())
    } else {
        Err(format!(
            "promtool check metrics ({}): {}",
            output.status,
            report.trim()
        ))
    }
}

/// The first executable file called `program` in `PATH`, then in the sbin directories
/// (daemons such as `rabbitmq-server` live there and `PATH` may omit them).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;

    path.metadata()
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "redis" | "rediss" => Some(6379),
        "postgres" | "postgresql" => Some(5432),
        "amqp" => Some(5672),
        "amqps" => Some(5671),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn connect(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {host}: {error}"))?;
    let mut last_error = format!("{host} resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_stream) => return Ok(()),
            Err(error) => last_error = error.to_string(),
        }
    }
    Err(last_error)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use crate::{
        POSTGRES, RABBITMQ, REDIS, check_reachable, host_port, promtool_check_metrics,
        redact_password,
    };

    fn parsed(url: &str) -> Option<(String, u16)> {
        host_port(url)
    }

    #[test]
    fn defaults_parse_to_local_ports() {
        assert_eq!(
            parsed(REDIS.default_url()),
            Some(("127.0.0.1".into(), 6379))
        );
        assert_eq!(
            parsed(POSTGRES.default_url()),
            Some(("127.0.0.1".into(), 5432))
        );
        assert_eq!(
            parsed(RABBITMQ.default_url()),
            Some(("127.0.0.1".into(), 5672))
        );
    }

    #[test]
    fn missing_port_defaults_by_scheme() {
        assert_eq!(parsed("redis://cache"), Some(("cache".into(), 6379)));
        assert_eq!(parsed("rediss://cache/0"), Some(("cache".into(), 6379)));
        assert_eq!(parsed("postgresql://db/app"), Some(("db".into(), 5432)));
        assert_eq!(parsed("amqps://mq/%2f"), Some(("mq".into(), 5671)));
        assert_eq!(
            parsed("http://example.org"),
            Some(("example.org".into(), 80))
        );
    }

    #[test]
    fn userinfo_with_password_is_skipped() {
        assert_eq!(
            parsed("postgres://app:s3cr:et@db.internal:6432/app?sslmode=disable"),
            Some(("db.internal".into(), 6432))
        );
    }

    #[test]
    fn bracketed_ipv6_hosts_parse() {
        assert_eq!(parsed("redis://[::1]:6380"), Some(("::1".into(), 6380)));
        assert_eq!(parsed("amqp://u:p@[::1]/%2f"), Some(("::1".into(), 5672)));
    }

    #[test]
    fn query_and_fragment_end_the_authority() {
        assert_eq!(parsed("redis://h:1?db=2"), Some(("h".into(), 1)));
        assert_eq!(parsed("redis://h#frag"), Some(("h".into(), 6379)));
    }

    #[test]
    fn malformed_urls_have_no_host_port() {
        assert_eq!(parsed("127.0.0.1:6379"), None);
        assert_eq!(parsed("redis://"), None);
        assert_eq!(parsed("redis://:6379"), None);
        assert_eq!(parsed("redis://h:notaport"), None);
        assert_eq!(parsed("redis://h:70000"), None);
        assert_eq!(parsed("redis://[::1"), None);
        assert_eq!(parsed("unknown://h"), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_password("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_password(POSTGRES.default_url()),
            POSTGRES.default_url()
        );
        assert_eq!(redact_password("not a url"), "not a url");
    }

    #[test]
    fn reachable_server_passes_the_check() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("redis://127.0.0.1:{port}");
        assert_eq!(check_reachable("Redis", "REDIS_URL", &url), Ok(()));
    }

    #[test]
    fn unreachable_server_error_names_server_variable_and_url() {
        // Bind then drop a listener to get a port that nothing listens on.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        let message = check_reachable("RabbitMQ", "AMQP_URL", &url).unwrap_err();
        assert!(message.contains("RabbitMQ"), "{message}");
        assert!(message.contains("AMQP_URL"), "{message}");
        assert!(
            message.contains(&format!("amqp://guest:***@127.0.0.1:{port}/%2f")),
            "{message}"
        );
        assert!(!message.contains("guest:guest"), "{message}");
    }

    #[test]
    fn clean_exposition_passes_promtool() {
        let text = "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total 3\n";
        assert_eq!(promtool_check_metrics(text), Ok(()));
    }

    #[test]
    fn promtool_lint_problems_are_errors() {
        let message = promtool_check_metrics("# TYPE jobs counter\njobs 3\n").unwrap_err();
        assert!(message.contains("_total"), "{message}");
        assert!(message.contains("no help text"), "{message}");
    }

    #[test]
    fn unparseable_exposition_is_an_error() {
        let message = promtool_check_metrics("jobs{{ 3\n").unwrap_err();
        assert!(message.contains("parsing error"), "{message}");
    }

    #[test]
    fn unparseable_url_error_names_the_variable() {
        let message = check_reachable("Redis", "REDIS_URL", "localhost:6379").unwrap_err();
        assert!(message.contains("REDIS_URL=localhost:6379"), "{message}");
    }
}
