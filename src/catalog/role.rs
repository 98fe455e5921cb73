//! Roles: who may log in, and their password verifiers.
//!
//! Passwords are never stored: a role keeps a SCRAM-SHA-256 verifier in Postgres' own
//! format (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, RFC 5802), from
//! which the server can check a client's proof but cannot recover the password or log in
//! as the role. A verifier computed by the client (psql's `\password`) is stored as sent.

use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

use crate::common::{Error, Result, SqlState};

/// The bootstrap superuser: always exists, cannot be dropped.
pub const SUPERUSER: &str = "sabot";

/// PBKDF2 rounds of new verifiers (Postgres' default `scram_iterations`).
pub const SCRAM_ITERATIONS: u32 = 4096;
const SALT_BYTES: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDesc {
    pub name: String,
    pub superuser: bool,
    pub login: bool,
    /// A SCRAM-SHA-256 verifier; `None` when the role has no password.
    pub password: Option<String>,
}

impl RoleDesc {
    pub fn bootstrap_superuser() -> Self {
        RoleDesc { name: SUPERUSER.to_string(), superuser: true, login: true, password: None }
    }

    /// Whether `password` is this role's password.
    pub fn password_matches(&self, password: &str) -> bool {
        let Some(verifier) = self.password.as_deref().and_then(ScramVerifier::parse) else { return false };
        let salted = salted_password(password, &verifier.salt, verifier.iterations);
        let computed = ScramVerifier::from_salted(verifier.salt.clone(), verifier.iterations, &salted);
        constant_time_equal(&computed.stored_key, &verifier.stored_key)
    }
}

/// Compares without stopping at the first difference, so timing tells nothing.
fn constant_time_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |differences, (x, y)| differences | (x ^ y)) == 0
}

/// The parts of a SCRAM-SHA-256 verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    /// `SHA-256(HMAC(SaltedPassword, "Client Key"))`
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`
    pub server_key: Vec<u8>,
}

impl ScramVerifier {
    /// A verifier for `password` with a fresh random salt.
    pub fn new(password: &str) -> Result<Self> {
        let mut salt = vec![0; SALT_BYTES];
        ring::rand::SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| Error::internal("the system's random number generator failed"))?;
        let salted = salted_password(password, &salt, SCRAM_ITERATIONS);
        Ok(ScramVerifier::from_salted(salt, SCRAM_ITERATIONS, &salted))
    }

    fn from_salted(salt: Vec<u8>, iterations: u32, salted: &[u8]) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref()).as_ref().to_vec();
        let server_key = hmac::sign(&key, b"Server Key").as_ref().to_vec();
        ScramVerifier { iterations, salt, stored_key, server_key }
    }

    /// Reads Postgres' text form; `None` if `text` is not a SCRAM-SHA-256 verifier.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        let verifier = ScramVerifier {
            iterations: iterations.parse().ok().filter(|&n| n > 0)?,
            salt: BASE64.decode(salt).ok()?,
            stored_key: BASE64.decode(stored_key).ok()?,
            server_key: BASE64.decode(server_key).ok()?,
        };
        (verifier.stored_key.len() == 32 && verifier.server_key.len() == 32 && !verifier.salt.is_empty())
            .then_some(verifier)
    }

    pub fn to_text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(&self.stored_key),
            BASE64.encode(&self.server_key)
        )
    }
}

/// What `PASSWORD '...'` stores: a verifier sent by the client as is, otherwise a new
/// verifier of the cleartext password. MD5 hashes are refused (they are not a verifier
/// SCRAM can use).
pub fn password_verifier(password: &str) -> Result<String> {
    if password.starts_with("SCRAM-SHA-256$") {
        return ScramVerifier::parse(password).map(|v| v.to_text()).ok_or_else(|| {
            Error::new(SqlState::InvalidParameterValue, "invalid SCRAM-SHA-256 password verifier")
        });
    }
    if password.len() == 35 && password.starts_with("md5") {
        return Err(Error::unsupported("MD5 password hashes")
            .with_hint("give the password in clear text, or as a SCRAM-SHA-256 verifier"));
    }
    if password.is_empty() {
        return Err(Error::new(SqlState::InvalidParameterValue, "empty passwords are not allowed")
            .with_hint("use PASSWORD NULL to remove a role's password"));
    }
    Ok(ScramVerifier::new(password)?.to_text())
}

/// `Hi(Normalize(password), salt, iterations)` of RFC 5802: SASLprep, then PBKDF2 with
/// HMAC-SHA-256.
fn salted_password(password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    // As Postgres: a password SASLprep rejects is used as given.
    let normalized = stringprep::saslprep(password).unwrap_or(std::borrow::Cow::Borrowed(password));
    let mut out = vec![0; digest::SHA256_OUTPUT_LEN];
    let rounds = NonZeroU32::new(iterations).expect("verifiers have a positive iteration count");
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, rounds, salt, normalized.as_bytes(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_check_passwords_and_round_trip() {
        let text = password_verifier("s3cret").unwrap();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        let role = RoleDesc { password: Some(text.clone()), ..RoleDesc::bootstrap_superuser() };
        assert!(role.password_matches("s3cret"));
        assert!(!role.password_matches("s3cret "));
        assert_eq!(ScramVerifier::parse(&text).unwrap().to_text(), text);
        // A verifier computed elsewhere is stored as given; garbage is refused.
        assert_eq!(password_verifier(&text).unwrap(), text);
        assert_eq!(password_verifier("SCRAM-SHA-256$1:x").unwrap_err().sqlstate().code(), "22023");
        assert_eq!(
            password_verifier("md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap_err().sqlstate().code(),
            "0A000"
        );
    }

    #[test]
    fn verifier_signs_the_rfc_7677_exchange() {
        // RFC 7677, section 3: user "user", password "pencil".
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password("pencil", &salt, 4096);
        let verifier = ScramVerifier::from_salted(salt, 4096, &salted);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_signature =
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &verifier.server_key), auth_message.as_bytes());
        assert_eq!(BASE64.encode(server_signature.as_ref()), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }
}
