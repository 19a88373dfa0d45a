//! Property tests of the extractors: records with random bytes, huge values, null keys, null
//! values and odd headers (empty names, repeated names, null and non-UTF-8 values) go through
//! every extractor. None may panic; each result must match a simple model of what the
//! extractor promises, and every decode failure must be an `Err(ExtractError::...)`.

use bytes::Bytes;
use kafka_listener::{
    ConsumerRecord, ExtractError, FromRecord, Headers, Json, Key, ListenerContext,
    ProducerTemplate, RecordMeta,
};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// `n` cases, scaled by `PROPTEST_CASES` (relative to proptest's default of 256) when set.
fn cases(n: u32) -> ProptestConfig {
    let scaled = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|c| (u64::from(n) * c / 256).clamp(1, u64::from(u32::MAX)) as u32);
    ProptestConfig {
        cases: scaled.unwrap_or(n),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn cx() -> ListenerContext {
    ListenerContext::for_tests("p")
}

/// The shape handlers typically decode into.
#[derive(Debug, serde::Deserialize, PartialEq)]
#[allow(dead_code)] // fields are only compared through Debug/PartialEq
struct Order {
    id: String,
    amount_cents: i64,
    customer: Option<String>,
}

/// What a handler author may reasonably send: JSON of the right shape, of the wrong shape,
/// text, and random bytes.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..256),
        2 => (any::<String>(), any::<i64>(), proptest::option::of(any::<String>())).prop_map(|(id, amount, customer)| {
            serde_json::json!({ "id": id, "amount_cents": amount, "customer": customer }).to_string().into_bytes()
        }),
        1 => prop::sample::select(vec![
            "", "null", "{}", "[]", "\"x\"", "1", "-0", "1e999", "{\"id\":1}", "{\"id\":\"a\",\"amount_cents\":1.5}",
            "{\"id\":\"a\",\"amount_cents\":1}", "{\"id\":\"a\",\"amount_cents\":1,\"customer\":null,\"extra\":[1,2]}",
            "{\"id\":\"\\ud800\",\"amount_cents\":1}", "\u{feff}{}", "{\"id\":\"a\"", "\"\\u0000\"",
        ]).prop_map(|s| s.as_bytes().to_vec()),
        1 => any::<String>().prop_map(String::into_bytes),
        1 => (1usize..2000).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
    ]
}

/// Headers: empty, repeated and unicode names; null, empty, binary and non-UTF-8 values.
fn headers() -> impl Strategy<Value = Vec<(String, Option<Vec<u8>>)>> {
    let name = prop_oneof![
        2 => Just(String::new()),
        2 => prop::sample::select(vec!["a", "A", "kafka_dlt-exception-message", "traceparent"]).prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    let value = proptest::option::of(prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..64),
        1 => Just(vec![0xff, 0xfe, 0x00]),
        1 => Just(Vec::new()),
    ]);
    prop::collection::vec((name, value), 0..12)
}

fn record(
    topic: &str,
    partition: i32,
    offset: i64,
    key: &Option<Vec<u8>>,
    value: &Option<Vec<u8>>,
    headers: &[(String, Option<Vec<u8>>)],
) -> ConsumerRecord {
    let mut r = ConsumerRecord::new(topic, partition, offset);
    if let Some(k) = key {
        r = r.with_key(k.clone());
    }
    if let Some(v) = value {
        r = r.with_value(v.clone());
    }
    for (name, v) in headers {
        r = r.with_header(name, v.clone());
    }
    r
}

/// The model of a required payload extractor: null is `missing`, anything else goes to `decode`.
fn expect_payload<T: std::fmt::Debug + PartialEq>(
    got: Result<T, ExtractError>,
    bytes: Option<&[u8]>,
    part: &'static str,
    decode: impl Fn(&[u8]) -> Option<T>,
) -> Result<(), TestCaseError> {
    match (bytes, got) {
        (None, Err(ExtractError::NullValue)) if part == "value" => Ok(()),
        (None, Err(ExtractError::NullKey)) if part == "key" => Ok(()),
        (Some(b), Ok(v)) => {
            prop_assert_eq!(Some(v), decode(b), "decoded differently from the model");
            Ok(())
        }
        (
            Some(b),
            Err(ExtractError::Decode {
                part: p,
                target,
                source,
            }),
        ) => {
            prop_assert_eq!(p, part);
            prop_assert!(!target.is_empty());
            prop_assert!(!source.to_string().is_empty());
            prop_assert!(decode(b).is_none(), "rejected input the model decodes");
            Ok(())
        }
        (b, got) => Err(TestCaseError::fail(format!(
            "{part} {:?}: unexpected outcome {got:?}",
            b.map(|b| b.len())
        ))),
    }
}

fn utf8(b: &[u8]) -> Option<String> {
    std::str::from_utf8(b).ok().map(str::to_owned)
}

fn json<T: serde::de::DeserializeOwned>(b: &[u8]) -> Option<Json<T>> {
    serde_json::from_slice(b).ok().map(Json)
}

/// Runs every extractor on `r` and checks each against the model.
fn check_all(r: &ConsumerRecord) -> Result<(), TestCaseError> {
    let cx = cx();
    let (key, value) = (r.key(), r.value());

    // Value payloads.
    expect_payload(Bytes::from_record(r, &cx), value, "value", |b| {
        Some(Bytes::copy_from_slice(b))
    })?;
    expect_payload(Vec::<u8>::from_record(r, &cx), value, "value", |b| {
        Some(b.to_vec())
    })?;
    expect_payload(String::from_record(r, &cx), value, "value", utf8)?;
    expect_payload(
        Json::<serde_json::Value>::from_record(r, &cx),
        value,
        "value",
        json,
    )?;
    expect_payload(Json::<Order>::from_record(r, &cx), value, "value", json)?;
    expect_payload(Json::<String>::from_record(r, &cx), value, "value", json)?;
    expect_payload(Json::<u64>::from_record(r, &cx), value, "value", json)?;

    // Optional value payloads: null is `Ok(None)`, the rest as the inner extractor.
    match (value, Option::<String>::from_record(r, &cx)) {
        (None, Ok(None)) => {}
        (Some(b), Ok(Some(s))) => prop_assert_eq!(Some(s), utf8(b)),
        (Some(b), Err(ExtractError::Decode { .. })) => prop_assert!(utf8(b).is_none()),
        (b, got) => prop_assert!(
            false,
            "Option<String> on {:?}: {:?}",
            b.map(<[u8]>::len),
            got
        ),
    }
    match (value, Option::<Json<Order>>::from_record(r, &cx)) {
        (None, Ok(None)) => {}
        (Some(b), Ok(Some(o))) => prop_assert_eq!(Some(o), json::<Order>(b)),
        (Some(b), Err(ExtractError::Decode { .. })) => prop_assert!(json::<Order>(b).is_none()),
        (b, got) => prop_assert!(
            false,
            "Option<Json<Order>> on {:?}: {:?}",
            b.map(<[u8]>::len),
            got
        ),
    }
    let bytes_opt = Option::<Bytes>::from_record(r, &cx);
    prop_assert!(
        matches!(&bytes_opt, Ok(v) if v.as_deref() == value),
        "{bytes_opt:?}"
    );
    let vec_opt = Option::<Vec<u8>>::from_record(r, &cx);
    prop_assert!(
        matches!(&vec_opt, Ok(v) if v.as_deref() == value),
        "{vec_opt:?}"
    );

    // Keys.
    expect_payload(
        Key::<String>::from_record(r, &cx).map(Key::into_inner),
        key,
        "key",
        utf8,
    )?;
    expect_payload(
        Key::<Vec<u8>>::from_record(r, &cx).map(Key::into_inner),
        key,
        "key",
        |b| Some(b.to_vec()),
    )?;
    expect_payload(
        Key::<Bytes>::from_record(r, &cx).map(Key::into_inner),
        key,
        "key",
        |b| Some(Bytes::copy_from_slice(b)),
    )?;
    expect_payload(
        Key::<Json<serde_json::Value>>::from_record(r, &cx).map(Key::into_inner),
        key,
        "key",
        json,
    )?;
    match (key, Key::<Option<String>>::from_record(r, &cx)) {
        (None, Ok(Key(None))) => {}
        (Some(b), Ok(Key(Some(s)))) => prop_assert_eq!(Some(s), utf8(b)),
        (Some(b), Err(ExtractError::Decode { part: "key", .. })) => prop_assert!(utf8(b).is_none()),
        (b, got) => prop_assert!(false, "Key<Option<String>> on {:?}: {:?}", b, got),
    }
    let key_json_opt = Key::<Option<Json<Order>>>::from_record(r, &cx);
    match (key, &key_json_opt) {
        (None, Ok(Key(None))) => {}
        (Some(b), Ok(Key(Some(_)))) => prop_assert!(json::<Order>(b).is_some()),
        (Some(b), Err(ExtractError::Decode { part: "key", .. })) => {
            prop_assert!(json::<Order>(b).is_none())
        }
        (b, got) => prop_assert!(false, "Key<Option<Json<Order>>> on {:?}: {:?}", b, got),
    }

    // Whole-record extractors never fail and carry everything through.
    let headers = Headers::from_record(r, &cx).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&headers, r.headers());
    prop_assert_eq!(headers.len(), r.headers().iter().count());
    prop_assert_eq!(headers.is_empty(), headers.iter().count() == 0);
    for (name, v) in headers.iter() {
        // `last` is the last header of that name; `last_str` its UTF-8 text, if any.
        let last = headers
            .iter()
            .filter(|(n, _)| *n == name)
            .last()
            .map(|(_, v)| v);
        prop_assert_eq!(headers.last(name), last);
        let text = last.flatten().and_then(|b| std::str::from_utf8(b).ok());
        prop_assert_eq!(headers.last_str(name), text);
        let _ = v;
    }
    let meta = RecordMeta::from_record(r, &cx).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&*meta.topic, r.topic());
    prop_assert_eq!(meta.partition, r.partition());
    prop_assert_eq!(meta.offset, r.offset());
    prop_assert_eq!(meta.key.as_deref(), key);
    let whole =
        ConsumerRecord::from_record(r, &cx).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(whole.key(), key);
    prop_assert_eq!(whole.value(), value);
    prop_assert_eq!(whole.headers(), r.headers());
    prop_assert_eq!(
        (whole.topic(), whole.partition(), whole.offset()),
        (r.topic(), r.partition(), r.offset())
    );

    // No producer in a test context: the error path, not a panic.
    prop_assert!(matches!(
        ProducerTemplate::from_record(r, &cx),
        Err(ExtractError::Unavailable(_))
    ));
    Ok(())
}

proptest! {
    #![proptest_config(cases(512))]

    /// Random records through every extractor.
    #[test]
    fn every_extractor_handles_random_records(
        topic in prop_oneof![Just(String::new()), any::<String>()],
        partition in any::<i32>(),
        offset in any::<i64>(),
        key in proptest::option::of(payload()),
        value in proptest::option::of(payload()),
        headers in headers(),
    ) {
        check_all(&record(&topic, partition, offset, &key, &value, &headers))?;
    }

    /// Every error message is printable, and `source()` chains end.
    #[test]
    fn extract_errors_display_and_chain(value in proptest::option::of(payload())) {
        let r = record("t", 0, 0, &None, &value, &[]);
        let errors = [
            Json::<Order>::from_record(&r, &cx()).err(),
            String::from_record(&r, &cx()).err(),
            Key::<String>::from_record(&r, &cx()).err(),
        ];
        for e in errors.into_iter().flatten() {
            prop_assert!(!e.to_string().is_empty());
            let mut depth = 0;
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                prop_assert!(!s.to_string().is_empty());
                depth += 1;
                prop_assert!(depth < 16, "source chain too deep");
                source = s.source();
            }
        }
    }
}

/// Kinds of huge payloads: random bytes, one huge valid JSON order, huge UTF-8 text, and
/// very deep JSON nesting (which must be refused, not overflow the stack).
fn huge(size: usize, seed: u64, kind: u8) -> Vec<u8> {
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    match kind % 4 {
        0 => (0..size).map(|_| next() as u8).collect(),
        1 => {
            let filler: String = (0..size)
                .map(|_| char::from(b'a' + (next() % 26) as u8))
                .collect();
            serde_json::json!({ "id": filler, "amount_cents": 1, "customer": null })
                .to_string()
                .into_bytes()
        }
        2 => "é€😀x".repeat(size / 10 + 1).into_bytes(),
        _ => {
            let depth = size / 2;
            let mut v = "[".repeat(depth).into_bytes();
            v.extend(std::iter::repeat_n(b']', depth));
            v
        }
    }
}

proptest! {
    #![proptest_config(cases(12))]

    /// 1-4 MiB values and keys through every extractor.
    #[test]
    fn huge_values_and_keys(
        size in (1usize << 20)..=(4usize << 20),
        seed in any::<u64>(),
        kind in any::<u8>(),
        as_key in any::<bool>(),
    ) {
        let big = huge(size, seed, kind);
        let small = Some(b"{\"id\":\"k\",\"amount_cents\":1}".to_vec());
        let (key, value) = if as_key { (Some(big), small) } else { (small, Some(big)) };
        check_all(&record("big", 0, 0, &key, &value, &[("".into(), None)]))?;
    }
}

#[test]
fn a_huge_valid_order_decodes() {
    let v = huge(2 << 20, 7, 1);
    let r = ConsumerRecord::new("t", 0, 0).with_value(v);
    let Json(order) = Json::<Order>::from_record(&r, &cx()).expect("a valid 2 MiB order decodes");
    assert!(order.id.len() >= 2 << 20);
}
