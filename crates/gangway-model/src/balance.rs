//! How a pool spreads requests over its targets (seed 003's per-pool
//! policy).

use serde::Serialize;

/// A pool's load-balancing policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each target in turn (exactly even).
    #[default]
    RoundRobin,
    /// Smooth weighted round robin, as nginx: a target of weight 3 gets
    /// three requests for every one of a target of weight 1, interleaved.
    Weighted,
    /// The target with the fewest requests waiting for a response.
    LeastInFlight,
    /// Two targets drawn at random; the one with the lower (in-flight + 1)
    /// x latency average wins.
    PowerOfTwo,
    /// Consistent hashing of a request key: the same key goes to the same
    /// target while it is in service; when targets come or go, only the
    /// keys of those targets move.
    Hash(HashKey),
}

/// What a [`Balance::Hash`] pool hashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    /// The client's address.
    ClientIp,
    /// A request header's value (lower-case name).
    Header(String),
    /// A cookie's value.
    Cookie(String),
}

impl Balance {
    /// Parses the file's `balance` (and `hash_on` for `hash`).
    pub fn parse(balance: &str, hash_on: Option<&str>) -> Result<Balance, String> {
        let policy = match balance {
            "round_robin" => Balance::RoundRobin,
            "weighted" => Balance::Weighted,
            "least_in_flight" => Balance::LeastInFlight,
            "p2c" => Balance::PowerOfTwo,
            "hash" => {
                let on = hash_on.ok_or(
                    "balance = \"hash\" needs hash_on: \"client_ip\", \"header:<Name>\" or \"cookie:<name>\"",
                )?;
                let key = match on.split_once(':') {
                    None if on == "client_ip" => HashKey::ClientIp,
                    Some(("header", name)) if !name.trim().is_empty() => {
                        HashKey::Header(name.trim().to_ascii_lowercase())
                    }
                    Some(("cookie", name)) if !name.trim().is_empty() => {
                        HashKey::Cookie(name.trim().to_owned())
                    }
                    _ => {
                        return Err(format!(
                            "hash_on {on:?} is not known; use \"client_ip\", \"header:<Name>\" or \"cookie:<name>\""
                        ))
                    }
                };
                return Ok(Balance::Hash(key));
            }
            other => {
                return Err(format!(
                    "balance {other:?} is not known; use round_robin, weighted, least_in_flight, p2c or hash"
                ))
            }
        };
        if hash_on.is_some() {
            return Err("hash_on only applies to balance = \"hash\"".into());
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_policy() {
        assert_eq!(Balance::parse("weighted", None), Ok(Balance::Weighted));
        assert_eq!(
            Balance::parse("hash", Some("header:X-User")),
            Ok(Balance::Hash(HashKey::Header("x-user".into())))
        );
        assert_eq!(
            Balance::parse("hash", Some("cookie:session")),
            Ok(Balance::Hash(HashKey::Cookie("session".into())))
        );
        assert!(Balance::parse("hash", None).is_err());
        assert!(Balance::parse("hash", Some("header:")).is_err());
        assert!(Balance::parse("random", None).is_err());
        assert!(Balance::parse("p2c", Some("client_ip")).is_err());
    }
}
