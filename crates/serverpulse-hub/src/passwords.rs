//! Password hashing for hub users: argon2id with the crate's recommended parameters,
//! stored as PHC strings, verified in constant time by the argon2 crate.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashFailed(String);

pub fn hash(password: &str) -> Result<String, HashFailed> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|phc| phc.to_string())
        .map_err(|e| HashFailed(e.to_string()))
}

/// False for a wrong password and for a malformed stored hash alike.
pub fn verify(password: &str, stored: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), stored).is_ok()
}

/// A generated password: 128 random bits, hex.
pub fn generate() -> Result<String, serverpulse_domain::secret::RandomnessUnavailable> {
    let secret = serverpulse_domain::Secret::generate()?;
    Ok(secret.expose()[..32].to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_and_verify() {
        let stored = super::hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(super::verify("correct horse", &stored));
        assert!(!super::verify("wrong horse", &stored));
        assert!(!super::verify("correct horse", "not a hash"));
    }
}
