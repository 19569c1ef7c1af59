//! Encryption of Notion tokens at rest.
//!
//! `TOKEN_ENCRYPTION_KEYS` is a key ring written as `kid:base64key,kid:base64key,...`. The first
//! key encrypts; every key may decrypt, so a new key can be put in front while old ciphertexts
//! stay readable until `rotate-keys` has re-encrypted them.
//!
//! A ciphertext is stored as base64 of the envelope
//! `version (1 byte) ‖ key id length (1 byte) ‖ key id ‖ nonce (24 bytes) ‖ ciphertext ‖ tag`,
//! sealed with XChaCha20-Poly1305 under a fresh random nonce. The associated data names the
//! owner, the connection (by bot id) and the column, so a ciphertext copied into another row or
//! column fails to decrypt instead of yielding someone else's token.

use std::fmt;

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use uuid::Uuid;

use crate::secret::Secret;

const ENVELOPE_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// Length of an XChaCha20-Poly1305 key.
pub(crate) const KEY_LEN: usize = 32;
const MAX_KEY_ID_LEN: usize = 32;

/// A key identifier: 1 to 32 characters from `A-Z a-z 0-9 _ -`. It is stored next to every
/// ciphertext, so it must stay short and must never change for a given key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KeyId(String);

impl KeyId {
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        let valid_chars = raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if raw.is_empty() || raw.len() > MAX_KEY_ID_LEN || !valid_chars {
            return Err(format!(
                "a key id of 1 to {MAX_KEY_ID_LEN} characters from A-Z, a-z, 0-9, '_' and '-'"
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ordered set of token encryption keys. `Debug` shows key ids only.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<(KeyId, Secret<[u8; KEY_LEN]>)>,
}

impl KeyRing {
    /// Parses `kid:base64key[,kid:base64key...]`. The error text says what was expected and never
    /// repeats key material.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut keys: Vec<(KeyId, Secret<[u8; KEY_LEN]>)> = Vec::new();
        for (position, entry) in raw.split(',').map(str::trim).enumerate() {
            let n = position + 1;
            let (kid, key) = entry
                .split_once(':')
                .ok_or_else(|| format!("entry {n} is not of the form kid:base64key"))?;
            let kid = KeyId::parse(kid.trim()).map_err(|e| format!("entry {n}: expected {e}"))?;
            if keys.iter().any(|(existing, _)| *existing == kid) {
                return Err(format!("key id '{kid}' appears more than once"));
            }
            let bytes = STANDARD
                .decode(key.trim())
                .map_err(|_| format!("key '{kid}' is not valid base64"))?;
            let key: [u8; KEY_LEN] = bytes.try_into().map_err(|bytes: Vec<u8>| {
                format!(
                    "key '{kid}' must decode to {KEY_LEN} bytes, not {}",
                    bytes.len()
                )
            })?;
            keys.push((kid, Secret::new(key)));
        }
        Ok(Self { keys })
    }

    /// A ring holding one freshly generated key.
    pub(crate) fn generate() -> Result<Self, getrandom::Error> {
        let key = random_bytes::<KEY_LEN>()?;
        let id = hex(&random_bytes::<4>()?);
        let kid = KeyId::parse(&format!("k{id}")).expect("hex digits make a valid key id");
        Ok(Self {
            keys: vec![(kid, Secret::new(key))],
        })
    }

    /// The key that encrypts new ciphertexts.
    pub(crate) fn primary(&self) -> (&KeyId, &[u8; KEY_LEN]) {
        let (kid, key) = &self.keys[0];
        (kid, key.expose())
    }

    /// The key with this id, if the ring holds it.
    pub(crate) fn get(&self, kid: &str) -> Option<&[u8; KEY_LEN]> {
        self.keys
            .iter()
            .find(|(id, _)| id.as_str() == kid)
            .map(|(_, key)| key.expose())
    }

    pub(crate) fn key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|(kid, _)| kid)
    }

    /// The ring in its configuration form, for storing a generated development ring.
    pub(crate) fn to_config_string(&self) -> Secret<String> {
        let entries: Vec<String> = self
            .keys
            .iter()
            .map(|(kid, key)| format!("{kid}:{}", STANDARD.encode(key.expose())))
            .collect();
        Secret::new(entries.join(","))
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .finish()
    }
}

/// The secrets a connection row keeps sealed: a closed set, so the associated data of each can
/// only be spelled one way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealedField {
    AccessToken,
    RefreshToken,
    OwnerEmail,
}

impl SealedField {
    /// The column that holds it. Part of the associated data: changing it makes every stored
    /// ciphertext unreadable.
    pub(crate) fn column(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
            Self::OwnerEmail => "owner_email",
        }
    }
}

impl fmt::Display for SealedField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.column())
    }
}

/// What a ciphertext is bound to: whose it is, which connection, which field.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    user_id: Uuid,
    bot_id: &'a str,
    field: SealedField,
}

impl<'a> Binding<'a> {
    pub fn new(user_id: Uuid, bot_id: &'a str, field: SealedField) -> Self {
        Self {
            user_id,
            bot_id,
            field,
        }
    }

    fn associated_data(&self) -> Vec<u8> {
        format!(
            "notion-connect/v{ENVELOPE_VERSION}|notion_connections|{}|{}|{}",
            self.field.column(),
            self.user_id,
            self.bot_id
        )
        .into_bytes()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the ciphertext is malformed")]
    Malformed,
    #[error("the ciphertext was made with key '{0}', which is not in the key ring")]
    UnknownKey(String),
    /// Wrong key, tampered data, or a ciphertext that belongs to another row or column.
    #[error("the ciphertext does not authenticate")]
    Unauthentic,
    #[error("no randomness available: {0}")]
    Random(getrandom::Error),
}

/// Seals and opens token ciphertexts with the key ring.
#[derive(Clone, Debug)]
pub struct TokenCipher {
    ring: KeyRing,
}

impl TokenCipher {
    pub fn new(ring: KeyRing) -> Self {
        Self { ring }
    }

    /// The id of the key new ciphertexts are sealed with.
    pub fn primary_key_id(&self) -> &str {
        self.ring.primary().0.as_str()
    }

    pub fn encrypt(&self, plaintext: &str, binding: Binding<'_>) -> Result<String, CryptoError> {
        let (kid, key) = self.ring.primary();
        let nonce = random_bytes::<NONCE_LEN>().map_err(CryptoError::Random)?;
        let aad = binding.associated_data();
        let sealed = XChaCha20Poly1305::new(key.into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Unauthentic)?;
        let kid = kid.as_str().as_bytes();
        let mut envelope = Vec::with_capacity(2 + kid.len() + NONCE_LEN + sealed.len());
        envelope.push(ENVELOPE_VERSION);
        envelope.push(kid.len() as u8);
        envelope.extend_from_slice(kid);
        envelope.extend_from_slice(&nonce);
        envelope.extend_from_slice(&sealed);
        Ok(STANDARD.encode(envelope))
    }

    pub fn decrypt(
        &self,
        stored: &str,
        binding: Binding<'_>,
    ) -> Result<Secret<String>, CryptoError> {
        let envelope = STANDARD
            .decode(stored)
            .map_err(|_| CryptoError::Malformed)?;
        let (kid, nonce, sealed) = split_envelope(&envelope)?;
        let key = self
            .ring
            .get(kid)
            .ok_or_else(|| CryptoError::UnknownKey(kid.to_owned()))?;
        let aad = binding.associated_data();
        let plaintext = XChaCha20Poly1305::new(key.into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Unauthentic)?;
        String::from_utf8(plaintext)
            .map(Secret::new)
            .map_err(|_| CryptoError::Malformed)
    }

    /// The id of the key a stored ciphertext was sealed with.
    pub fn key_id_of(stored: &str) -> Result<String, CryptoError> {
        let envelope = STANDARD
            .decode(stored)
            .map_err(|_| CryptoError::Malformed)?;
        split_envelope(&envelope).map(|(kid, _, _)| kid.to_owned())
    }
}

fn split_envelope(envelope: &[u8]) -> Result<(&str, &[u8], &[u8]), CryptoError> {
    let [version, kid_len, rest @ ..] = envelope else {
        return Err(CryptoError::Malformed);
    };
    if *version != ENVELOPE_VERSION || rest.len() < usize::from(*kid_len) + NONCE_LEN + 16 {
        return Err(CryptoError::Malformed);
    }
    let (kid, rest) = rest.split_at(usize::from(*kid_len));
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let kid = std::str::from_utf8(kid).map_err(|_| CryptoError::Malformed)?;
    Ok((kid, nonce, sealed))
}

/// Fills a buffer from the operating system's random number generator.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

/// `N` random bytes as URL-safe base64 without padding: for tokens handed to browsers and peers.
pub(crate) fn random_token<const N: usize>() -> Result<String, getrandom::Error> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<N>()?))
}

/// A key for one `purpose`, derived from a secret (HMAC-SHA256 of the purpose), so that one
/// configured secret can key several things without one key telling anything about another.
pub(crate) fn derive_key(secret: &[u8], purpose: &str) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Lower-case hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// A new ring entry, `kid:base64key`, with a random key and a random key id.
pub fn generate_key_entry() -> Result<String, getrandom::Error> {
    Ok(KeyRing::generate()?.to_config_string().expose().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; KEY_LEN])
    }

    #[test]
    fn parses_a_ring_and_keeps_its_order() {
        let ring = KeyRing::parse(&format!("new:{}, old:{}", key(1), key(2))).unwrap();
        let (kid, primary) = ring.primary();
        assert_eq!(kid.as_str(), "new");
        assert_eq!(primary, &[1; KEY_LEN]);
        assert_eq!(ring.get("old"), Some(&[2; KEY_LEN]));
        assert_eq!(ring.get("missing"), None);
    }

    #[test]
    fn rejects_malformed_rings_without_echoing_keys() {
        let short = STANDARD.encode([7u8; 16]);
        let cases = [
            String::new(),
            "justakey".to_owned(),
            format!("bad id:{}", key(1)),
            format!("a:{}", "***"),
            format!("a:{short}"),
            format!("a:{},a:{}", key(1), key(2)),
            format!("{}:{}", "x".repeat(33), key(1)),
        ];
        for case in cases {
            let err = KeyRing::parse(&case).expect_err(&case);
            assert!(!err.contains(&short) && !err.contains(&key(1)), "{err}");
        }
    }

    #[test]
    fn generated_entries_parse_and_differ() {
        let a = generate_key_entry().unwrap();
        let b = generate_key_entry().unwrap();
        assert_ne!(a, b);
        let ring = KeyRing::parse(&a).unwrap();
        assert_eq!(ring.to_config_string().expose(), &a);
    }

    fn binding(user: u128, bot: &str, field: SealedField) -> Binding<'_> {
        Binding::new(Uuid::from_u128(user), bot, field)
    }

    #[test]
    fn associated_data_keeps_its_stored_spelling() {
        // Rows sealed by earlier versions must stay readable: the text must never change.
        let data = binding(1, "bot", SealedField::OwnerEmail).associated_data();
        assert_eq!(
            String::from_utf8(data).unwrap(),
            "notion-connect/v1|notion_connections|owner_email|\
             00000000-0000-0000-0000-000000000001|bot"
        );
    }

    #[test]
    fn ciphertexts_open_only_where_they_were_sealed() {
        let cipher = TokenCipher::new(KeyRing::parse(&format!("k1:{}", key(1))).unwrap());
        let here = binding(1, "bot-a", SealedField::AccessToken);
        let sealed = cipher.encrypt("secret_token", here).unwrap();
        assert!(!sealed.contains("secret_token"));
        assert_ne!(
            sealed,
            cipher.encrypt("secret_token", here).unwrap(),
            "fresh nonce"
        );
        assert_eq!(
            cipher.decrypt(&sealed, here).unwrap().expose(),
            "secret_token"
        );
        assert_eq!(TokenCipher::key_id_of(&sealed).unwrap(), "k1");

        for elsewhere in [
            binding(2, "bot-a", SealedField::AccessToken),
            binding(1, "bot-b", SealedField::AccessToken),
            binding(1, "bot-a", SealedField::RefreshToken),
        ] {
            assert!(matches!(
                cipher.decrypt(&sealed, elsewhere),
                Err(CryptoError::Unauthentic)
            ));
        }
        let mut tampered = STANDARD.decode(&sealed).unwrap();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(cipher.decrypt(&STANDARD.encode(tampered), here).is_err());
        assert!(matches!(
            cipher.decrypt("bm90IGFuIGVudmVsb3Bl", here),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn old_keys_decrypt_and_unknown_keys_are_reported() {
        let old = TokenCipher::new(KeyRing::parse(&format!("old:{}", key(1))).unwrap());
        let here = binding(1, "bot", SealedField::AccessToken);
        let sealed = old.encrypt("token", here).unwrap();
        let rotated =
            TokenCipher::new(KeyRing::parse(&format!("new:{},old:{}", key(2), key(1))).unwrap());
        assert_eq!(rotated.decrypt(&sealed, here).unwrap().expose(), "token");
        assert_eq!(rotated.primary_key_id(), "new");
        let without_old = TokenCipher::new(KeyRing::parse(&format!("new:{}", key(2))).unwrap());
        assert!(
            matches!(without_old.decrypt(&sealed, here), Err(CryptoError::UnknownKey(k)) if k == "old")
        );
    }

    #[test]
    fn debug_shows_ids_but_no_key_material() {
        let ring = KeyRing::parse(&format!("k1:{}", key(9))).unwrap();
        let shown = format!("{ring:?}");
        assert!(shown.contains("k1"));
        assert!(!shown.contains(&key(9)));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn cipher() -> TokenCipher {
            TokenCipher::new(KeyRing::parse(&format!("k1:{}", key(3))).unwrap())
        }

        fn field() -> impl Strategy<Value = SealedField> {
            prop_oneof![
                Just(SealedField::AccessToken),
                Just(SealedField::RefreshToken),
                Just(SealedField::OwnerEmail),
            ]
        }

        proptest! {
            #[test]
            fn whatever_is_sealed_opens_to_itself(
                plaintext in ".{0,200}",
                user in any::<u128>(),
                bot in "[a-z0-9-]{1,40}",
                field in field(),
            ) {
                let cipher = cipher();
                let here = binding(user, &bot, field);
                let sealed = cipher.encrypt(&plaintext, here).unwrap();
                let opened = cipher.decrypt(&sealed, here).unwrap();
                prop_assert_eq!(opened.expose(), &plaintext);
            }

            #[test]
            fn any_flipped_bit_is_refused(
                plaintext in ".{0,64}",
                position in any::<prop::sample::Index>(),
                bit in 0u8..8,
            ) {
                let cipher = cipher();
                let here = binding(1, "bot", SealedField::AccessToken);
                let mut envelope = STANDARD.decode(cipher.encrypt(&plaintext, here).unwrap()).unwrap();
                let at = position.index(envelope.len());
                envelope[at] ^= 1 << bit;
                prop_assert!(cipher.decrypt(&STANDARD.encode(&envelope), here).is_err());
            }

            #[test]
            fn a_ciphertext_opens_only_where_it_was_sealed(
                plaintext in ".{0,64}",
                (user, other_user) in (any::<u128>(), any::<u128>()),
                (bot, other_bot) in ("[a-z0-9]{1,12}", "[a-z0-9]{1,12}"),
                (field, other_field) in (field(), field()),
            ) {
                prop_assume!((user, &bot, field) != (other_user, &other_bot, other_field));
                let cipher = cipher();
                let sealed = cipher.encrypt(&plaintext, binding(user, &bot, field)).unwrap();
                let elsewhere = binding(other_user, &other_bot, other_field);
                prop_assert!(matches!(
                    cipher.decrypt(&sealed, elsewhere),
                    Err(CryptoError::Unauthentic)
                ));
            }

            #[test]
            fn the_same_plaintext_never_seals_the_same_way_twice(plaintext in ".{0,64}") {
                let cipher = cipher();
                let here = binding(1, "bot", SealedField::RefreshToken);
                let nonce = |sealed: String| {
                    let envelope = STANDARD.decode(sealed).unwrap();
                    let (_, nonce, _) = split_envelope(&envelope).unwrap();
                    nonce.to_vec()
                };
                let first = cipher.encrypt(&plaintext, here).unwrap();
                let second = cipher.encrypt(&plaintext, here).unwrap();
                prop_assert_ne!(&first, &second);
                prop_assert_ne!(nonce(first), nonce(second));
            }
        }
    }
}
