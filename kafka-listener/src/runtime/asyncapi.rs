//! `asyncapi`: an AsyncAPI 3.0 document of the application's listeners: a channel per topic,
//! a `receive` operation per listener container (with its consumer group as a Kafka binding),
//! a `send` operation per `send_to`, and each listener's message with its payload's JSON
//! Schema when the payload type implements `schemars::JsonSchema` (draft-07, inlined).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::plan::ListenerPlan;
use crate::config::Settings;
use crate::listener::ListenerDefinition;

/// A channel id AsyncAPI accepts (`[\w.-]`): topic names already are, but patterns are not.
fn channel_id(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The message a listener takes, for `components.messages`.
fn message(def: &ListenerDefinition) -> Value {
    // The type as written, maybe qualified (`kafka_listener::Json<Order>`).
    let is_json = |t: &str| {
        t.split('<')
            .next()
            .and_then(|head| head.rsplit("::").next())
            .is_some_and(|name| name.trim() == "Json")
    };
    let content_type = match def.payload_type {
        Some(t) if is_json(t) => "application/json",
        Some(_) => "text/plain",
        None => "application/octet-stream",
    };
    let mut m = Map::new();
    m.insert("name".into(), json!(def.id));
    m.insert("contentType".into(), json!(content_type));
    if let Some(t) = def.payload_type {
        m.insert(
            "summary".into(),
            json!(format!("What {} takes: {t}", def.id)),
        );
    }
    if let Some(schema) = def.payload_schema.and_then(|f| f()) {
        m.insert("payload".into(), schema);
    }
    Value::Object(m)
}

pub(super) fn document(
    title: &str,
    settings: &Settings,
    defs: &[&'static ListenerDefinition],
    plans: &[ListenerPlan],
) -> Value {
    let mut channels: BTreeMap<String, Value> = BTreeMap::new();
    let mut operations: BTreeMap<String, Value> = BTreeMap::new();
    let mut messages: BTreeMap<String, Value> = BTreeMap::new();
    let def_of = |listener: &str| {
        let base = listener.strip_suffix("-retry").unwrap_or(listener);
        defs.iter()
            .find(|d| d.id == listener)
            .or_else(|| defs.iter().find(|d| d.id == base))
            .copied()
    };
    for plan in plans {
        let p = &plan.props;
        let Some(def) = def_of(&p.listener_id) else {
            continue;
        };
        let message_id = channel_id(def.id);
        messages
            .entry(message_id.clone())
            .or_insert_with(|| message(def));
        let addresses: Vec<String> = if let Some(pattern) = &p.topic_pattern {
            vec![pattern.clone()]
        } else if p.partitions.is_empty() {
            p.topics.clone()
        } else {
            p.partitions.iter().map(|tp| tp.topic.clone()).collect()
        };
        let mut refs = Vec::new();
        for address in addresses {
            let id = channel_id(&address);
            let channel = channels.entry(id.clone()).or_insert_with(|| {
                json!({
                    "address": address,
                    "messages": {},
                })
            });
            channel["messages"][&message_id] =
                json!({ "$ref": format!("#/components/messages/{message_id}") });
            refs.push(id);
        }
        for (i, id) in refs.iter().enumerate() {
            let op = if refs.len() == 1 {
                channel_id(&p.listener_id)
            } else {
                format!("{}.{i}", channel_id(&p.listener_id))
            };
            operations.insert(
                op,
                json!({
                    "action": "receive",
                    "title": format!("listener {}", p.listener_id),
                    "summary": format!(
                        "ack mode {}, concurrency {}{}",
                        p.ack_mode,
                        p.concurrency,
                        if p.retry_topic_max_delay.is_some() { ", retry topics" } else { "" }
                    ),
                    "channel": { "$ref": format!("#/channels/{id}") },
                    "messages": [{ "$ref": format!("#/channels/{id}/messages/{message_id}") }],
                    "bindings": { "kafka": {
                        "groupId": { "type": "string", "enum": [p.group_id] },
                        "bindingVersion": "0.5.0",
                    } },
                }),
            );
        }
        if let Some(target) = &plan.send_to {
            let id = channel_id(target);
            channels.entry(id.clone()).or_insert_with(
                || json!({ "address": target, "description": format!("what {} forwards", def.id) }),
            );
            operations.insert(
                format!("{}.send_to", channel_id(&p.listener_id)),
                json!({
                    "action": "send",
                    "title": format!("listener {} forwards its results", p.listener_id),
                    "channel": { "$ref": format!("#/channels/{id}") },
                }),
            );
        }
    }
    let host = settings
        .bootstrap_servers
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": title,
            "version": "unversioned",
            "description": "The Kafka listeners of this service, generated by kafka-listener.",
        },
        "defaultContentType": "application/json",
        "servers": { "kafka": { "host": host, "protocol": "kafka" } },
        "channels": channels,
        "operations": operations,
        "components": { "messages": messages },
    })
}
