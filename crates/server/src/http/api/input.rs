//! Every input of the API checked before anything is done with it: the
//! query string (its size, its parameters known and each given once, each
//! value in its range), the path's topic, partition and group, the body's
//! size and fields, and where a write comes from.

use axum::extract::Query;
use axum::http::{HeaderMap, Uri, header};
use carteiro_storage::store::{PARTITIONS_MAX, TOPIC_NAME_MAX_CHARS, validate_topic_name};

use super::error::{ApiError, cut};

/// Most bytes of a query string (1 KiB); longer ones are refused.
pub const QUERY_BYTES_MAX: usize = 1024;
/// Most bytes of a request body (4 KiB: a topic's name and partitions).
pub const BODY_BYTES_MAX: usize = 4096;

/// A request's query parameters: each a known name, given once.
#[derive(Debug)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

/// The query parameters of `uri`, refused if the query is over
/// [`QUERY_BYTES_MAX`], does not parse, names a parameter not in
/// `allowed`, or gives one twice.
pub fn params(uri: &Uri, allowed: &[&'static str]) -> Result<Params, ApiError> {
    let query = uri.query().unwrap_or_default();
    if query.len() > QUERY_BYTES_MAX {
        return Err(ApiError::over_limit(
            "query",
            &format!("{} bytes", query.len()),
            format!("at most {QUERY_BYTES_MAX} bytes"),
        ));
    }
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| ApiError::invalid("query", query, format!("does not parse: {e}")))?;
    for (i, (name, value)) in pairs.iter().enumerate() {
        let Some(field) = allowed.iter().find(|a| **a == name.as_str()) else {
            let known = if allowed.is_empty() {
                "this path takes no parameters".to_string()
            } else {
                format!("this path takes {}", allowed.join(", "))
            };
            return Err(ApiError::invalid(
                "query",
                name,
                format!("is not a parameter here: {known}"),
            ));
        };
        if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
            return Err(ApiError::invalid(field, value, "is given more than once"));
        }
    }
    Ok(Params { pairs })
}

impl Params {
    /// The value of parameter `field`, if given.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, value)| value.as_str())
    }

    /// Parameter `field` as a whole number from `min` to `max`, if given.
    pub fn number(&self, field: &'static str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let range = format!("a whole number from {min} to {max}");
        match value.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            Ok(_) => Err(ApiError::over_limit(field, value, range)),
            // Digits only, but too many for a 64-bit number: over the limit too.
            Err(_)
                if !value.is_empty()
                    && value
                        .trim_start_matches('-')
                        .bytes()
                        .all(|b| b.is_ascii_digit()) =>
            {
                Err(ApiError::over_limit(field, value, range))
            }
            Err(_) => Err(ApiError::invalid(field, value, format!("is not {range}"))),
        }
    }
}

/// A topic name from the path: at most [`TOPIC_NAME_MAX_CHARS`]
/// characters of `[a-zA-Z0-9._-]`, not `.` or `..` (so no path tricks).
pub fn topic_name(name: &str) -> Result<(), ApiError> {
    let chars = name.chars().count();
    if chars > TOPIC_NAME_MAX_CHARS {
        return Err(ApiError::over_limit(
            "name",
            name,
            format!("at most {TOPIC_NAME_MAX_CHARS} characters, {chars} given"),
        ));
    }
    validate_topic_name(name).map_err(|e| match e {
        carteiro_storage::StoreError::InvalidTopicName { reason, .. } => {
            ApiError::invalid("name", name, reason)
        }
        other => ApiError::invalid("name", name, other.to_string()),
    })
}

/// A partition number from the path: 0 to [`PARTITIONS_MAX`] - 1.
pub fn partition(value: &str) -> Result<u32, ApiError> {
    let max = PARTITIONS_MAX - 1;
    match value.parse::<u32>() {
        Ok(p) if p <= max => Ok(p),
        Ok(_) => Err(ApiError::over_limit(
            "partition",
            value,
            format!("0 to {max}"),
        )),
        Err(_) => Err(ApiError::invalid(
            "partition",
            value,
            format!("is not a partition number (0 to {max})"),
        )),
    }
}

/// A group id from the path, checked as the core checks it.
pub fn group(group: &str) -> Result<(), ApiError> {
    carteiro_core::committed::validate_group(group).map_err(|e| match e {
        carteiro_core::BrokerError::InvalidArgument { message, .. } => {
            ApiError::invalid("group", group, message)
        }
        other => ApiError::Core(other),
    })
}

/// A write must come from this listener's own page (or from a program,
/// which sends no `Origin`): a browser page of another origin cannot
/// create or delete topics through a user's browser.
pub fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = String::from_utf8_lossy(origin.as_bytes());
    let host = headers
        .get(header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .unwrap_or_default();
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    if origin_host.is_some_and(|o| !host.is_empty() && o == host) {
        Ok(())
    } else {
        Err(ApiError::ForeignOrigin {
            origin: cut(&origin),
            host: cut(&host),
        })
    }
}

/// A body must be said to be JSON: `content-type: application/json`
/// (which a page of another origin cannot send without asking first).
pub fn json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::NotJson)
    }
}

/// A new topic as a body asks for it.
#[derive(Debug, PartialEq, Eq)]
pub struct NewTopic {
    /// Its name.
    pub name: String,
    /// Its partition count, 1 to [`PARTITIONS_MAX`].
    pub partitions: u32,
}

/// Reads `{"name": "...", "partitions": N}`: both fields, nothing else.
pub fn new_topic(body: &[u8]) -> Result<NewTopic, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            "body",
            &String::from_utf8_lossy(body),
            format!("is not JSON: {e}"),
        )
    })?;
    let serde_json::Value::Object(fields) = value else {
        return Err(ApiError::invalid(
            "body",
            &value.to_string(),
            "is not a JSON object: send {\"name\": ..., \"partitions\": ...}",
        ));
    };
    if let Some(extra) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "partitions"))
    {
        return Err(ApiError::invalid(
            "body",
            extra,
            "is not a field of a new topic (name, partitions)",
        ));
    }
    let name = match fields.get("name") {
        Some(serde_json::Value::String(name)) => name.clone(),
        Some(other) => {
            return Err(ApiError::invalid(
                "name",
                &other.to_string(),
                "is not a string",
            ));
        }
        None => return Err(ApiError::invalid("name", "", "is missing")),
    };
    topic_name(&name)?;
    let range = format!("a whole number from 1 to {PARTITIONS_MAX}");
    let partitions = match fields.get("partitions") {
        Some(serde_json::Value::Number(n)) => match n.as_u64() {
            Some(p) if (1..=u64::from(PARTITIONS_MAX)).contains(&p) => p as u32,
            _ => {
                return Err(ApiError::over_limit("partitions", &n.to_string(), range));
            }
        },
        Some(other) => {
            return Err(ApiError::invalid(
                "partitions",
                &other.to_string(),
                format!("is not {range}"),
            ));
        }
        None => return Err(ApiError::invalid("partitions", "", "is missing")),
    };
    Ok(NewTopic { name, partitions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn uri(text: &str) -> Uri {
        text.parse().expect("a URI")
    }

    fn field_of(e: &ApiError) -> &'static str {
        match e {
            ApiError::Invalid { field, .. } => field,
            other => panic!("not an invalid field: {other:?}"),
        }
    }

    #[test]
    fn query_parameters_are_known_single_and_in_range() {
        let allowed = ["limit", "offset"];
        let p = params(&uri("/x?limit=5&offset=%32"), &allowed).expect("valid");
        assert_eq!(p.number("limit", 1, 500).expect("in range"), Some(5));
        assert_eq!(p.number("offset", 0, i64::MAX).expect("decoded"), Some(2));
        let unknown = params(&uri("/x?limt=5"), &allowed).expect_err("unknown");
        assert_eq!(field_of(&unknown), "query");
        assert!(unknown.to_string().contains("limt"), "{unknown}");
        let twice = params(&uri("/x?limit=5&limit=6"), &allowed).expect_err("twice");
        assert_eq!(field_of(&twice), "limit");
        let p = params(&uri("/x?limit=100000"), &allowed).expect("parses");
        let over = p.number("limit", 1, 500).expect_err("over");
        assert!(over.to_string().contains("1 to 500"), "{over}");
        let p = params(&uri("/x?limit=99999999999999999999999"), &allowed).expect("parses");
        assert!(
            p.number("limit", 1, 500)
                .expect_err("over")
                .to_string()
                .contains("1 to 500")
        );
        let p = params(&uri("/x?limit=ten"), &allowed).expect("parses");
        assert!(
            p.number("limit", 1, 500)
                .expect_err("not a number")
                .to_string()
                .contains("is not a whole number")
        );
        let long = format!("/x?limit={}", "9".repeat(QUERY_BYTES_MAX));
        let huge = params(&uri(&long), &allowed).expect_err("too long");
        assert_eq!(field_of(&huge), "query");
    }

    #[test]
    fn names_with_path_tricks_are_refused() {
        for name in ["..", ".", "a/b", "../etc", "a b", "a\0b", ""] {
            assert!(topic_name(name).is_err(), "{name:?}");
        }
        assert!(topic_name(&"x".repeat(TOPIC_NAME_MAX_CHARS + 1)).is_err());
        assert!(topic_name("orders.v1_x-2").is_ok());
        assert_eq!(partition("3").expect("a number"), 3);
        assert!(partition("-1").is_err());
        assert!(partition(&PARTITIONS_MAX.to_string()).is_err());
        assert!(group("").is_err());
        assert!(group("billing").is_ok());
    }

    #[test]
    fn a_new_topic_body_has_exactly_its_two_fields() {
        let ok = new_topic(br#"{"name": "orders", "partitions": 3}"#).expect("valid");
        assert_eq!(
            ok,
            NewTopic {
                name: "orders".to_string(),
                partitions: 3
            }
        );
        for (body, field) in [
            (&br#"{"name": "orders"}"#[..], "partitions"),
            (br#"{"name": "orders", "partitions": 0}"#, "partitions"),
            (br#"{"name": "orders", "partitions": 1.5}"#, "partitions"),
            (br#"{"name": "orders", "partitions": "3"}"#, "partitions"),
            (br#"{"name": "orders", "partitions": 100000}"#, "partitions"),
            (br#"{"name": "../x", "partitions": 1}"#, "name"),
            (br#"{"name": 5, "partitions": 1}"#, "name"),
            (br#"{"name": "a", "partitions": 1, "x": 1}"#, "body"),
            (br#"[1]"#, "body"),
            (br#"{"#, "body"),
        ] {
            let e = new_topic(body).expect_err("refused");
            assert_eq!(
                field_of(&e),
                field,
                "{}: {e}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn writes_from_another_origin_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9644"));
        assert!(same_origin(&headers).is_ok(), "no Origin: a program");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9644"),
        );
        assert!(same_origin(&headers).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(matches!(
            same_origin(&headers),
            Err(ApiError::ForeignOrigin { .. })
        ));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(same_origin(&headers).is_err());
        assert!(json_content_type(&headers).is_err());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(json_content_type(&headers).is_ok());
    }
}
