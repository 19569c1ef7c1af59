//! Device cookies, OWASP's answer to lockout by strangers: a browser that has logged in to an
//! account before carries a signed cookie naming that account and a random device id, and its
//! login attempts are counted against that device alone. An attacker guessing without the cookie
//! throttles the account's shared allowance, not the owner's.
//!
//! The same keys give log lines a stable pseudonym for a username, so an operator can follow an
//! attack on one name without the log holding the name itself.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::crypto::{derive_key as derive, hex, random_bytes};

type HmacSha256 = Hmac<Sha256>;

/// Name of the device cookie (`__Secure-` prefixed over https).
pub(crate) const DEVICE_COOKIE: &str = "nc_device";
/// The cookie is only ever sent to the two endpoints that check a password: logging in and
/// deleting the account. A cookie has one path, so the value is set once for each.
pub(crate) const DEVICE_COOKIE_PATHS: [&str; 2] = ["/api/v1/auth/login", "/api/v1/me"];
/// How long a browser stays recognised after its latest login.
pub(crate) const DEVICE_COOKIE_MAX_AGE: u64 = 365 * 24 * 3600;

/// Keys derived from `JWT_SECRET` for signing device cookies and naming usernames in logs.
pub(crate) struct Devices {
    cookie_key: [u8; 32],
    name_key: [u8; 32],
}

impl Devices {
    pub(crate) fn new(secret: &[u8]) -> Self {
        Self {
            cookie_key: derive(secret, "notion-connect/device-cookie"),
            name_key: derive(secret, "notion-connect/log-pseudonym"),
        }
    }

    fn mac(&self, user_id: Uuid, device: &[u8]) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.cookie_key).expect("HMAC takes keys of any length");
        mac.update(user_id.as_bytes());
        mac.update(device);
        mac
    }

    /// A new cookie value for `user_id`: `user.device.signature`.
    pub(crate) fn issue(&self, user_id: Uuid) -> Result<String, getrandom::Error> {
        let device = random_bytes::<16>()?;
        let signature = self.mac(user_id, &device).finalize().into_bytes();
        Ok(format!(
            "{}.{}.{}",
            user_id.simple(),
            URL_SAFE_NO_PAD.encode(device),
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// The throttling key of the device behind `cookie`, when the cookie is genuine and was
    /// issued for `user_id`.
    pub(crate) fn bucket(&self, cookie: &str, user_id: Uuid) -> Option<String> {
        let mut parts = cookie.split('.');
        let (Some(user), Some(device), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if Uuid::try_parse(user).ok()? != user_id {
            return None;
        }
        let device = URL_SAFE_NO_PAD.decode(device).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        self.mac(user_id, &device).verify_slice(&signature).ok()?;
        // A username key never contains ':', so a device key cannot be an account's.
        Some(format!("device:{}", &hex(&Sha256::digest(&device))[..32]))
    }

    /// A stable stand-in for a username in logs: the same name always gives the same text, and
    /// the text does not give the name back.
    pub(crate) fn pseudonym(&self, username_key: &str) -> String {
        let mut mac =
            HmacSha256::new_from_slice(&self.name_key).expect("HMAC takes keys of any length");
        mac.update(username_key.as_bytes());
        hex(&mac.finalize().into_bytes()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_counts_only_for_its_own_account_and_only_unaltered() {
        let devices = Devices::new(b"0123456789abcdef0123456789abcdef");
        let owner = Uuid::from_u128(1);
        let cookie = devices.issue(owner).unwrap();
        let bucket = devices.bucket(&cookie, owner).unwrap();
        assert!(bucket.starts_with("device:") && bucket.len() <= 64);
        assert_ne!(
            devices.issue(owner).unwrap(),
            cookie,
            "a new device id each time"
        );

        assert_eq!(
            devices.bucket(&cookie, Uuid::from_u128(2)),
            None,
            "another account"
        );
        let mut forged = cookie.clone();
        forged.pop();
        forged.push(if cookie.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(devices.bucket(&forged, owner), None, "an altered signature");
        let other_secret = Devices::new(b"another secret, just as long ...");
        assert_eq!(
            other_secret.bucket(&cookie, owner),
            None,
            "another server's cookie"
        );
        for junk in ["", "a.b", "a.b.c.d", "x.y.z"] {
            assert_eq!(devices.bucket(junk, owner), None, "{junk}");
        }
    }

    #[test]
    fn pseudonyms_are_stable_and_do_not_contain_the_name() {
        let devices = Devices::new(b"0123456789abcdef0123456789abcdef");
        let a = devices.pseudonym("alice");
        assert_eq!(a, devices.pseudonym("alice"));
        assert_ne!(a, devices.pseudonym("alicf"));
        assert!(!a.contains("alice") && a.len() == 16);
    }
}
