//! Topic configs by their Kafka names, both ways: parsed from CreateTopics
//! into the core's settings, and described (DescribeConfigs, and
//! CreateTopics v5) from a topic's effective config and the broker's
//! defaults.
//!
//! | Kafka name | Carteiro setting |
//! |---|---|
//! | `retention.ms`, `retention.bytes` | retention (-1: keep everything) |
//! | `segment.bytes`, `segment.ms` | segment size and age |
//! | `max.message.bytes` | largest batch |
//! | `flush.messages` = 1 | flush `always` (every append synced) |
//! | `flush.ms` = N | flush every N ms |
//! | `carteiro.flush.policy` | `always`, `interval` (with `flush.ms`) or `os` |
//! | `cleanup.policy` | `delete` only |

use std::sync::Arc;

use carteiro_core::topics::{Retention, TopicSettings};
use carteiro_core::{BrokerError, FlushPolicy};
use carteiro_storage::LogConfig;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::text;
use crate::error::{Family, KafkaError, kafka_error};
use crate::listener::Edge;

/// Kafka's resource type of a topic.
pub(crate) const RESOURCE_TOPIC: i8 = 2;
/// Kafka's resource type of a broker.
pub(crate) const RESOURCE_BROKER: i8 = 4;
/// Kafka's config source: set on the topic.
const SOURCE_TOPIC: i8 = 1;
/// Kafka's config source: the broker's static configuration.
const SOURCE_STATIC_BROKER: i8 = 4;
/// Kafka's config source: a default.
const SOURCE_DEFAULT: i8 = 5;
/// Most config entries one CreateTopics topic may carry.
pub(crate) const TOPIC_CONFIGS_MAX: usize = 64;

fn invalid(message: String) -> KafkaError {
    KafkaError::new(ResponseError::InvalidConfig, message)
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, KafkaError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(format!("config {name} is {value:?}: not a number in range")))
}

fn retention(name: &str, value: &str) -> Result<Retention, KafkaError> {
    match number::<i64>(name, value)? {
        -1 => Ok(Retention::Unlimited),
        v if v >= 0 => Ok(Retention::Limit(v as u64)),
        v => Err(invalid(format!(
            "config {name} is {v}: it must be -1 (unlimited) or at least 0"
        ))),
    }
}

/// The settings that CreateTopics' configs ask for.
pub(crate) fn parse_settings<'a>(
    configs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<TopicSettings, KafkaError> {
    let mut settings = TopicSettings::default();
    let (mut flush_ms, mut policy) = (None::<u64>, None::<String>);
    for (count, (name, value)) in configs.into_iter().enumerate() {
        if count >= TOPIC_CONFIGS_MAX {
            return Err(invalid(format!(
                "more than {TOPIC_CONFIGS_MAX} configs on one topic"
            )));
        }
        // A null value means the default.
        let Some(value) = value else { continue };
        match name {
            "retention.ms" => settings.retention_ms = Some(retention(name, value)?),
            "retention.bytes" => settings.retention_bytes = Some(retention(name, value)?),
            "segment.bytes" => settings.segment_bytes = Some(number(name, value)?),
            "segment.ms" => settings.segment_ms = Some(number(name, value)?),
            "max.message.bytes" => settings.max_batch_bytes = Some(number(name, value)?),
            "flush.ms" => flush_ms = Some(number(name, value)?),
            "flush.messages" => match number::<u64>(name, value)? {
                1 => policy = Some("always".to_string()),
                n => {
                    return Err(invalid(format!(
                        "config flush.messages is {n}: only 1 (sync every append) is supported; use flush.ms for a time"
                    )));
                }
            },
            "carteiro.flush.policy" => policy = Some(value.trim().to_string()),
            "cleanup.policy" if value.trim() == "delete" => {}
            "cleanup.policy" => {
                return Err(invalid(format!(
                    "config cleanup.policy is {value:?}: only \"delete\" is supported"
                )));
            }
            other => {
                return Err(invalid(format!(
                    "config {other:?} is not supported; supported: retention.ms, retention.bytes, segment.bytes, segment.ms, max.message.bytes, flush.ms, flush.messages, carteiro.flush.policy, cleanup.policy"
                )));
            }
        }
    }
    settings.flush = match (policy.as_deref(), flush_ms) {
        (None, None) => None,
        (Some("always"), _) => Some(FlushPolicy::Always),
        (Some("os"), _) => Some(FlushPolicy::Os),
        (Some("interval") | None, Some(ms)) => Some(FlushPolicy::IntervalMs(ms)),
        (Some("interval"), None) => {
            return Err(invalid(
                "config carteiro.flush.policy is \"interval\": set flush.ms too".to_string(),
            ));
        }
        (Some(other), _) => {
            return Err(invalid(format!(
                "config carteiro.flush.policy is {other:?}: it must be always, interval or os"
            )));
        }
    };
    Ok(settings)
}

fn optional(value: Option<u64>) -> String {
    value.map_or_else(|| "-1".to_string(), |v| v.to_string())
}

/// A topic's config by Kafka names: `(name, value, is_default)`.
pub(crate) fn topic_entries(config: &LogConfig) -> Vec<(&'static str, String, bool)> {
    let defaults = LogConfig::default();
    let (policy, flush_ms, flush_messages) = match config.flush {
        FlushPolicy::Always => ("always", i64::MAX.to_string(), "1".to_string()),
        FlushPolicy::IntervalMs(ms) => ("interval", ms.to_string(), i64::MAX.to_string()),
        FlushPolicy::Os => ("os", i64::MAX.to_string(), i64::MAX.to_string()),
    };
    let flush_default = config.flush == defaults.flush;
    vec![
        (
            "retention.ms",
            optional(config.retention_ms),
            config.retention_ms == defaults.retention_ms,
        ),
        (
            "retention.bytes",
            optional(config.retention_bytes),
            config.retention_bytes == defaults.retention_bytes,
        ),
        (
            "segment.bytes",
            config.segment_bytes.to_string(),
            config.segment_bytes == defaults.segment_bytes,
        ),
        (
            "segment.ms",
            config.segment_ms.to_string(),
            config.segment_ms == defaults.segment_ms,
        ),
        (
            "max.message.bytes",
            config.max_batch_bytes.to_string(),
            config.max_batch_bytes == defaults.max_batch_bytes,
        ),
        ("flush.ms", flush_ms, flush_default),
        ("flush.messages", flush_messages, flush_default),
        ("carteiro.flush.policy", policy.to_string(), flush_default),
        ("cleanup.policy", "delete".to_string(), true),
    ]
}

/// The broker's settings by Kafka names: `(name, value, is_default)`.
fn broker_entries(edge: &Edge) -> Vec<(&'static str, String, bool)> {
    let defaults = LogConfig::default();
    let options = &edge.options;
    let mut entries: Vec<(&'static str, String, bool)> = topic_entries(&defaults)
        .into_iter()
        .filter_map(|(name, value, _)| {
            let broker_name = match name {
                "retention.ms" => "log.retention.ms",
                "retention.bytes" => "log.retention.bytes",
                "segment.bytes" => "log.segment.bytes",
                "segment.ms" => "log.roll.ms",
                "max.message.bytes" => "message.max.bytes",
                "flush.ms" => "log.flush.interval.ms",
                "flush.messages" => "log.flush.interval.messages",
                _ => return None,
            };
            Some((broker_name, value, true))
        })
        .collect();
    entries.extend([
        (
            "num.partitions",
            options.default_partitions.to_string(),
            options.default_partitions == 1,
        ),
        (
            "auto.create.topics.enable",
            options.auto_create_topics.to_string(),
            options.auto_create_topics,
        ),
        (
            "socket.request.max.bytes",
            options.request_bytes_max.to_string(),
            options.request_bytes_max == crate::REQUEST_BYTES_MAX_DEFAULT,
        ),
        (
            "advertised.listeners",
            format!(
                "PLAINTEXT://{}:{}",
                options.advertised_host, options.advertised_port
            ),
            false,
        ),
        ("broker.id", crate::NODE_ID.to_string(), true),
    ]);
    entries
}

fn describe_one(
    edge: &Edge,
    resource_type: i8,
    name: &str,
) -> Result<Vec<(&'static str, String, bool)>, KafkaError> {
    match resource_type {
        RESOURCE_TOPIC => edge
            .broker
            .describe_topic(name)
            .map(|topic| topic_entries(&topic.config))
            .map_err(|e: BrokerError| kafka_error(&e, Family::Admin)),
        RESOURCE_BROKER if name.is_empty() || name == crate::NODE_ID.to_string() => {
            Ok(broker_entries(edge))
        }
        RESOURCE_BROKER => Err(KafkaError::new(
            ResponseError::InvalidRequest,
            format!("broker {name:?} is not this broker ({})", crate::NODE_ID),
        )),
        other => Err(KafkaError::new(
            ResponseError::InvalidRequest,
            format!("resource_type {other}: only topics (2) and brokers (4) have configs here"),
        )),
    }
}

/// Answers DescribeConfigs.
pub(crate) fn describe(
    edge: &Arc<Edge>,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .take(carteiro_core::fetch::PARTITIONS_PER_REQUEST_MAX)
        .map(|resource| {
            let answer = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match describe_one(
                edge,
                resource.resource_type,
                resource.resource_name.as_str(),
            ) {
                Ok(entries) => {
                    let wanted = |name: &str| {
                        resource
                            .configuration_keys
                            .as_ref()
                            .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
                    };
                    let source = if resource.resource_type == RESOURCE_TOPIC {
                        SOURCE_TOPIC
                    } else {
                        SOURCE_STATIC_BROKER
                    };
                    let configs = entries
                        .into_iter()
                        .filter(|(name, _, _)| wanted(name))
                        .map(|(name, value, is_default)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(text(name))
                                .with_value(Some(text(value)))
                                .with_read_only(resource.resource_type == RESOURCE_BROKER)
                                .with_config_source(if is_default {
                                    SOURCE_DEFAULT
                                } else {
                                    source
                                })
                        })
                        .collect();
                    answer.with_configs(configs)
                }
                Err(e) => answer
                    .with_error_code(e.code())
                    .with_error_message(Some(text(e.message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_configs_become_settings() {
        let settings = parse_settings([
            ("retention.ms", Some("-1")),
            ("segment.bytes", Some("1048576")),
            ("flush.ms", Some("250")),
        ])
        .expect("valid");
        assert_eq!(settings.retention_ms, Some(Retention::Unlimited));
        assert_eq!(settings.segment_bytes, Some(1_048_576));
        assert_eq!(settings.flush, Some(FlushPolicy::IntervalMs(250)));
        let always = parse_settings([("flush.messages", Some("1"))]).expect("valid");
        assert_eq!(always.flush, Some(FlushPolicy::Always));
    }

    #[test]
    fn unknown_and_bad_configs_name_themselves() {
        let e = parse_settings([("compression.type", Some("zstd"))]).expect_err("unknown");
        assert!(e.message.contains("compression.type"), "{}", e.message);
        let e = parse_settings([("retention.ms", Some("soon"))]).expect_err("not a number");
        assert!(e.message.contains("retention.ms") && e.message.contains("soon"));
        assert_eq!(e.error, ResponseError::InvalidConfig);
    }

    #[test]
    fn described_entries_read_back_as_the_same_settings() {
        let config = LogConfig {
            retention_ms: None,
            flush: FlushPolicy::IntervalMs(100),
            ..LogConfig::default()
        };
        let entries = topic_entries(&config);
        let settings = parse_settings(
            entries
                .iter()
                .filter(|(name, _, _)| *name != "flush.messages")
                .map(|(name, value, _)| (*name, Some(value.as_str()))),
        )
        .expect("described configs parse");
        assert_eq!(settings.log_config(&LogConfig::default()), config);
    }
}
