//! UTC calendar arithmetic for frame ids and metadata timestamps, without a date-time
//! dependency.
//!
//! The conversions are Howard Hinnant's `days_from_civil` / `civil_from_days` algorithms
//! (proleptic Gregorian calendar), restricted to the years 1970..=9999 that the formats of
//! this crate can write.

/// The last instant the four-digit year formats can express: 9999-12-31T23:59:59.999Z, in
/// milliseconds since the Unix epoch.
pub(crate) const MAX_UNIX_MILLIS: u64 = 253_402_300_799_999;

const MILLIS_PER_DAY: u64 = 86_400_000;

/// A UTC date and time of day, broken into calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub(crate) year: u32,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    pub(crate) millisecond: u32,
}

impl Civil {
    /// Breaks milliseconds since the Unix epoch into calendar fields.
    pub(crate) fn from_unix_millis(unix_millis: u64) -> Self {
        let days = unix_millis / MILLIS_PER_DAY;
        let millis_of_day = unix_millis % MILLIS_PER_DAY;
        let (year, month, day) = civil_from_days(days);
        // All quotients below are bounded by the day length, so the casts cannot truncate.
        let seconds_of_day = (millis_of_day / 1000) as u32;
        Civil {
            year,
            month,
            day,
            hour: seconds_of_day / 3600,
            minute: seconds_of_day / 60 % 60,
            second: seconds_of_day % 60,
            millisecond: (millis_of_day % 1000) as u32,
        }
    }

    /// Milliseconds since the Unix epoch, or `None` when a field is out of range (month 13,
    /// February 30th, hour 24, a year before 1970 or after 9999, ...).
    pub(crate) fn to_unix_millis(self) -> Option<u64> {
        if !(1970..=9999).contains(&self.year)
            || !(1..=12).contains(&self.month)
            || self.day == 0
            || self.day > days_in_month(self.year, self.month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 59
            || self.millisecond > 999
        {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let seconds = u64::from(self.hour * 3600 + self.minute * 60 + self.second);
        Some(days * MILLIS_PER_DAY + seconds * 1000 + u64::from(self.millisecond))
    }
}

/// The number of days in `month` (1..=12) of `year`.
pub(crate) fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn is_leap_year(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// Days since 1970-01-01 for a date from 1970 on.
fn days_from_civil(year: u32, month: u32, day: u32) -> u64 {
    let year = u64::from(if month <= 2 { year - 1 } else { year });
    let era = year / 400;
    let year_of_era = year - era * 400;
    let month = u64::from(month);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + u64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719_468 is the number of days from 0000-03-01 to 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` days after 1970-01-01.
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    // Callers pass at most MAX_UNIX_MILLIS worth of days, so the year fits in a u32.
    (year as u32, month as u32, day as u32)
}

/// Writes `value` as exactly `N` decimal digits (the caller guarantees it fits).
pub(crate) fn write_digits<const N: usize>(out: &mut [u8], value: u32) {
    let mut value = value;
    for slot in out[..N].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Reads a run of ASCII decimal digits; `None` if any byte is not a digit.
pub(crate) fn read_digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |acc, &byte| {
        byte.is_ascii_digit()
            .then(|| acc * 10 + u32::from(byte - b'0'))
    })
}

/// Serde helpers for a [`SystemTime`] as an RFC 3339 UTC string with nanoseconds,
/// `2026-11-21T10:15:30.123456789Z`.
///
/// Reading accepts 0 to 9 fraction digits and `Z` (or `z`) only: every timestamp this
/// crate writes is UTC, and a numeric offset is refused rather than guessed at.
pub(crate) mod rfc3339 {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer, de, ser};

    use crate::time::{Civil, MAX_UNIX_MILLIS, read_digits, write_digits};

    /// Writes `time` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
    pub(crate) fn serialize<S: Serializer>(
        time: &SystemTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let text = format(*time).ok_or_else(|| {
            ser::Error::custom("timestamp is before 1970 or after 9999, which cannot be written")
        })?;
        serializer.serialize_str(&text)
    }

    /// Reads an RFC 3339 UTC timestamp.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<SystemTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        parse(&text).ok_or_else(|| {
            de::Error::custom(format_args!(
                "timestamp {text:?} is not an RFC 3339 UTC time like 2026-11-21T10:15:30.123Z from 1970 on"
            ))
        })
    }

    pub(crate) fn format(time: SystemTime) -> Option<String> {
        let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
        let millis = since_epoch.as_secs().checked_mul(1000)?;
        if millis > MAX_UNIX_MILLIS {
            return None;
        }
        let civil = Civil::from_unix_millis(millis);
        let mut out = *b"0000-00-00T00:00:00.000000000Z";
        write_digits::<4>(&mut out[0..4], civil.year);
        write_digits::<2>(&mut out[5..7], civil.month);
        write_digits::<2>(&mut out[8..10], civil.day);
        write_digits::<2>(&mut out[11..13], civil.hour);
        write_digits::<2>(&mut out[14..16], civil.minute);
        write_digits::<2>(&mut out[17..19], civil.second);
        write_digits::<9>(&mut out[20..29], since_epoch.subsec_nanos());
        String::from_utf8(out.to_vec()).ok()
    }

    pub(crate) fn parse(text: &str) -> Option<SystemTime> {
        let bytes = text.as_bytes();
        if bytes.len() < 20
            || bytes[4] != b'-'
            || bytes[7] != b'-'
            || !matches!(bytes[10], b'T' | b't')
            || bytes[13] != b':'
            || bytes[16] != b':'
            || !matches!(bytes[bytes.len() - 1], b'Z' | b'z')
        {
            return None;
        }
        let fraction = &bytes[19..bytes.len() - 1];
        let nanos = match fraction {
            [] => 0,
            [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
                read_digits(digits)? * 10u32.pow(9 - digits.len() as u32)
            }
            _ => return None,
        };
        let millis = Civil {
            year: read_digits(&bytes[0..4])?,
            month: read_digits(&bytes[5..7])?,
            day: read_digits(&bytes[8..10])?,
            hour: read_digits(&bytes[11..13])?,
            minute: read_digits(&bytes[14..16])?,
            second: read_digits(&bytes[17..19])?,
            millisecond: 0,
        }
        .to_unix_millis()?;
        Some(UNIX_EPOCH + Duration::from_millis(millis) + Duration::from_nanos(u64::from(nanos)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn epoch_is_first_of_january_1970() {
        let civil = Civil::from_unix_millis(0);
        assert_eq!(
            (civil.year, civil.month, civil.day, civil.hour),
            (1970, 1, 1, 0)
        );
    }

    #[test]
    fn known_instant_converts_both_ways() {
        // 2026-11-21T10:15:30.123Z
        let millis = 1_795_256_130_123;
        let civil = Civil::from_unix_millis(millis);
        assert_eq!(
            civil,
            Civil {
                year: 2026,
                month: 11,
                day: 21,
                hour: 10,
                minute: 15,
                second: 30,
                millisecond: 123
            }
        );
        assert_eq!(civil.to_unix_millis(), Some(millis));
    }

    #[test]
    fn conversion_round_trips_across_the_supported_range() {
        let step = MAX_UNIX_MILLIS / 10_007;
        let mut millis = 0;
        while millis <= MAX_UNIX_MILLIS {
            assert_eq!(
                Civil::from_unix_millis(millis).to_unix_millis(),
                Some(millis)
            );
            millis += step;
        }
        let last = Civil::from_unix_millis(MAX_UNIX_MILLIS);
        assert_eq!((last.year, last.month, last.day), (9999, 12, 31));
    }

    #[test]
    fn impossible_dates_are_rejected() {
        let valid = Civil::from_unix_millis(0);
        let february_29_2025 = Civil {
            year: 2025,
            month: 2,
            day: 29,
            ..valid
        };
        let february_29_2024 = Civil {
            year: 2024,
            month: 2,
            day: 29,
            ..valid
        };
        assert_eq!(february_29_2025.to_unix_millis(), None);
        assert!(february_29_2024.to_unix_millis().is_some());
        assert_eq!(Civil { month: 13, ..valid }.to_unix_millis(), None);
        assert_eq!(Civil { hour: 24, ..valid }.to_unix_millis(), None);
        assert_eq!(
            Civil {
                year: 1969,
                ..valid
            }
            .to_unix_millis(),
            None
        );
    }

    #[test]
    fn digits_are_written_zero_padded_and_read_back() {
        let mut buf = [0u8; 4];
        write_digits::<4>(&mut buf, 42);
        assert_eq!(&buf, b"0042");
        assert_eq!(read_digits(&buf), Some(42));
        assert_eq!(read_digits(b"4a"), None);
    }

    #[test]
    fn rfc3339_writes_nanoseconds_and_reads_them_back() {
        let time = UNIX_EPOCH + Duration::new(1_795_256_130, 123_456_789);
        let text = rfc3339::format(time).unwrap();
        assert_eq!(text, "2026-11-21T10:15:30.123456789Z");
        assert_eq!(rfc3339::parse(&text), Some(time));
    }

    #[test]
    fn rfc3339_reads_short_fractions_and_lowercase_separators() {
        let base = UNIX_EPOCH + Duration::from_secs(1_795_256_130);
        assert_eq!(rfc3339::parse("2026-11-21T10:15:30Z"), Some(base));
        assert_eq!(
            rfc3339::parse("2026-11-21t10:15:30.5z"),
            Some(base + Duration::from_millis(500))
        );
    }

    #[test]
    fn rfc3339_refuses_offsets_and_malformed_text() {
        for text in [
            "",
            "2026-11-21T10:15:30+01:00",
            "2026-11-21T10:15:30.Z",
            "2026-11-21T10:15:30.1234567890Z",
            "2026-11-21 10:15:30Z",
            "2026-02-30T10:15:30Z",
            "1969-12-31T23:59:59Z",
            "2026-11-21T10:15:3éZ",
        ] {
            assert_eq!(rfc3339::parse(text), None, "{text}");
        }
        assert_eq!(rfc3339::format(UNIX_EPOCH - Duration::from_secs(1)), None);
    }
}
