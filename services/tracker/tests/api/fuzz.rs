//! The OTLP decoder and converter never panic: arbitrary bytes, and valid messages with
//! random bytes flipped, truncated or inserted, plain and gzip.

use axum::http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use prost::Message as _;
use tracker::ingest::{decode_request, otlp};

use crate::helpers::{frame_id, frame_spans, gzip_bytes};

const LIMIT: usize = 1 << 20;

fn headers(gzip: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-protobuf"),
    );
    if gzip {
        headers.insert("content-encoding", HeaderValue::from_static("gzip"));
    }
    headers
}

fn decode_and_convert(body: &[u8], gzip: bool) {
    if let Ok(request) = decode_request(&headers(gzip), body, LIMIT) {
        let conversion = otlp::convert(&request);
        assert_eq!(
            conversion.spans,
            conversion.events.len() as u64 + conversion.dropped + conversion.rejected
        );
        let _ = conversion.response().encode_to_vec();
    }
}

fn valid_message() -> Vec<u8> {
    let (capture, processing) = frame_spans(&frame_id("fuzz"), true);
    let mut request = capture;
    request.resource_spans.extend(processing.resource_spans);
    request.encode_to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), gzip in any::<bool>()) {
        decode_and_convert(&bytes, gzip);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
        truncate in any::<prop::sample::Index>(),
        gzip in any::<bool>(),
    ) {
        let mut bytes = valid_message();
        for (index, byte, kind) in edits {
            let at = index.index(bytes.len());
            match kind {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => { bytes.remove(at); }
            }
        }
        if truncate.index(4) == 0 {
            let keep = truncate.index(bytes.len() + 1);
            bytes.truncate(keep);
        }
        let body = if gzip { gzip_bytes(&bytes) } else { bytes };
        decode_and_convert(&body, gzip);
    }
}

#[test]
fn the_unmutated_message_decodes_into_three_events() {
    let request = decode_request(&headers(false), &valid_message(), LIMIT).unwrap();
    let conversion = otlp::convert(&request);
    assert_eq!(conversion.events.len(), 3);
    assert_eq!(conversion.rejected, 0);
}
