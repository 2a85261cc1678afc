//! Verification of the bearer JWTs of `/api/v1/audit/verify`: the key (HS256 secret or RS256
//! public key), `iss`, `aud` and the clock-skew leeway.

use std::fmt;
use std::path::PathBuf;

use clap::Args;
use jsonwebtoken::{Algorithm, DecodingKey};
use secrecy::{ExposeSecret, SecretString};

use super::parse::parsed;
use super::{invalid, ConfigError};

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "JWT")]
pub struct JwtSettings {
    /// HS256 shared secret, at least 32 bytes. Exactly one of this and an RS256 key is required.
    #[arg(long, env = "JWT_HS256_SECRET", value_name = "SECRET", value_parser = secret)]
    pub jwt_hs256_secret: Option<SecretString>,

    /// RS256 public key PEM, inline (literal \n allowed).
    #[arg(long, env = "JWT_RS256_PUBLIC_KEY", value_name = "PEM")]
    pub jwt_rs256_public_key: Option<String>,

    /// RS256 public key PEM file, instead of JWT_RS256_PUBLIC_KEY.
    #[arg(long, env = "JWT_RS256_PUBLIC_KEY_FILE", value_name = "FILE")]
    pub jwt_rs256_public_key_file: Option<PathBuf>,

    /// When set, the token's iss must match.
    #[arg(long, env = "JWT_ISSUER", value_name = "ISS")]
    pub jwt_issuer: Option<String>,

    /// When set, the token's aud must match.
    #[arg(long, env = "JWT_AUDIENCE", value_name = "AUD")]
    pub jwt_audience: Option<String>,

    /// Clock-skew allowance, in seconds, for exp and nbf.
    #[arg(long, env = "JWT_LEEWAY_SECONDS", value_name = "SECONDS", default_value_t = 30, value_parser = leeway)]
    pub jwt_leeway_seconds: u64,
}

fn secret(value: &str) -> Result<SecretString, String> {
    Ok(value.into())
}

fn leeway(value: &str) -> Result<u64, String> {
    parsed(value, "a number of seconds")
}

#[derive(Clone)]
pub enum JwtKey {
    Hs256(SecretString),
    /// Parsed once, by [`JwtKey::rs256_pem`], when the settings are read.
    Rs256(DecodingKey),
}

impl JwtKey {
    /// The one place a PEM becomes an RS256 verification key.
    pub fn rs256_pem(pem: &[u8]) -> Result<JwtKey, jsonwebtoken::errors::Error> {
        DecodingKey::from_rsa_pem(pem).map(JwtKey::Rs256)
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            JwtKey::Hs256(_) => Algorithm::HS256,
            JwtKey::Rs256(_) => Algorithm::RS256,
        }
    }

    pub fn decoding_key(&self) -> DecodingKey {
        match self {
            JwtKey::Hs256(secret) => DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            JwtKey::Rs256(key) => key.clone(),
        }
    }
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JwtKey::Hs256(_) => "HS256",
            JwtKey::Rs256(_) => "RS256",
        })
    }
}

#[derive(Clone, Debug)]
pub struct JwtConfig {
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: u64,
}

fn read_file(var: &'static str, path: &PathBuf) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(var, format!("cannot read {}: {e}", path.display())))
}

impl JwtSettings {
    pub(super) fn resolve(&self) -> Result<JwtConfig, ConfigError> {
        let file = self
            .jwt_rs256_public_key_file
            .as_ref()
            .map(|path| read_file("JWT_RS256_PUBLIC_KEY_FILE", path))
            .transpose()?;
        let pem = match (&self.jwt_rs256_public_key, file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "JWT_RS256_PUBLIC_KEY_FILE",
                    "set either JWT_RS256_PUBLIC_KEY or JWT_RS256_PUBLIC_KEY_FILE, not both",
                ))
            }
            // Platforms that cannot hold multi-line values pass the PEM with literal "\n".
            (Some(inline), None) => Some((
                inline.replace("\\n", "\n").into_bytes(),
                "JWT_RS256_PUBLIC_KEY",
            )),
            (None, file) => file.map(|pem| (pem, "JWT_RS256_PUBLIC_KEY_FILE")),
        };
        let key = match (&self.jwt_hs256_secret, pem) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "JWT_HS256_SECRET",
                    "set either JWT_HS256_SECRET or an RS256 public key, not both",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "JWT_HS256_SECRET",
                    "a JWT verification key is required: set JWT_HS256_SECRET or JWT_RS256_PUBLIC_KEY / JWT_RS256_PUBLIC_KEY_FILE",
                ))
            }
            // RFC 7518 3.2: an HS256 key must be at least as long as the hash output.
            (Some(s), None) if s.expose_secret().len() < 32 => {
                return Err(invalid("JWT_HS256_SECRET", "must be at least 32 bytes long"))
            }
            (Some(s), None) => JwtKey::Hs256(s.clone()),
            // Named by the variable the PEM came from.
            (None, Some((pem, var))) => JwtKey::rs256_pem(&pem)
                .map_err(|e| invalid(var, format!("not a PEM-encoded RSA public key: {e}")))?,
        };
        Ok(JwtConfig {
            key,
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway_seconds: self.jwt_leeway_seconds,
        })
    }
}
