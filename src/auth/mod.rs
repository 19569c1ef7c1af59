//! Accounts: the [`accounts`] service, and what it is made of: usernames, passwords, access
//! tokens, refresh tokens, device cookies, throttling and the memory of live sessions.

pub mod accounts;
pub(crate) mod backoff;
pub(crate) mod device;
pub(crate) mod jwt;
pub mod liveness;
pub mod password;

use sha2::{Digest, Sha256};

use crate::{
    crypto::{hex, random_token},
    secret::Secret,
};

/// A username: 3 to 32 characters from `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
/// Unique regardless of case; the case typed at registration is kept for display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Username(String);

/// The rule [`Username::parse`] checks, as the API document states it.
pub(crate) const USERNAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{2,31}$";

impl Username {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let valid = (3..=32).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_alphanumeric())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(
                "A username has 3 to 32 characters from A-Z, a-z, 0-9, '.', '_' and '-', and \
                 starts with a letter or digit.",
            )
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive key the database keeps unique.
    pub(crate) fn key(&self) -> String {
        username_key(&self.0)
    }
}

/// The lookup key for any login name, valid or not.
pub(crate) fn username_key(raw: &str) -> String {
    raw.to_ascii_lowercase()
}

/// A refresh token: 256 random bits, sent to the browser once and stored only as a hash.
pub(crate) struct RefreshToken(Secret<String>);

impl RefreshToken {
    pub(crate) fn generate() -> Result<Self, getrandom::Error> {
        random_token::<32>().map(|token| Self(Secret::new(token)))
    }

    pub(crate) fn expose(&self) -> &str {
        self.0.expose()
    }

    pub(crate) fn hash(&self) -> String {
        hash_token(self.expose())
    }
}

/// SHA-256, hex: tokens are random and long, so a fast hash is enough to make a leaked table
/// useless.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the documented pattern admits, the parser accepts.
        #[test]
        fn names_matching_the_documented_pattern_parse(
            name in proptest::string::string_regex(
                USERNAME_PATTERN.trim_start_matches('^').trim_end_matches('$'),
            )
            .unwrap(),
        ) {
            prop_assert!(Username::parse(&name).is_ok(), "{}", name);
        }

        /// And nothing outside the pattern's alphabet and lengths gets through.
        #[test]
        fn other_names_are_refused(name in "\\PC{0,40}") {
            let in_pattern = (3..=32).contains(&name.chars().count())
                && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            prop_assert_eq!(Username::parse(&name).is_ok(), in_pattern);
        }
    }
}
