//! Access tokens: short-lived HS256 JWTs naming the user and the session family.
//!
//! The algorithm is pinned twice: the validation accepts only HS256, and the process-wide
//! jsonwebtoken crypto provider installed here implements nothing but HS256, so no other
//! algorithm (none, RS256, HS512, ...) can be verified or signed whatever a header claims.

use std::{sync::Once, time::Duration};

use hmac::{Hmac, Mac};
use jsonwebtoken::{
    Algorithm, DecodingKey, DecodingKeyKind, EncodingKey, Header, Validation,
    crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils},
    errors::{ErrorKind, Result as JwtResult},
    signature::{Error as SignatureError, Signer, Verifier},
};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;
use uuid::Uuid;

/// The `typ` header of our access tokens (RFC 9068).
pub(crate) const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// The audience: tokens are for this API and nothing else.
pub(crate) const AUDIENCE: &str = "notion-connect-api";
/// Tolerated clock difference when checking `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 10;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    /// The session family the token was issued for.
    pub sid: Uuid,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("the access token is invalid")]
    Invalid,
    #[error("cannot sign an access token")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// Signs and verifies access tokens with `JWT_SECRET`.
#[derive(Clone)]
pub(crate) struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    ttl: Duration,
}

impl JwtKeys {
    pub(crate) fn new(secret: &[u8], issuer: &str, ttl: Duration) -> Self {
        install_hs256_provider();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub", "jti", "sid"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            ttl,
        }
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new access token for `user_id` in session family `sid`.
    pub(crate) fn issue(&self, user_id: Uuid, sid: Uuid) -> Result<String, TokenError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: AUDIENCE.to_owned(),
            sub: user_id,
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            jti: Uuid::now_v7(),
            sid,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(TokenError::Signing)
    }

    /// The claims of a valid token: right algorithm, signature, type, issuer, audience and
    /// times. Everything else is [`TokenError::Invalid`], without saying why.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        if data.header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
    }
}

fn install_hs256_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Fails only if another provider was installed first; then that one stays in charge,
        // and the validation's algorithm list still admits HS256 alone.
        let _ = HS256_ONLY.install_default();
    });
}

static HS256_ONLY: CryptoProvider = CryptoProvider {
    signer_factory: hs256_signer,
    verifier_factory: hs256_verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

struct Hs256(Hmac<Sha256>);

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        let mut mac = self.0.clone();
        mac.update(message);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), SignatureError> {
        let mut mac = self.0.clone();
        mac.update(message);
        // Constant-time comparison.
        mac.verify_slice(signature)
            .map_err(|_| SignatureError::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

fn hs256(algorithm: &Algorithm, secret: &[u8]) -> JwtResult<Hs256> {
    if *algorithm != Algorithm::HS256 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Hmac::<Sha256>::new_from_slice(secret)
        .map(Hs256)
        .map_err(|_| ErrorKind::InvalidKeyFormat.into())
}

fn hs256_signer(algorithm: &Algorithm, key: &EncodingKey) -> JwtResult<Box<dyn JwtSigner>> {
    Ok(Box::new(hs256(algorithm, key.as_bytes())?))
}

fn hs256_verifier(algorithm: &Algorithm, key: &DecodingKey) -> JwtResult<Box<dyn JwtVerifier>> {
    match key.kind() {
        DecodingKeyKind::SecretOrDer(secret) => Ok(Box::new(hs256(algorithm, secret)?)),
        _ => Err(ErrorKind::InvalidKeyFormat.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(
            &[7u8; 32],
            "http://localhost:8000",
            Duration::from_secs(900),
        )
    }

    #[test]
    fn issued_tokens_verify() {
        let keys = keys();
        let (user, sid) = (Uuid::now_v7(), Uuid::now_v7());
        let token = keys.issue(user, sid).unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub, claims.sid), (user, sid));
        assert_eq!(claims.exp - claims.iat, 900);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.alg, Algorithm::HS256);
    }

    #[test]
    fn other_keys_and_issuers_are_refused() {
        let token = keys().issue(Uuid::now_v7(), Uuid::now_v7()).unwrap();
        let other_key = JwtKeys::new(
            &[8u8; 32],
            "http://localhost:8000",
            Duration::from_secs(900),
        );
        assert!(other_key.verify(&token).is_err());
        let other_issuer = JwtKeys::new(
            &[7u8; 32],
            "https://elsewhere.example",
            Duration::from_secs(900),
        );
        assert!(other_issuer.verify(&token).is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Characters a forger might put in a token: base64url's, the separator, and others.
        const CHARACTERS: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+/= ";

        proptest! {
            #[test]
            fn a_token_with_any_character_changed_is_refused(
                position in any::<prop::sample::Index>(),
                replacement in prop::sample::select(CHARACTERS),
            ) {
                let keys = keys();
                let token = keys.issue(Uuid::now_v7(), Uuid::now_v7()).unwrap();
                let mut bytes = token.clone().into_bytes();
                let at = position.index(bytes.len());
                prop_assume!(bytes[at] != replacement);
                bytes[at] = replacement;
                let forged = String::from_utf8(bytes).unwrap();
                prop_assert!(keys.verify(&forged).is_err(), "{} accepted", at);
            }

            #[test]
            fn truncated_or_extended_tokens_are_refused(
                cut in any::<prop::sample::Index>(),
                suffix in "[A-Za-z0-9_.-]{1,8}",
            ) {
                let keys = keys();
                let token = keys.issue(Uuid::now_v7(), Uuid::now_v7()).unwrap();
                let at = cut.index(token.len());
                prop_assert!(keys.verify(&token[..at]).is_err());
                let extended = token.clone() + &suffix;
                prop_assert!(keys.verify(&extended).is_err());
            }
        }
    }
}
