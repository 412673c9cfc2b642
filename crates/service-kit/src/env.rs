//! Typed configuration from environment variables.
//!
//! Every getter either returns a value (the variable's, or the default when it is unset or
//! empty) or an [`EnvError`] whose message is one line naming the variable, the value and
//! what would have been accepted: `invalid PORT="80a": expected a port number (0-65535)`.
//! Secrets are never echoed: [`Env::secret`] errors leave the value out.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Where variables come from: the process environment, or a map in tests.
pub struct Env {
    lookup: Lookup,
}

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A variable whose value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {var}={value:?}: expected {expected}")]
pub struct EnvError {
    /// The variable's name.
    pub var: String,
    /// The value found (`"<redacted>"` for secrets).
    pub value: String,
    /// What the variable accepts.
    pub expected: String,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Env {
        Env {
            lookup: Box::new(|name| std::env::var(name).ok()),
        }
    }

    /// Reads from a map (tests, or configuration assembled by the caller).
    pub fn from_map<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        let map: HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Env {
            lookup: Box::new(move |name| map.get(name).cloned()),
        }
    }

    /// The raw value; unset and empty (after trimming) are both `None`.
    pub fn raw(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    /// A string, or `None` when unset.
    pub fn string(&self, var: &str) -> Option<String> {
        self.raw(var)
    }

    /// A secret (password, token, URL with credentials): like [`Env::string`], but the
    /// value is kept out of `Debug` output by [`Secret`].
    pub fn secret(&self, var: &str) -> Option<Secret> {
        self.raw(var).map(Secret)
    }

    /// Any [`FromStr`] value, or `default` when unset; `expected` says what is accepted.
    pub fn parse_or<T: FromStr>(
        &self,
        var: &str,
        default: T,
        expected: &str,
    ) -> Result<T, EnvError> {
        Ok(self.parse(var, expected)?.unwrap_or(default))
    }

    /// Any [`FromStr`] value, or `None` when unset.
    pub fn parse<T: FromStr>(&self, var: &str, expected: &str) -> Result<Option<T>, EnvError> {
        match self.raw(var) {
            None => Ok(None),
            Some(value) => value
                .parse()
                .map(Some)
                .map_err(|_| EnvError::new(var, &value, expected)),
        }
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`), or `default` when unset.
    pub fn bool_or(&self, var: &str, default: bool) -> Result<bool, EnvError> {
        match self.raw(var) {
            None => Ok(default),
            Some(value) => match value.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(EnvError::new(var, &value, "true or false")),
            },
        }
    }

    /// A duration with a unit (`250ms`, `5s`, `2m`, `1h`, `7d`), or `default` when unset.
    pub fn duration_or(&self, var: &str, default: Duration) -> Result<Duration, EnvError> {
        match self.raw(var) {
            None => Ok(default),
            Some(value) => parse_duration(&value).ok_or_else(|| {
                EnvError::new(var, &value, "a duration such as 250ms, 5s, 2m, 1h or 7d")
            }),
        }
    }

    /// A size in bytes (`65536`, `64KiB`, `10MiB`, `1GiB`, also `kB`/`MB`/`GB`), or
    /// `default` when unset.
    pub fn bytes_or(&self, var: &str, default: u64) -> Result<u64, EnvError> {
        match self.raw(var) {
            None => Ok(default),
            Some(value) => parse_bytes(&value).ok_or_else(|| {
                EnvError::new(var, &value, "a size such as 65536, 64KiB, 10MiB or 1GiB")
            }),
        }
    }

    /// One of a fixed set of words, or `default` when unset.
    pub fn choice_or<'a>(
        &self,
        var: &str,
        choices: &[&'a str],
        default: &'a str,
    ) -> Result<&'a str, EnvError> {
        match self.raw(var) {
            None => Ok(default),
            Some(value) => choices
                .iter()
                .find(|choice| choice.eq_ignore_ascii_case(&value))
                .copied()
                .ok_or_else(|| {
                    EnvError::new(var, &value, &format!("one of {}", choices.join(", ")))
                }),
        }
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env").finish_non_exhaustive()
    }
}

impl EnvError {
    /// An error for `var` holding `value`, which should have been `expected`.
    pub fn new(var: &str, value: &str, expected: &str) -> EnvError {
        EnvError {
            var: var.to_owned(),
            value: value.to_owned(),
            expected: expected.to_owned(),
        }
    }

    /// An error that does not echo the value (for secrets).
    pub fn redacted(var: &str, expected: &str) -> EnvError {
        EnvError::new(var, "<redacted>", expected)
    }
}

/// A secret value: usable with [`Secret::expose`], shown as `<redacted>` by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that needs it (a connection string).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Parses `250ms`, `5s`, `2m`, `1h`, `7d` (a number and a unit, no spaces required).
pub fn parse_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    let split = value.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86_400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Parses a byte size: a plain number of bytes or a number with a unit
/// (`KiB`, `MiB`, `GiB`, `kB`, `MB`, `GB`, `B`).
pub fn parse_bytes(value: &str) -> Option<u64> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_and_empty_values_take_the_default() {
        let env = Env::from_map([("EMPTY", "  ")]);
        assert_eq!(env.parse_or("EMPTY", 7u16, "a port").unwrap(), 7);
        assert_eq!(env.parse_or("MISSING", 8u16, "a port").unwrap(), 8);
    }

    #[test]
    fn bad_values_name_the_variable_and_the_accepted_values() {
        let env = Env::from_map([("PORT", "80a"), ("FLAG", "maybe"), ("MODE", "x")]);
        let error = env
            .parse::<u16>("PORT", "a port number (0-65535)")
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"invalid PORT="80a": expected a port number (0-65535)"#
        );
        assert_eq!(
            env.bool_or("FLAG", false).unwrap_err().to_string(),
            r#"invalid FLAG="maybe": expected true or false"#
        );
        assert_eq!(
            env.choice_or("MODE", &["http", "redis"], "http")
                .unwrap_err()
                .to_string(),
            r#"invalid MODE="x": expected one of http, redis"#
        );
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("-5s"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn byte_sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_bytes("65536"), Some(65_536));
        assert_eq!(parse_bytes("64KiB"), Some(65_536));
        assert_eq!(parse_bytes("10MB"), Some(10_000_000));
        assert_eq!(parse_bytes("1GiB"), Some(1 << 30));
        assert_eq!(parse_bytes("1 GiB"), Some(1 << 30));
        assert_eq!(parse_bytes("1TiB"), None);
        assert_eq!(parse_bytes("99999999999999999999GiB"), None);
    }

    #[test]
    fn secrets_are_not_printed() {
        let env = Env::from_map([("DATABASE_URL", "postgres://u:pw@h/db")]);
        let secret = env.secret("DATABASE_URL").unwrap();
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(secret.expose(), "postgres://u:pw@h/db");
    }
}
