//! Parsing and checking the attribute's arguments: `#[kafka_listener(topics = "orders", ...)]`.

use std::collections::HashSet;

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprArray, Ident, Lit, LitStr, Meta, Token};

use crate::suggest::{did_you_mean, normalize};

/// Attribute keys, named once so a typo is a compile error here rather than a silent mismatch.
pub(crate) mod kw {
    pub(crate) const ID: &str = "id";
    pub(crate) const TOPICS: &str = "topics";
    /// One topic: `topic = "orders"` is `topics = "orders"`.
    pub(crate) const TOPIC: &str = "topic";
    pub(crate) const GROUP_ID: &str = "group_id";
    pub(crate) const CONCURRENCY: &str = "concurrency";
    pub(crate) const CONCURRENCY_PER_PARTITION: &str = "concurrency_per_partition";
    pub(crate) const ACK_MODE: &str = "ack_mode";
    pub(crate) const BATCH: &str = "batch";
    pub(crate) const AUTO_STARTUP: &str = "auto_startup";
    pub(crate) const PROPERTIES: &str = "properties";
    pub(crate) const CLIENT_ID_PREFIX: &str = "client_id_prefix";
    pub(crate) const TOPIC_PATTERN: &str = "topic_pattern";
    pub(crate) const PARTITIONS: &str = "partitions";
    pub(crate) const REBALANCE_LISTENER: &str = "rebalance_listener";
    pub(crate) const SEND_TO: &str = "send_to";
    pub(crate) const RETRY: &str = "retry";
    pub(crate) const BLOCKING_RETRY: &str = "blocking_retry";
    pub(crate) const NEW_TOPIC: &str = "new_topic";
    pub(crate) const DEAD_LETTER: &str = "dead_letter";

    /// Every key, in the order the docs and error messages list them.
    pub(crate) const ALL: &[&str] = &[
        ID,
        TOPICS,
        TOPIC,
        GROUP_ID,
        CONCURRENCY,
        CONCURRENCY_PER_PARTITION,
        ACK_MODE,
        BATCH,
        AUTO_STARTUP,
        PROPERTIES,
        CLIENT_ID_PREFIX,
        TOPIC_PATTERN,
        PARTITIONS,
        REBALANCE_LISTENER,
        SEND_TO,
        RETRY,
        BLOCKING_RETRY,
        DEAD_LETTER,
        NEW_TOPIC,
    ];

    /// Spring's `topicPartitions`, spelled `partitions` here.
    pub(crate) const NOT_YET: &[&str] = &["topic_partitions"];

    /// Spring's `containerFactory`, which has no counterpart here.
    pub(crate) const CONTAINER_FACTORY: &str = "container_factory";
}

/// The values `ack_mode` accepts (Spring's `AckMode`, snake case).
pub(crate) const ACK_MODES: &[&str] = &[
    "record",
    "batch",
    "time",
    "count",
    "count_time",
    "manual",
    "manual_immediate",
];

/// Kafka's limit on topic name length.
const MAX_TOPIC_LEN: usize = 249;

/// The attribute's arguments, checked. String values are kept as written (placeholders
/// included) because the runtime resolves placeholders against its configuration.
#[derive(Debug, Default)]
pub(crate) struct ListenerArgs {
    pub(crate) id: Option<String>,
    pub(crate) topics: Vec<String>,
    pub(crate) group_id: Option<String>,
    pub(crate) concurrency: Option<String>,
    pub(crate) concurrency_per_partition: Option<String>,
    pub(crate) ack_mode: Option<String>,
    pub(crate) batch: bool,
    pub(crate) auto_startup: Option<String>,
    pub(crate) properties: Vec<String>,
    pub(crate) client_id_prefix: Option<String>,
    pub(crate) topic_pattern: Option<String>,
    pub(crate) partitions: Vec<String>,
    /// A path to a `static` implementing `RebalanceListener`.
    pub(crate) rebalance_listener: Option<syn::Path>,
    /// The topic the handler's return value is sent to.
    pub(crate) send_to: Option<String>,
    /// Listener keys set by the attribute (`retry(...)`, `dead_letter`): the suffix after
    /// `kafka.listener.`, and the value as written.
    pub(crate) settings: Vec<(String, String)>,
}

/// Collects errors so that one compile reports all of them (serde's approach).
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn extend(&mut self, other: Errors) {
        if let Some(error) = other.0 {
            self.push(error);
        }
    }

    pub(crate) fn into_result(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Parses the attribute. Always returns the arguments it could make sense of (so that the
/// function's shape can still be checked against `batch`), plus every error found.
pub(crate) fn parse(attr: TokenStream) -> (ListenerArgs, Errors) {
    let mut args = ListenerArgs::default();
    let mut errors = Errors::default();
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr) {
        Ok(metas) => metas,
        Err(error) => {
            errors.push(error);
            return (args, errors);
        }
    };

    let mut seen = HashSet::new();
    let mut topics_given = false;
    for meta in &metas {
        let Some(key) = meta.path().get_ident() else {
            errors.push(syn::Error::new_spanned(
                meta.path(),
                format!("expected a key, one of: {}", kw::ALL.join(", ")),
            ));
            continue;
        };
        let name = key.to_string();
        let known = kw::ALL.iter().find(|k| **k == name);
        let Some(&known) = known else {
            // `topic_pattern = ...` already says to use `topics`; "missing `topics`" would repeat it.
            topics_given |= kw::NOT_YET.contains(&normalize(&name).as_str());
            errors.push(unknown_key(key));
            continue;
        };
        if !seen.insert(known) {
            errors.push(syn::Error::new_spanned(
                key,
                format!("duplicate key `{known}`; give each key once"),
            ));
            continue;
        }
        topics_given |= matches!(
            known,
            kw::TOPICS | kw::TOPIC | kw::TOPIC_PATTERN | kw::PARTITIONS
        );
        if let Err(error) = parse_entry(known, meta, &mut args) {
            errors.push(error);
        }
    }
    if !topics_given {
        errors.push(syn::Error::new(
            Span::call_site(),
            "missing `topics`: say which topics to listen to, e.g. #[kafka_listener(topics = \"orders\")] \
             (or `topic_pattern`, or `partitions`)",
        ));
    }
    if args.batch
        && args
            .concurrency_per_partition
            .as_deref()
            .is_some_and(|n| n != "1" && whole_placeholder(n).is_none())
    {
        errors.push(syn::Error::new(
            Span::call_site(),
            "`concurrency_per_partition` applies to record listeners: a batch listener gets a partition's records in one call",
        ));
    }
    if args.batch
        && args
            .settings
            .iter()
            .any(|(k, v)| k == "retry-topic.enabled" && v == "true")
    {
        errors.push(syn::Error::new(
            Span::call_site(),
            "`retry` (retry topics) applies to record listeners",
        ));
    }
    let retry_topics = seen.contains(kw::RETRY);
    if retry_topics && seen.contains(kw::BLOCKING_RETRY) {
        errors.push(syn::Error::new(
            Span::call_site(),
            "give `retry` (retry topics: a failed record moves on, the partition goes on) or `blocking_retry` (the partition waits for the record's retries), not both",
        ));
    }
    if args.batch && args.send_to.is_some() {
        errors.push(syn::Error::new(
            Span::call_site(),
            "`send_to` applies to record listeners: a batch listener sends with a ProducerTemplate argument",
        ));
    }
    if seen.contains(kw::TOPIC) && seen.contains(kw::TOPICS) {
        let second = metas
            .iter()
            .filter(|m| {
                m.path()
                    .get_ident()
                    .is_some_and(|i| i == kw::TOPIC || i == kw::TOPICS)
            })
            .last();
        if let Some(meta) = second {
            errors.push(syn::Error::new_spanned(
                meta.path(),
                "give `topic` (one topic) or `topics` (one or several), not both",
            ));
        }
    }
    let sources = [kw::TOPICS, kw::TOPIC, kw::TOPIC_PATTERN, kw::PARTITIONS]
        .iter()
        .filter(|k| seen.contains(*k))
        .count()
        - usize::from(seen.contains(kw::TOPIC) && seen.contains(kw::TOPICS));
    if sources > 1 {
        let second = metas
            .iter()
            .filter(|m| {
                m.path()
                    .get_ident()
                    .is_some_and(|i| i == kw::TOPIC_PATTERN || i == kw::PARTITIONS)
            })
            .last();
        if let Some(meta) = second {
            errors.push(syn::Error::new_spanned(
                meta.path(),
                "give one of `topics`, `topic_pattern` or `partitions` (the partitions name their topics)",
            ));
        }
    }
    (args, errors)
}

fn parse_entry(key: &'static str, meta: &Meta, args: &mut ListenerArgs) -> syn::Result<()> {
    if key == kw::RETRY {
        return options(
            meta,
            args,
            kw::RETRY,
            Some("retry-topic.enabled"),
            RETRY_OPTIONS,
        );
    }
    if key == kw::BLOCKING_RETRY {
        return options(meta, args, kw::BLOCKING_RETRY, None, BLOCKING_RETRY_OPTIONS);
    }
    if key == kw::NEW_TOPIC {
        return options(meta, args, kw::NEW_TOPIC, None, NEW_TOPIC_OPTIONS);
    }
    if key == kw::DEAD_LETTER {
        args.settings
            .push(("dead-letter.enabled".into(), "true".into()));
        let expr = match meta {
            Meta::Path(_) => return Ok(()),
            _ => value(key, meta)?,
        };
        match lit(expr) {
            Some(Lit::Bool(b)) if !b.value => {
                args.settings.pop();
                args.settings
                    .push(("dead-letter.enabled".into(), "false".into()));
            }
            Some(Lit::Bool(_)) => {}
            Some(Lit::Str(s)) => {
                // `{topic}` stands for the record's topic; the rest must be a topic name.
                let plain = s.value().replace("{topic}", "t");
                topic(&LitStr::new(&plain, s.span()))?;
                args.settings.push(("dead-letter.topic".into(), s.value()));
            }
            _ => {
                return Err(syn::Error::new_spanned(
                    expr,
                    format!("expected `true`, `false` or a topic: `{}`", example(key)),
                ))
            }
        }
        return Ok(());
    }
    if key == kw::BATCH {
        args.batch = match meta {
            Meta::Path(_) => true,
            _ => bool_lit(key, value(key, meta)?)?,
        };
        return Ok(());
    }
    let value = value(key, meta)?;
    match key {
        kw::ID => args.id = Some(id(value)?),
        kw::TOPICS => args.topics = topics(value)?,
        kw::TOPIC => {
            if let Expr::Array(array) = value {
                return Err(syn::Error::new_spanned(
                    array,
                    "`topic` takes one topic; for several write `topics = [\"orders\", \"returns\"]`",
                ));
            }
            args.topics = topics(value)?;
        }
        kw::GROUP_ID => args.group_id = Some(plain_string(key, value)?),
        kw::CONCURRENCY => args.concurrency = Some(count(key, value)?),
        kw::CONCURRENCY_PER_PARTITION => args.concurrency_per_partition = Some(count(key, value)?),
        kw::ACK_MODE => args.ack_mode = Some(ack_mode(value)?),
        kw::AUTO_STARTUP => args.auto_startup = Some(auto_startup(value)?),
        kw::PROPERTIES => args.properties = properties(value)?,
        kw::CLIENT_ID_PREFIX => args.client_id_prefix = Some(plain_string(key, value)?),
        kw::TOPIC_PATTERN => args.topic_pattern = Some(topic_pattern(value)?),
        kw::PARTITIONS => args.partitions = partitions(value)?,
        kw::REBALANCE_LISTENER => args.rebalance_listener = Some(path_value(key, value)?),
        kw::SEND_TO => args.send_to = Some(topic(str_lit(key, value)?)?),
        _ => unreachable!("every key in kw::ALL is handled"),
    }
    Ok(())
}

fn unknown_key(key: &Ident) -> syn::Error {
    let name = key.to_string();
    let snake = normalize(&name);
    let message = if kw::NOT_YET.contains(&snake.as_str()) {
        format!(
            "`{name}` is spelled `partitions` here: partitions = [\"orders:0\", \"orders:1@100\"]"
        )
    } else if snake == kw::CONTAINER_FACTORY {
        format!(
            "`{name}` is not needed: configure the listener's container with \
             kafka.listener.<id>.* properties"
        )
    } else if let Some(suggestion) = did_you_mean(&name, kw::ALL) {
        format!(
            "unknown key `{name}`; did you mean `{suggestion}`? (keys are: {})",
            kw::ALL.join(", ")
        )
    } else {
        format!(
            "unknown key `{name}`; expected one of: {}",
            kw::ALL.join(", ")
        )
    };
    syn::Error::new_spanned(key, message)
}

/// How each key is written, for "expected ..." messages.
fn example(key: &str) -> &'static str {
    match key {
        kw::ID => "id = \"order-listener\"",
        kw::TOPICS => "topics = [\"orders\", \"returns\"]",
        kw::TOPIC => "topic = \"orders\"",
        kw::GROUP_ID => "group_id = \"billing\"",
        kw::CONCURRENCY => "concurrency = 3",
        kw::CONCURRENCY_PER_PARTITION => "concurrency_per_partition = 16",
        kw::ACK_MODE => "ack_mode = \"record\"",
        kw::BATCH => "batch = true",
        kw::AUTO_STARTUP => "auto_startup = false",
        kw::PROPERTIES => "properties = [\"max.poll.records=100\"]",
        kw::CLIENT_ID_PREFIX => "client_id_prefix = \"billing\"",
        kw::TOPIC_PATTERN => "topic_pattern = \"orders-.*\"",
        kw::PARTITIONS => "partitions = [\"orders:0\", \"orders:1@100\"]",
        kw::REBALANCE_LISTENER => "rebalance_listener = MY_REBALANCE_LISTENER",
        kw::SEND_TO => "send_to = \"orders.accepted\"",
        kw::RETRY => "retry(attempts = 4, backoff = \"1s\", multiplier = 2, max = \"30s\")",
        kw::NEW_TOPIC => {
            "new_topic(partitions = 6, replicas = 3, configs = \"retention.ms=604800000\")"
        }
        kw::BLOCKING_RETRY => {
            "blocking_retry(attempts = 3, backoff = \"1s\", multiplier = 2, max = \"10s\", jitter = true)"
        }
        kw::DEAD_LETTER => "dead_letter = \"{topic}.DLT\"",
        _ => "key = value",
    }
}

fn value<'a>(key: &str, meta: &'a Meta) -> syn::Result<&'a Expr> {
    match meta {
        Meta::NameValue(nv) => Ok(ungroup(&nv.value)),
        Meta::Path(path) => Err(syn::Error::new_spanned(
            path,
            format!("`{key}` needs a value: `{}`", example(key)),
        )),
        Meta::List(list) => Err(syn::Error::new_spanned(
            list,
            format!("write `{key}` as `{}`", example(key)),
        )),
    }
}

/// An option of `retry(...)` or `blocking_retry(...)`: its names, the listener key it sets
/// (the suffix after `kafka.listener.<id>.`), and how a `true`/`false` is written there
/// (`None`: a number or a string is expected).
type OptionDef = (
    &'static [&'static str],
    &'static str,
    Option<(&'static str, &'static str)>,
);

/// `retry(attempts = 4, backoff = "1s", multiplier = 2, max = "30s", single_topic = true)`:
/// retry topics (`kafka.listener.<id>.retry-topic.*`).
const RETRY_OPTIONS: &[OptionDef] = &[
    (&["attempts"], "retry-topic.attempts", None),
    (&["backoff", "delay"], "retry-topic.backoff.delay", None),
    (&["multiplier"], "retry-topic.backoff.multiplier", None),
    (&["max", "max_delay"], "retry-topic.backoff.max-delay", None),
    (
        &["single_topic"],
        "retry-topic.same-interval-topic-reuse",
        Some(("single-topic", "multiple-topics")),
    ),
];

/// `blocking_retry(attempts = 3, backoff = "1s", multiplier = 2, max = "10s", jitter = true)`:
/// retries in place, the partition waiting (`kafka.listener.<id>.retry.*`).
const BLOCKING_RETRY_OPTIONS: &[OptionDef] = &[
    (&["attempts"], "retry.attempts", None),
    (&["backoff", "delay"], "retry.backoff.delay", None),
    (&["multiplier"], "retry.backoff.multiplier", None),
    (&["max", "max_delay"], "retry.backoff.max-delay", None),
    (
        &["jitter", "random"],
        "retry.backoff.random",
        Some(("true", "false")),
    ),
];

/// `new_topic(partitions = 6, replicas = 3, configs = "retention.ms=604800000")`: how
/// `kafka.admin.auto-create` creates the listener's topics (`kafka.listener.<id>.new-topic.*`).
const NEW_TOPIC_OPTIONS: &[OptionDef] = &[
    (&["partitions"], "new-topic.partitions", None),
    (
        &["replicas", "replication_factor"],
        "new-topic.replicas",
        None,
    ),
    (&["configs"], "new-topic.configs", None),
];

/// `key(option = value, ...)` (or `key` alone): each option becomes a listener key; every
/// option may be left out. `enable` is a key set to `true` by the attribute's presence.
fn options(
    meta: &Meta,
    args: &mut ListenerArgs,
    key: &'static str,
    enable: Option<&str>,
    table: &[OptionDef],
) -> syn::Result<()> {
    let list = match meta {
        Meta::List(list) => list,
        Meta::Path(_) => {
            if let Some(enable) = enable {
                args.settings.push((enable.into(), "true".into()));
            }
            return Ok(());
        }
        Meta::NameValue(nv) => {
            return Err(syn::Error::new_spanned(
                nv,
                format!("write `{key}` as `{}`", example(key)),
            ))
        }
    };
    let items = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?;
    if let Some(enable) = enable {
        args.settings.push((enable.into(), "true".into()));
    }
    let mut errors = Errors::default();
    for item in &items {
        let Meta::NameValue(nv) = item else {
            errors.push(syn::Error::new_spanned(
                item,
                format!("expected `option = value`: `{}`", example(key)),
            ));
            continue;
        };
        let name = nv
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        let Some((_, suffix, flag)) = table
            .iter()
            .find(|(names, _, _)| names.contains(&name.as_str()))
        else {
            let known: Vec<&str> = table.iter().map(|(names, _, _)| names[0]).collect();
            errors.push(syn::Error::new_spanned(
                &nv.path,
                format!(
                    "unknown {key} option `{name}`; expected {}",
                    known.join(", ")
                ),
            ));
            continue;
        };
        let expr = ungroup(&nv.value);
        let value = match (lit(expr), flag) {
            (Some(Lit::Bool(b)), Some((yes, no))) => {
                Ok(if b.value { *yes } else { *no }.to_owned())
            }
            (Some(Lit::Int(i)), None) => Ok(i.base10_digits().to_owned()),
            (Some(Lit::Float(f)), None) => Ok(f.base10_digits().to_owned()),
            // A yes/no option takes a string only as a whole placeholder, resolved at start.
            (Some(Lit::Str(s)), Some(_)) if whole_placeholder(&s.value()).is_none() => {
                Err(syn::Error::new_spanned(
                    s,
                    format!(
                        "`{name}` expects true or false (or a \"${{...}}\" placeholder): `{}`",
                        example(key)
                    ),
                ))
            }
            (Some(Lit::Str(s)), _) => check_placeholders(&s.value())
                .map(|_| s.value())
                .map_err(|m| syn::Error::new_spanned(s, m)),
            (_, Some(_)) => Err(syn::Error::new_spanned(
                expr,
                format!("`{name}` expects true or false: `{}`", example(key)),
            )),
            _ => Err(syn::Error::new_spanned(
                expr,
                format!("expected a number or a string: `{}`", example(key)),
            )),
        };
        match value {
            Ok(value) => args.settings.push(((*suffix).into(), value)),
            Err(e) => errors.push(e),
        }
    }
    errors.into_result()
}

/// Values passed through `macro_rules!` arrive wrapped in invisible groups.
fn ungroup(mut expr: &Expr) -> &Expr {
    while let Expr::Group(group) = expr {
        expr = &group.expr;
    }
    expr
}

fn lit(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(lit) => Some(&lit.lit),
        _ => None,
    }
}

fn str_lit<'a>(key: &str, expr: &'a Expr) -> syn::Result<&'a LitStr> {
    match lit(expr) {
        Some(Lit::Str(s)) => Ok(s),
        _ => Err(syn::Error::new_spanned(
            expr,
            format!("expected a string: `{}`", example(key)),
        )),
    }
}

fn bool_lit(key: &str, expr: &Expr) -> syn::Result<bool> {
    match lit(expr) {
        Some(Lit::Bool(b)) => Ok(b.value),
        _ => Err(syn::Error::new_spanned(
            expr,
            format!("expected `true` or `false`: `{}`", example(key)),
        )),
    }
}

fn str_list<'a>(key: &str, expr: &'a Expr) -> syn::Result<(&'a ExprArray, Vec<&'a LitStr>)> {
    let Expr::Array(array) = expr else {
        return Err(syn::Error::new_spanned(
            expr,
            format!("expected a list of strings: `{}`", example(key)),
        ));
    };
    let items = array
        .elems
        .iter()
        .map(|elem| str_lit(key, ungroup(elem)))
        .collect::<syn::Result<_>>()?;
    Ok((array, items))
}

fn id(expr: &Expr) -> syn::Result<String> {
    let lit = str_lit(kw::ID, expr)?;
    let value = lit.value();
    if value.is_empty() {
        return Err(syn::Error::new_spanned(lit, "`id` must not be empty"));
    }
    if value.contains("${") {
        return Err(syn::Error::new_spanned(
            lit,
            "`id` cannot be a placeholder: it names the listener's config keys \
             (kafka.listener.<id>.*), so it is fixed at compile time",
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        return Err(syn::Error::new_spanned(
            lit,
            format!(
                "`id` may use only letters, digits, `_` and `-` (it names config keys \
                 kafka.listener.<id>.*, where a `.` would be ambiguous); found `{bad}`"
            ),
        ));
    }
    Ok(value)
}

fn topics(expr: &Expr) -> syn::Result<Vec<String>> {
    let lits = match expr {
        Expr::Array(_) => {
            let (array, items) = str_list(kw::TOPICS, expr)?;
            if items.is_empty() {
                return Err(syn::Error::new_spanned(
                    array,
                    "`topics` needs at least one topic: `topics = [\"orders\"]`",
                ));
            }
            items
        }
        _ => vec![str_lit(kw::TOPICS, expr)?],
    };
    let mut errors = Errors::default();
    let mut topics = Vec::with_capacity(lits.len());
    for lit in lits {
        match topic(lit) {
            Ok(topic) => topics.push(topic),
            Err(error) => errors.push(error),
        }
    }
    errors.into_result().map(|()| topics)
}

fn topic(lit: &LitStr) -> syn::Result<String> {
    let value = lit.value();
    if value.is_empty() {
        return Err(syn::Error::new_spanned(lit, "topic name must not be empty"));
    }
    let literal = check_placeholders(&value).map_err(|m| syn::Error::new_spanned(lit, m))?;
    // Only the text outside placeholders is known now; the runtime checks the resolved name.
    if let Some(bad) = literal
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(syn::Error::new_spanned(
            lit,
            format!(
                "invalid topic name `{value}`: Kafka topic names use only letters, digits, \
                 `_`, `.` and `-`; found `{bad}`"
            ),
        ));
    }
    if !value.contains("${") && value.len() > MAX_TOPIC_LEN {
        return Err(syn::Error::new_spanned(
            lit,
            format!("topic name is longer than Kafka's limit of {MAX_TOPIC_LEN} characters"),
        ));
    }
    Ok(value)
}

fn plain_string(key: &str, expr: &Expr) -> syn::Result<String> {
    let lit = str_lit(key, expr)?;
    let value = lit.value();
    if value.is_empty() {
        return Err(syn::Error::new_spanned(
            lit,
            format!("`{key}` must not be empty; leave it out to use the default"),
        ));
    }
    check_placeholders(&value).map_err(|m| syn::Error::new_spanned(lit, m))?;
    Ok(value)
}

/// `concurrency` and `concurrency_per_partition`: a positive integer or a placeholder.
fn count(key: &str, expr: &Expr) -> syn::Result<String> {
    let (example, what) = if key == kw::CONCURRENCY {
        ("3", "the number of consumers")
    } else {
        ("16", "records of a partition handled at once")
    };
    let expected = format!(
        "`{key}` is a positive integer (`{key} = {example}`) or a placeholder (`{key} = \"${{{}:{example}}}\"`)",
        key.to_uppercase()
    );
    match lit(expr) {
        Some(Lit::Int(int)) => match int.base10_parse::<u32>() {
            Ok(0) => Err(syn::Error::new_spanned(
                int,
                format!("`{key}` must be at least 1 ({what})"),
            )),
            Ok(n) => Ok(n.to_string()),
            Err(_) => Err(syn::Error::new_spanned(int, expected)),
        },
        Some(Lit::Str(s)) => {
            let value = s.value();
            let positive = |text: &str| text.parse::<u32>().is_ok_and(|n| n >= 1);
            let ok = match whole_placeholder(&value) {
                Some(Placeholder { default }) => default.is_none_or(positive),
                None => positive(&value),
            };
            if ok {
                Ok(value)
            } else {
                Err(syn::Error::new_spanned(s, expected))
            }
        }
        _ => Err(syn::Error::new_spanned(expr, expected)),
    }
}

fn ack_mode(expr: &Expr) -> syn::Result<String> {
    let lit = str_lit(kw::ACK_MODE, expr)?;
    let value = lit.value();
    let (checked, in_placeholder) = match whole_placeholder(&value) {
        Some(Placeholder { default: None }) => return Ok(value),
        Some(Placeholder {
            default: Some(default),
        }) => (default.to_owned(), true),
        None => (value.clone(), false),
    };
    if ACK_MODES.contains(&checked.as_str()) {
        return Ok(value);
    }
    let hint = match did_you_mean(&checked, ACK_MODES) {
        Some(suggestion) => format!("; did you mean `{suggestion}`?"),
        None => ".".to_owned(),
    };
    let what = if in_placeholder {
        "default ack mode"
    } else {
        "ack mode"
    };
    Err(syn::Error::new_spanned(
        lit,
        format!(
            "unknown {what} `{checked}`{hint} Expected one of: {}, or a placeholder like \"${{ACK_MODE:record}}\"",
            ACK_MODES.join(", ")
        ),
    ))
}

fn auto_startup(expr: &Expr) -> syn::Result<String> {
    const EXPECTED: &str =
        "`auto_startup` is `true`, `false` or a placeholder (`auto_startup = \"${ORDERS_ENABLED:true}\"`)";
    match lit(expr) {
        Some(Lit::Bool(b)) => Ok(b.value.to_string()),
        Some(Lit::Str(s)) => {
            let value = s.value();
            match whole_placeholder(&value) {
                Some(Placeholder { default })
                    if default.is_none_or(|d| d == "true" || d == "false") =>
                {
                    Ok(value)
                }
                _ => Err(syn::Error::new_spanned(s, EXPECTED)),
            }
        }
        _ => Err(syn::Error::new_spanned(expr, EXPECTED)),
    }
}

fn properties(expr: &Expr) -> syn::Result<Vec<String>> {
    let (_, lits) = str_list(kw::PROPERTIES, expr)?;
    let mut errors = Errors::default();
    let mut properties = Vec::with_capacity(lits.len());
    for lit in lits {
        let value = lit.value();
        match value.split_once('=') {
            Some((key, _)) if !key.trim().is_empty() => properties.push(value),
            _ => errors.push(syn::Error::new_spanned(
                lit,
                format!(
                    "property `{value}` must be `key=value` with a librdkafka key, \
                     e.g. \"max.poll.records=100\""
                ),
            )),
        }
    }
    errors.into_result().map(|()| properties)
}

fn topic_pattern(expr: &Expr) -> syn::Result<String> {
    let lit = str_lit(kw::TOPIC_PATTERN, expr)?;
    let value = lit.value();
    if value.trim().is_empty() {
        return Err(syn::Error::new_spanned(
            lit,
            "`topic_pattern` must not be empty",
        ));
    }
    check_placeholders(&value).map_err(|m| syn::Error::new_spanned(lit, m))?;
    Ok(value)
}

/// `"topic:partition"` or `"topic:partition@start"` (start: offset, earliest, latest, -N).
fn partitions(expr: &Expr) -> syn::Result<Vec<String>> {
    let (_, lits) = str_list(kw::PARTITIONS, expr)?;
    let mut errors = Errors::default();
    let mut out = Vec::with_capacity(lits.len());
    for lit in lits {
        let value = lit.value();
        if value.contains("${") || partition_spec_ok(&value) {
            out.push(value);
        } else {
            errors.push(syn::Error::new_spanned(
                lit,
                format!(
                    "partition `{value}` must be \"topic:partition\" or \"topic:partition@start\" \
                     (start: an offset, earliest, latest, or -N before the committed offset)"
                ),
            ));
        }
    }
    errors.into_result().map(|()| out)
}

fn partition_spec_ok(value: &str) -> bool {
    let Some((topic, rest)) = value.rsplit_once(':') else {
        return false;
    };
    let (partition, start) = match rest.split_once('@') {
        Some((p, s)) => (p, Some(s)),
        None => (rest, None),
    };
    let start_ok = match start {
        None | Some("earliest") | Some("latest") => true,
        Some(s) => s.parse::<i64>().is_ok(),
    };
    !topic.is_empty() && partition.parse::<u32>().is_ok() && start_ok
}

fn path_value(key: &str, expr: &Expr) -> syn::Result<syn::Path> {
    match expr {
        Expr::Path(p) if p.qself.is_none() => Ok(p.path.clone()),
        other => Err(syn::Error::new_spanned(
            other,
            format!(
                "`{key}` takes the path of a `static` implementing RebalanceListener: `{}`",
                example(key)
            ),
        )),
    }
}

/// A value that is exactly one `${name}` or `${name:default}`; only the default can be checked
/// at compile time.
struct Placeholder<'a> {
    default: Option<&'a str>,
}

fn whole_placeholder(value: &str) -> Option<Placeholder<'_>> {
    let inner = value.strip_prefix("${")?.strip_suffix('}')?;
    if inner.contains("${") || inner.contains('}') {
        return None;
    }
    let (name, default) = match inner.split_once(':') {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    (!name.trim().is_empty()).then_some(Placeholder { default })
}

/// Checks that every `${` is closed and names something; returns the text outside placeholders.
fn check_placeholders(value: &str) -> Result<String, String> {
    let mut literal = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        literal.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let mut depth = 1;
        let mut end = None;
        let mut chars = after.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '$' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    depth += 1;
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            return Err(format!("unclosed placeholder in `{value}`: expected `}}`"));
        };
        let name = after[..end].split(':').next().unwrap_or_default();
        if name.trim().is_empty() {
            return Err(format!(
                "empty placeholder in `{value}`: write `${{property.name}}` or `${{property.name:default}}`"
            ));
        }
        rest = &after[end + 1..];
    }
    literal.push_str(rest);
    Ok(literal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse_ok(attr: TokenStream) -> ListenerArgs {
        let (args, errors) = parse(attr);
        if let Err(error) = errors.into_result() {
            panic!("expected the attribute to parse, got: {error}");
        }
        args
    }

    fn parse_err(attr: TokenStream) -> String {
        let (_, errors) = parse(attr);
        match errors.into_result() {
            Ok(()) => panic!("expected an error"),
            Err(error) => error
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn single_topic_and_list_of_topics_parse() {
        assert_eq!(parse_ok(quote!(topics = "a")).topics, ["a"]);
        assert_eq!(parse_ok(quote!(topics = ["a", "b"])).topics, ["a", "b"]);
    }

    #[test]
    fn batch_is_a_flag_or_a_bool() {
        assert!(parse_ok(quote!(topics = "a", batch)).batch);
        assert!(!parse_ok(quote!(topics = "a", batch = false)).batch);
        assert!(!parse_ok(quote!(topics = "a")).batch);
    }

    #[test]
    fn placeholders_are_kept_verbatim() {
        let args = parse_ok(quote!(
            topics = "${ORDERS_TOPIC:orders}",
            concurrency = "${CONC:3}",
            ack_mode = "${ACK}",
            auto_startup = "${ENABLED:false}"
        ));
        assert_eq!(args.topics, ["${ORDERS_TOPIC:orders}"]);
        assert_eq!(args.concurrency.as_deref(), Some("${CONC:3}"));
        assert_eq!(args.ack_mode.as_deref(), Some("${ACK}"));
        assert_eq!(args.auto_startup.as_deref(), Some("${ENABLED:false}"));
    }

    #[test]
    fn all_errors_are_reported_together() {
        let message = parse_err(quote!(groupId = "g", concurrency = 0, ack_mode = "recrod"));
        assert!(message.contains("did you mean `group_id`"), "{message}");
        assert!(message.contains("at least 1"), "{message}");
        assert!(message.contains("did you mean `record`"), "{message}");
        assert!(message.contains("missing `topics`"), "{message}");
    }

    #[test]
    fn spring_spellings_get_hints() {
        assert!(parse_err(quote!(topics = "a", ackMode = "record")).contains("`ack_mode`"));
        assert!(parse_err(quote!(topics = "a", autoStartup = false)).contains("`auto_startup`"));
        assert!(
            parse_err(quote!(topics = "a", clientIdPrefix = "c")).contains("`client_id_prefix`")
        );
        assert_eq!(parse_ok(quote!(topic = "a")).topics, ["a"]);
        assert!(parse_err(quote!(topic = "a", topics = "b")).contains("not both"));
        assert!(parse_err(quote!(topic = ["a", "b"])).contains("for several write `topics"));
        assert!(parse_err(quote!(topics = "a", topic = "b")).contains("not both"));
        assert!(parse_err(quote!(tpoic = "a")).contains("did you mean `topic`"));
        assert!(parse_err(quote!(topicPattern = "a.*")).contains("did you mean `topic_pattern`"));
        assert!(parse_err(quote!(topicPartitions = "a")).contains("spelled `partitions`"));
        assert!(parse_err(quote!(topics = "a", topic_pattern = "b.*")).contains("give one of"));
        assert!(parse_err(quote!(partitions = ["a:x"])).contains("topic:partition"));
        assert!(parse_err(quote!(topics = "a", containerFactory = "f")).contains("not needed"));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(parse_err(quote!(topics = "a", id = "has space")).contains("found ` `"));
        assert!(parse_err(quote!(topics = "a", id = "${ID}")).contains("cannot be a placeholder"));
        assert!(parse_err(quote!(topics = "${oops")).contains("unclosed placeholder"));
        assert!(parse_err(quote!(topics = "a b")).contains("invalid topic name"));
        assert!(parse_err(quote!(topics = "a", concurrency = "${C:0}")).contains("positive"));
        assert!(parse_err(quote!(topics = "a", concurrency = "x")).contains("positive"));
        assert!(
            parse_err(quote!(topics = "a", concurrency_per_partition = 0))
                .contains("records of a partition handled at once")
        );
        assert!(
            parse_err(quote!(topics = "a", concurrency_per_partition = "${N:0}"))
                .contains("`concurrency_per_partition = \"${CONCURRENCY_PER_PARTITION:16}\"`")
        );
        assert!(
            parse_err(quote!(topics = "a", batch, concurrency_per_partition = 8))
                .contains("record listeners")
        );
        assert_eq!(
            parse_ok(quote!(topics = "a", concurrency_per_partition = 8))
                .concurrency_per_partition
                .as_deref(),
            Some("8")
        );
        assert!(parse_err(quote!(topics = "a", auto_startup = "true")).contains("placeholder"));
        assert!(
            parse_err(quote!(topics = "a", ack_mode = "${A:manual-immediate}"))
                .contains("did you mean `manual_immediate`")
        );
        assert!(parse_err(quote!(topics = "a", properties = ["=x"])).contains("key=value"));
    }
}
