//! W3C Trace Context: `traceparent` and `tracestate` parsed by one parser that follows
//! the specification rule by rule, `traceparent` written by hand, and the [`Propagator`]
//! that `OTEL_PROPAGATORS` configures, built on both. The frame-tracking crate's carriers
//! use the same parser, so a context reads the same over HTTP and over a queue.
//!
//!
//! The parser implements [Trace Context Level 2] (which accepts everything Level 1 does):
//!
//! - `traceparent` is `version-traceid-parentid-flags` in lowercase hex. Version `ff` is
//!   invalid. Version `00` must be exactly 55 characters. A higher version is parsed by the
//!   `00` layout from its first 55 characters, which must be followed by `-` or the end.
//!   An all-zero trace id or span id is invalid. Optional whitespace around the whole value
//!   (spaces and tabs, as HTTP allows around a field value) is ignored; anything else
//!   outside the layout is an error.
//! - Only the flags Level 2 defines (`sampled` 0x01, `random` 0x02) are kept; the others are
//!   reserved and vendors must not propagate them set.
//! - `tracestate` is a comma-separated list of `key=value` members with optional spaces and
//!   tabs around members; empty members are skipped; several header values are combined in
//!   order as if joined by commas. Keys are a simple key (`lcalpha` then up to 255 of
//!   `[a-z0-9_*/-]`) or a multi-tenant key (`tenant@system`, tenant up to 241 characters
//!   starting with `[a-z0-9]`, system up to 14 starting with `lcalpha`). Values are 1 to 256
//!   printable ASCII characters except `,` and `=`, not ending in a space.
//! - A `tracestate` with more than 32 members, a duplicate key or any invalid member is
//!   invalid as a whole and dropped: the specification defines the list as at most 32
//!   members, and a vendor that cannot parse `tracestate` must not use any of it. This crate
//!   never truncates a received list.
//! - When `traceparent` is invalid, `tracestate` is dropped with it.
//!
//! [Trace Context Level 2]: https://www.w3.org/TR/trace-context-2/
//!
//! The [`Propagator`] reads and writes `traceparent`/`tracestate` with these functions
//! and hands `baggage` to the SDK's `BaggagePropagator`. The SDK's own trace-context
//! propagator splits the header into a `Vec`, parses with `from_str_radix` and formats
//! with `format!`: about 4,000 instructions for each request that carries a context,
//! against a few hundred here. It is also more lenient than the specification (it takes
//! ids shorter than 32 and 16 digits, for example); this one is exact.

use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::{FieldIter, TextMapPropagator};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::propagation::BaggagePropagator;

use crate::config::PropagatorsConfig;

/// The header (and carrier key) of the parent span context.
pub const TRACEPARENT: &str = "traceparent";
/// The header (and carrier key) of the vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";
/// The header of W3C baggage.
const BAGGAGE: &str = "baggage";

/// The most list members a `tracestate` may have.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Why a `traceparent` or `tracestate` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// No `traceparent` was present.
    #[error("traceparent is missing")]
    MissingTraceparent,
    /// More than one `traceparent` value was present.
    #[error("traceparent appears {count} times, expected once")]
    DuplicateTraceparent {
        /// How many values were present.
        count: usize,
    },
    /// The `traceparent` is shorter than the 55 characters of the version `00` layout.
    #[error("traceparent is {len} bytes long, at least 55 are required")]
    TraceparentTooShort {
        /// Its length in bytes.
        len: usize,
    },
    /// A version `00` `traceparent` is not exactly 55 characters.
    #[error("traceparent version 00 is {len} bytes long, exactly 55 are required")]
    TraceparentWrongLength {
        /// Its length in bytes.
        len: usize,
    },
    /// The version is not two lowercase hex digits.
    #[error("traceparent version is not two lowercase hex digits")]
    InvalidVersion,
    /// The version is `ff`, which the specification forbids.
    #[error("traceparent version ff is forbidden")]
    ForbiddenVersion,
    /// A `-` separator is missing where the layout requires one.
    #[error("traceparent has no '-' at byte {position}")]
    MissingDelimiter {
        /// The byte offset where `-` was expected.
        position: usize,
    },
    /// A field is not lowercase hex of the right length.
    #[error("traceparent {field} is not {digits} lowercase hex digits")]
    InvalidHex {
        /// The field (`trace id`, `span id` or `flags`).
        field: &'static str,
        /// How many digits it must have.
        digits: usize,
    },
    /// The trace id is all zeros.
    #[error("traceparent trace id is all zeros")]
    ZeroTraceId,
    /// The span id is all zeros.
    #[error("traceparent span id is all zeros")]
    ZeroSpanId,
    /// A higher-version `traceparent` has data after the 55 characters not separated by `-`.
    #[error("traceparent has data after byte 55 not separated by '-'")]
    TrailingData,
    /// The `tracestate` has more than 32 members.
    #[error("tracestate has {count} list members, at most 32 are allowed")]
    TooManyTracestateMembers {
        /// How many non-empty members it has.
        count: usize,
    },
    /// A `tracestate` member has no `=`.
    #[error("tracestate member {index} has no '='")]
    TracestateMemberWithoutEquals {
        /// The zero-based index among non-empty members.
        index: usize,
    },
    /// A `tracestate` key breaks the key grammar.
    #[error("tracestate member {index} has an invalid key")]
    InvalidTracestateKey {
        /// The zero-based index among non-empty members.
        index: usize,
    },
    /// A `tracestate` value breaks the value grammar.
    #[error("tracestate member {index} has an invalid value")]
    InvalidTracestateValue {
        /// The zero-based index among non-empty members.
        index: usize,
    },
    /// Two `tracestate` members have the same key.
    #[error("tracestate member {index} repeats an earlier key")]
    DuplicateTracestateKey {
        /// The zero-based index of the repeat among non-empty members.
        index: usize,
    },
}

/// The flags Trace Context Level 2 defines: `sampled` and `random`.
pub const KNOWN_FLAGS: u8 = 0x03;
/// The length of a version-00 `traceparent`: `00-{32 hex}-{16 hex}-{2 hex}`.
pub const TRACEPARENT_LEN: usize = 55;

/// Parses a `traceparent` value into its ids and the known flags.
pub fn parse_traceparent(value: &str) -> Result<(TraceId, SpanId, TraceFlags), ContextError> {
    let bytes = value.trim_matches([' ', '\t']).as_bytes();
    if bytes.len() < TRACEPARENT_LEN {
        return Err(ContextError::TraceparentTooShort { len: bytes.len() });
    }
    let version = parse_hex(&bytes[0..2]).ok_or(ContextError::InvalidVersion)?;
    if version == 0xff {
        return Err(ContextError::ForbiddenVersion);
    }
    if version == 0 && bytes.len() != TRACEPARENT_LEN {
        return Err(ContextError::TraceparentWrongLength { len: bytes.len() });
    }
    for position in [2, 35, 52] {
        if bytes[position] != b'-' {
            return Err(ContextError::MissingDelimiter { position });
        }
    }
    let trace_id = parse_hex(&bytes[3..35]).ok_or(ContextError::InvalidHex {
        field: "trace id",
        digits: 32,
    })?;
    let span_id = parse_hex(&bytes[36..52]).ok_or(ContextError::InvalidHex {
        field: "span id",
        digits: 16,
    })?;
    let flags = parse_hex(&bytes[53..55]).ok_or(ContextError::InvalidHex {
        field: "flags",
        digits: 2,
    })?;
    if bytes.len() > TRACEPARENT_LEN && bytes[TRACEPARENT_LEN] != b'-' {
        return Err(ContextError::TrailingData);
    }
    if trace_id == 0 {
        return Err(ContextError::ZeroTraceId);
    }
    if span_id == 0 {
        return Err(ContextError::ZeroSpanId);
    }
    // The slices are 32, 16 and 2 hex digits, so the values fit their types.
    Ok((
        TraceId::from(trace_id),
        SpanId::from(span_id as u64),
        TraceFlags::new(flags as u8 & KNOWN_FLAGS),
    ))
}

/// Lowercase hex digits (at most 32) to a number; `None` for any other byte.
fn parse_hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, &digit| {
        let value = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u128::from(value))
    })
}

/// Parses `tracestate` values received in order (as if joined by commas) by the rules in the
/// [module documentation](self).
///
/// ```
/// use telemetry::w3c::{ContextError, parse_tracestate};
///
/// let state = parse_tracestate(&["a=1, ,b@vendor=2 "])?;
/// assert_eq!(state.header(), "a=1,b@vendor=2");
/// assert_eq!(
///     parse_tracestate(&["a=1,a=2"]),
///     Err(ContextError::DuplicateTracestateKey { index: 1 }),
/// );
/// # Ok::<(), ContextError>(())
/// ```
pub fn parse_tracestate(values: &[&str]) -> Result<TraceState, ContextError> {
    let mut members: Vec<(&str, &str)> = Vec::new();
    let list_members = values
        .iter()
        .flat_map(|value| value.split(','))
        .map(|member| member.trim_matches([' ', '\t']))
        .filter(|member| !member.is_empty());
    for (index, member) in list_members.enumerate() {
        if index == MAX_TRACESTATE_MEMBERS {
            let count = values
                .iter()
                .flat_map(|value| value.split(','))
                .filter(|member| !member.trim_matches([' ', '\t']).is_empty())
                .count();
            return Err(ContextError::TooManyTracestateMembers { count });
        }
        let (key, value) = member
            .split_once('=')
            .ok_or(ContextError::TracestateMemberWithoutEquals { index })?;
        if !is_valid_tracestate_key(key) {
            return Err(ContextError::InvalidTracestateKey { index });
        }
        if !is_valid_tracestate_value(value) {
            return Err(ContextError::InvalidTracestateValue { index });
        }
        if members.iter().any(|&(seen, _)| seen == key) {
            return Err(ContextError::DuplicateTracestateKey { index });
        }
        members.push((key, value));
    }
    // Every member passed the stricter checks above, which the API's own validation accepts.
    TraceState::from_key_value(members).map_err(|_| ContextError::InvalidTracestateKey { index: 0 })
}

/// `[a-z0-9_*/-]`, the characters allowed after the first of a key part.
fn is_key_char(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'_' | b'-' | b'*' | b'/')
}

/// The `key` rule: a simple key, or `tenant@system`.
fn is_valid_tracestate_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    match key.split_once('@') {
        None => {
            (1..=256).contains(&bytes.len())
                && bytes[0].is_ascii_lowercase()
                && bytes[1..].iter().all(|&b| is_key_char(b))
        }
        Some((tenant, system)) => {
            let (tenant, system) = (tenant.as_bytes(), system.as_bytes());
            (1..=241).contains(&tenant.len())
                && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                && tenant[1..].iter().all(|&b| is_key_char(b))
                && (1..=14).contains(&system.len())
                && system[0].is_ascii_lowercase()
                && system[1..].iter().all(|&b| is_key_char(b))
        }
    }
}

/// The `value` rule: 1 to 256 of 0x20..=0x7E except `,` and `=`, not ending in a space.
fn is_valid_tracestate_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    (1..=256).contains(&bytes.len())
        && bytes
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        && bytes.last() != Some(&b' ')
}

/// The span context of a received `traceparent` and the `tracestate` values received with
/// it, in order: remote, with an empty trace state when `tracestate` is invalid (as the
/// specification requires) or absent. An invalid `traceparent` is an error.
///
/// ```
/// let context = telemetry::w3c::span_context(
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
///     &["congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7"],
/// )?;
/// assert!(context.is_remote() && context.is_sampled());
/// assert_eq!(context.trace_state().get("rojo"), Some("00f067aa0ba902b7"));
/// # Ok::<(), telemetry::w3c::ContextError>(())
/// ```
pub fn span_context(traceparent: &str, tracestate: &[&str]) -> Result<SpanContext, ContextError> {
    let (trace_id, span_id, flags) = parse_traceparent(traceparent)?;
    let trace_state = if tracestate.is_empty() {
        TraceState::NONE
    } else {
        parse_tracestate(tracestate).unwrap_or_default()
    };
    Ok(SpanContext::new(
        trace_id,
        span_id,
        flags,
        true,
        trace_state,
    ))
}

/// The two lowercase hex digits of every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [digits[byte >> 4], digits[byte & 0xf]];
        byte += 1;
    }
    pairs
};

/// Lowercase hex of `bytes` written to `out`, which is twice as long.
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
    }
}

/// The version-00 `traceparent` of a span context, with only the flags the specification
/// defines (the reserved ones must not be propagated set). Written by hand into an array:
/// this runs for every request and message.
///
/// ```
/// use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
///
/// let context = SpanContext::new(
///     TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736")?,
///     SpanId::from_hex("00f067aa0ba902b7")?,
///     TraceFlags::SAMPLED,
///     false,
///     TraceState::NONE,
/// );
/// assert_eq!(
///     &telemetry::w3c::format_traceparent(&context),
///     b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn format_traceparent(span_context: &SpanContext) -> [u8; TRACEPARENT_LEN] {
    let mut out = [b'-'; TRACEPARENT_LEN];
    out[0] = b'0';
    out[1] = b'0';
    write_hex(&mut out[3..35], &span_context.trace_id().to_bytes());
    write_hex(&mut out[36..52], &span_context.span_id().to_bytes());
    write_hex(
        &mut out[53..55],
        &[span_context.trace_flags().to_u8() & KNOWN_FLAGS],
    );
    out
}

/// [`format_traceparent`] as a `String`.
pub fn traceparent_string(span_context: &SpanContext) -> String {
    // Hex digits and '-' only: always UTF-8.
    String::from_utf8_lossy(&format_traceparent(span_context)).into_owned()
}

/// The propagators `OTEL_PROPAGATORS` asks for, in its order of precedence: W3C trace
/// context (with this module's parser and formatter) and W3C baggage (the SDK's).
///
/// ```
/// use std::collections::HashMap;
/// use opentelemetry::propagation::TextMapPropagator as _;
/// use opentelemetry::trace::TraceContextExt as _;
/// use telemetry::config::PropagatorsConfig;
/// use telemetry::w3c::Propagator;
///
/// let propagator = Propagator::new(PropagatorsConfig { tracecontext: true, baggage: false });
/// let mut carrier = HashMap::new();
/// carrier.insert(
///     "traceparent".to_owned(),
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
/// );
/// let cx = propagator.extract(&carrier);
/// assert_eq!(cx.span().span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
///
/// let mut out = HashMap::new();
/// propagator.inject_context(&cx, &mut out);
/// assert_eq!(out["traceparent"], carrier["traceparent"]);
/// ```
#[derive(Debug)]
pub struct Propagator {
    tracecontext: bool,
    baggage: Option<BaggagePropagator>,
    fields: Vec<String>,
}

impl Propagator {
    /// The propagators `config` enables; with none, extraction keeps the given context and
    /// injection writes nothing.
    pub fn new(config: PropagatorsConfig) -> Self {
        let mut fields = Vec::new();
        if config.tracecontext {
            fields.extend([TRACEPARENT.to_owned(), TRACESTATE.to_owned()]);
        }
        if config.baggage {
            fields.push(BAGGAGE.to_owned());
        }
        Self {
            tracecontext: config.tracecontext,
            baggage: config.baggage.then(BaggagePropagator::new),
            fields,
        }
    }

    /// Extraction from values already read: the `traceparent` and `tracestate` values,
    /// and the carrier for baggage when it holds any.
    pub(crate) fn extract_parts(
        &self,
        cx: &Context,
        traceparent: Option<&str>,
        tracestate: &[&str],
        baggage: Option<&dyn Extractor>,
    ) -> Context {
        let with_span = traceparent
            .filter(|_| self.tracecontext)
            .and_then(|traceparent| span_context(traceparent, tracestate).ok())
            .map(|span_context| cx.with_remote_span_context(span_context));
        match (&self.baggage, baggage) {
            (Some(propagator), Some(extractor)) => {
                propagator.extract_with_context(with_span.as_ref().unwrap_or(cx), extractor)
            }
            _ => with_span.unwrap_or_else(|| cx.clone()),
        }
    }
}

impl TextMapPropagator for Propagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        if self.tracecontext {
            let span = cx.span();
            let span_context = span.span_context();
            if span_context.is_valid() {
                injector.set(TRACEPARENT, traceparent_string(span_context));
                let trace_state = span_context.trace_state().header();
                if !trace_state.is_empty() {
                    injector.set(TRACESTATE, trace_state);
                }
            }
        }
        if let Some(baggage) = &self.baggage {
            baggage.inject_context(cx, injector);
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        let traceparent = self
            .tracecontext
            .then(|| extractor.get(TRACEPARENT))
            .flatten();
        let tracestate = match traceparent {
            Some(_) => extractor.get_all(TRACESTATE).unwrap_or_default(),
            None => Vec::new(),
        };
        self.extract_parts(cx, traceparent, &tracestate, Some(extractor))
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::baggage::BaggageExt as _;

    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn carrier(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn propagator(tracecontext: bool, baggage: bool) -> Propagator {
        Propagator::new(PropagatorsConfig {
            tracecontext,
            baggage,
        })
    }

    fn both() -> Propagator {
        propagator(true, true)
    }

    #[test]
    fn a_context_survives_injection_and_extraction() {
        let received = carrier(&[
            (TRACEPARENT, VALID),
            (TRACESTATE, "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"),
            (BAGGAGE, "user=alice"),
        ]);
        let cx = both().extract(&received);
        let span = cx.span();
        let span_context = span.span_context();
        assert!(span_context.is_remote() && span_context.is_sampled());
        assert_eq!(span_context.trace_state().get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(
            cx.baggage().get("user").map(|v| v.as_str().to_owned()),
            Some("alice".to_owned())
        );

        let mut sent = HashMap::new();
        both().inject_context(&cx, &mut sent);
        assert_eq!(sent[TRACEPARENT], VALID);
        assert_eq!(sent[TRACESTATE], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
        assert_eq!(sent[BAGGAGE], "user=alice");
    }

    #[test]
    fn what_the_specification_rejects_gives_no_parent() {
        for traceparent in [
            // Shorter ids, which the SDK's propagator takes.
            "00-4bf92f35-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "",
        ] {
            let cx = both().extract(&carrier(&[(TRACEPARENT, traceparent)]));
            assert!(!cx.has_active_span(), "{traceparent:?} was accepted");
        }
        // A later version may carry more after a '-'.
        let cx = both().extract(&carrier(&[(
            TRACEPARENT,
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more",
        )]));
        assert!(cx.span().span_context().is_valid());
    }

    #[test]
    fn an_invalid_tracestate_is_dropped_with_the_parent_kept() {
        let cx = both().extract(&carrier(&[(TRACEPARENT, VALID), (TRACESTATE, "a=1,a=2")]));
        let span = cx.span();
        assert!(span.span_context().is_valid());
        assert_eq!(span.span_context().trace_state().header(), "");
        let mut sent = HashMap::new();
        both().inject_context(&cx, &mut sent);
        assert!(
            !sent.contains_key(TRACESTATE),
            "an empty tracestate is not sent"
        );
    }

    #[test]
    fn disabled_propagators_neither_read_nor_write() {
        let received = carrier(&[(TRACEPARENT, VALID), (BAGGAGE, "user=alice")]);
        let none = propagator(false, false);
        let cx = none.extract(&received);
        assert!(!cx.has_active_span());
        assert_eq!(cx.baggage().len(), 0);
        assert_eq!(none.fields().count(), 0);

        let valid = both().extract(&received);
        let mut sent = HashMap::new();
        none.inject_context(&valid, &mut sent);
        assert!(sent.is_empty());

        let baggage_only = propagator(false, true);
        let cx = baggage_only.extract(&received);
        assert!(!cx.has_active_span());
        assert_eq!(cx.baggage().len(), 1);
        assert_eq!(baggage_only.fields().collect::<Vec<_>>(), [BAGGAGE]);
        assert_eq!(
            both().fields().collect::<Vec<_>>(),
            [TRACEPARENT, TRACESTATE, BAGGAGE]
        );
    }

    #[test]
    fn tracestate_keys_follow_the_key_grammar() {
        let valid = [
            "a",
            "foo",
            "foo_bar-baz*qux/1",
            &"a".repeat(256),
            "tenant@system",
            "0tenant@s",
            &format!("{}@{}", "t".repeat(241), "s".repeat(14)),
            "t@s0_-*/",
        ];
        for key in valid {
            assert!(is_valid_tracestate_key(key), "{key}");
        }
        let invalid = [
            "",
            "1abc",
            "_abc",
            "Abc",
            "abC",
            "a b",
            "a.b",
            &"a".repeat(257),
            "@system",
            "tenant@",
            "tenant@0sys",
            "_tenant@sys",
            "a@b@c",
            &format!("{}@s", "t".repeat(242)),
            &format!("t@{}", "s".repeat(15)),
            "é",
        ];
        for key in invalid {
            assert!(!is_valid_tracestate_key(key), "{key}");
        }
        assert_eq!(
            parse_tracestate(&["a=1,B=2"]),
            Err(ContextError::InvalidTracestateKey { index: 1 })
        );
    }

    #[test]
    fn tracestate_values_follow_the_value_grammar() {
        let valid = [
            "1",
            "t61rcWkgMzE",
            "a b",
            " leading",
            "!~\"#",
            &"v".repeat(256),
        ];
        for value in valid {
            assert!(is_valid_tracestate_value(value), "{value:?}");
        }
        let invalid = [
            "",
            "trailing ",
            "a,b",
            "a=b",
            "tab\t",
            "\u{7f}",
            "é",
            &"v".repeat(257),
        ];
        for value in invalid {
            assert!(!is_valid_tracestate_value(value), "{value:?}");
        }
        assert_eq!(
            parse_tracestate(&["a=1=2"]),
            Err(ContextError::InvalidTracestateValue { index: 0 })
        );
        assert_eq!(
            parse_tracestate(&["a="]),
            Err(ContextError::InvalidTracestateValue { index: 0 })
        );
        assert_eq!(
            parse_tracestate(&["a=1,b"]),
            Err(ContextError::TracestateMemberWithoutEquals { index: 1 })
        );
    }

    #[test]
    fn only_defined_flags_are_written() {
        let context = SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            SpanId::from(0x00f0_67aa_0ba9_02b7),
            TraceFlags::new(0xff),
            false,
            TraceState::NONE,
        );
        assert_eq!(
            traceparent_string(&context),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"
        );
    }
}
